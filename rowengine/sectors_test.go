package rowengine

import (
	"bytes"
	"testing"

	"github.com/rowfs/rowfs/blockmap"
)

func TestSectorGeometry(t *testing.T) {
	for _, c := range []struct{ bs, count, size uint64 }{
		{4 << 10, 1, 4 << 10}, {16 << 10, 4, 4 << 10}, {64 << 10, 16, 4 << 10},
		{128 << 10, 32, 4 << 10}, {1 << 20, 32, 32 << 10},
	} {
		if n, s := sectorGeometry(c.bs); n != c.count || s != c.size {
			t.Errorf("block %d: %d sectors of %d, want %d of %d", c.bs, n, s, c.count, c.size)
		}
	}
	p := TestPool(t, Options{BlockSize: 64 << 10})
	for _, c := range []struct {
		inner, length uint64
		mask          uint32
	}{{0, 4096, 0x1}, {4095, 2, 0x3}, {3 * 4096, 512, 0x8}, {0, 64 << 10, 0xffff}, {60 << 10, 4 << 10, 0x8000}} {
		if got := p.sectorMask(c.inner, c.length); got != c.mask {
			t.Errorf("mask of %d+%d: %#x, want %#x", c.inner, c.length, got, c.mask)
		}
	}
}

// pattern is n bytes of b+i.
func pattern(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b + byte(i)
	}
	return out
}

// A 4 KiB write into a 64 KiB block a snapshot owns writes 4 KiB, records
// one valid sector and reads the other fifteen from the snapshot's block;
// a 512-byte write into an invalid sector merges that sector only; the
// masks survive a reopen; deleting the snapshot fills the head's block
// from it before freeing it; the checker passes at every step.
func TestPartlyWrittenBlocks(t *testing.T) {
	dir := t.TempDir()
	opts := Options{BlockSize: 64 << 10}
	p, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Close() }()
	const bs = 64 << 10
	h := mustCreate(t, p, "vm", 4*bs)
	want := pattern(1, 4*bs)
	if _, err := h.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	mustSnapshot(t, p, "vm", "s1")
	check := func(what string) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := h.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: the volume reads wrong", what)
		}
		MustCheck(t, p)
	}
	valid := func(index uint64) uint32 {
		p.mapMu.RLock()
		defer p.mapMu.RUnlock()
		return ownValidLocked(p.volumes["vm"].head, index)
	}
	// write writes data at off to the volume and to want, and returns the
	// bytes that went to the data file.
	write := func(off int, data []byte) uint64 {
		t.Helper()
		copy(want[off:], data)
		before := p.dataWritten.Load()
		if _, err := h.WriteAt(data, int64(off)); err != nil {
			t.Fatal(err)
		}
		return p.dataWritten.Load() - before
	}

	// capacity: what the head takes (its sectors, not whole blocks), and
	// the pool's blocks in use against what they store.
	capacity := func(what string, head, stored uint64) {
		t.Helper()
		v, err := p.Volume("vm")
		if err != nil {
			t.Fatal(err)
		}
		if info := p.Info(); v.UsedBytes != head || info.StoredBytes != stored || v.TotalBytes != stored {
			t.Fatalf("%s: head %d bytes, pool stores %d, volume total %d; want %d, %d, %d", what, v.UsedBytes, info.StoredBytes, v.TotalBytes, head, stored, stored)
		}
	}
	capacity("after the snapshot", 0, 4*bs)

	// 4 KiB at sector 3 of block 1: 4 KiB written, one sector valid.
	n := write(bs+3*4096, pattern(100, 4096))
	if n != 4096 || valid(1) != 0x8 {
		t.Fatalf("4 KiB redirect wrote %d bytes, valid %#x; want 4096 and 0x8", n, valid(1))
	}
	check("after a 4 KiB redirect")
	capacity("after a 4 KiB redirect", 4096, 4*bs+4096)

	// 512 bytes inside sector 5: that sector, merged with the snapshot's.
	n = write(bs+5*4096+512, pattern(200, 512))
	if n != 4096 || valid(1) != 0x28 {
		t.Fatalf("512-byte write wrote %d bytes, valid %#x; want 4096 and 0x28", n, valid(1))
	}
	check("after a 512-byte write")
	capacity("after a 512-byte write", 8192, 4*bs+8192)

	// A valid sector is overwritten in place, the mask unchanged.
	n = write(bs+3*4096+100, pattern(7, 100))
	if n != 100 || valid(1) != 0x28 {
		t.Fatalf("in-place write wrote %d bytes, valid %#x; want 100 and 0x28", n, valid(1))
	}

	// After a second snapshot, block 1 is a snapshot's partly written
	// block: a write into it from the next head writes the whole merged
	// block (a base is always whole: reads stay at two sources).
	mustSnapshot(t, p, "vm", "s2")
	n = write(bs+9*4096, pattern(50, 4096))
	if n != bs || valid(1) != 0 {
		t.Fatalf("write over a partly written snapshot block wrote %d bytes, valid %#x; want a whole block", n, valid(1))
	}
	check("after a write over a partly written snapshot block")

	// Block 3 partly written by the head over s2, then reopen.
	write(3*bs, pattern(90, 4096))
	h.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	if h, err = p.OpenVolume("vm", true); err != nil {
		t.Fatal(err)
	}
	defer func() { h.Close() }()
	if valid(3) != 0x1 {
		t.Fatalf("after reopen block 3 valid %#x, want 0x1", valid(3))
	}
	check("after reopen")

	// Deleting s2 merges it into the head: block 3's other sectors come
	// from s2's (in fact s1's, which s2 shows) block, and the head's
	// block is whole afterwards.
	if _, err := p.DeleteSnapshot("vm", "s2", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	WaitJobs(t, p)
	check("after deleting s2")
	// s1 under the head's partly written block 3 (one sector of 16): the
	// plan frees s1's four blocks and fills the head's fifteen sectors.
	res, err := p.DeleteSnapshot("vm", "s1", DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.FilledBytes != 15*4096 {
		t.Errorf("deleting s1 plans to fill %d bytes, want %d", res.Plan.FilledBytes, 15*4096)
	}
	WaitJobs(t, p)
	if valid(3) != 0 {
		t.Fatalf("after deleting s1 block 3 valid %#x, want whole", valid(3))
	}
	check("after deleting s1")
	if used, _ := p.alloc.stats(); used != 4 {
		t.Fatalf("%d blocks in use after both deletes, want 4", used)
	}
	capacity("after both deletes", 4*bs, 4*bs)
}

func TestMapValueEncoding(t *testing.T) {
	for _, c := range []struct {
		phys  uint64
		valid uint32
		size  int
	}{{7, 0, 8}, {7, 0x8, 12}, {blockmap.ZeroBlock, 0, 8}} {
		b := blockmap.EncodeMapValue(c.phys, c.valid)
		phys, valid, err := blockmap.DecodeMapValue(b)
		if len(b) != c.size || err != nil || phys != c.phys || valid != c.valid {
			t.Errorf("%d/%#x: %d bytes, decoded %d/%#x %v", c.phys, c.valid, len(b), phys, valid, err)
		}
	}
	for _, bad := range [][]byte{{1, 2, 3}, make([]byte, 12)} {
		if _, _, err := blockmap.DecodeMapValue(bad); err == nil {
			t.Errorf("%x decoded without an error", bad)
		}
	}
}
