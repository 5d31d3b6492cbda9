package rowengine

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func mustCreate(t testing.TB, p *Pool, name string, size uint64) *Handle {
	t.Helper()
	if _, err := p.CreateVolume(name, size); err != nil {
		t.Fatal(err)
	}
	h, err := p.OpenVolume(name, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func readAll(t *testing.T, h *Handle) []byte {
	t.Helper()
	buf := make([]byte, h.Size())
	if n, err := h.ReadAt(buf, 0); err != nil || n != len(buf) {
		t.Fatalf("read all: n=%d err=%v", n, err)
	}
	return buf
}

func TestWriteReadPartialAndUnaligned(t *testing.T) {
	p := TestPool(t, Options{})
	h := mustCreate(t, p, "vol", 1<<20)
	want := make([]byte, 1<<20)
	for _, w := range []struct {
		off int64
		n   int
		b   byte
	}{{0, 4096, 1}, {100, 10, 2}, {4095, 2, 3}, {8192 + 7, 3 * 4096, 4}, {1<<20 - 1, 1, 5}} {
		data := bytes.Repeat([]byte{w.b}, w.n)
		if _, err := h.WriteAt(data, w.off); err != nil {
			t.Fatal(err)
		}
		copy(want[w.off:], data)
	}
	if got := readAll(t, h); !bytes.Equal(got, want) {
		t.Fatal("content differs from what was written")
	}
	if _, err := h.WriteAt([]byte{1}, 1<<20); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("write past end: %v, want ErrInvalidArgument", err)
	}
	if n, err := h.ReadAt(make([]byte, 10), 1<<20-4); n != 4 || err != nil {
		t.Fatalf("read across end: n=%d err=%v", n, err)
	}
	if _, err := h.ReadAt(make([]byte, 1), 1<<20); err != io.EOF {
		t.Fatalf("read at end: %v, want EOF", err)
	}
}

func TestOverwriteOwnedBlockIsInPlace(t *testing.T) {
	p := TestPool(t, Options{})
	h := mustCreate(t, p, "vol", 1<<20)
	h.WriteAt(make([]byte, 4096), 0)
	before := p.Info().UsedBytes
	for i := range 10 {
		h.WriteAt(bytes.Repeat([]byte{byte(i)}, 100), 10)
	}
	if after := p.Info().UsedBytes; after != before {
		t.Fatalf("in-place overwrites allocated blocks: used %d → %d", before, after)
	}
}

func TestZeroRangeFreesBlocksAndPunchesHoles(t *testing.T) {
	p := TestPool(t, Options{})
	h := mustCreate(t, p, "vol", 1<<20)
	h.WriteAt(bytes.Repeat([]byte{7}, 1<<20), 0)
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	allocated := func() int64 {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(p.Dir(), "data"), &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	before := allocated()
	// Half a block at each edge stays written as zeros; 62 whole blocks are freed.
	if err := h.ZeroRange(2048, 1<<20-4096); err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, h)
	for i, b := range got {
		if want := byte(0); (i < 2048 || i >= 1<<20-2048) && b != 7 || i >= 2048 && i < 1<<20-2048 && b != want {
			t.Fatalf("byte %d = %d after zeroing", i, b)
		}
	}
	if used := p.Info().UsedBytes; used != 2*4096 {
		t.Fatalf("pool used %d bytes after discard, want %d", used, 2*4096)
	}
	if after := allocated(); before-after < 60*4096 {
		t.Fatalf("data file kept its space: %d → %d bytes allocated", before, after)
	}
	// Freed blocks are reused once the free is durable.
	h.WriteAt(bytes.Repeat([]byte{9}, 8192), 1<<19)
	if used := p.Info().UsedBytes; used != 4*4096 {
		t.Fatalf("used %d after rewrite, want %d", used, 4*4096)
	}
}

func TestFreedBlockNotReusedBeforeCommit(t *testing.T) {
	p := TestPool(t, Options{})
	a := mustCreate(t, p, "a", 1<<20)
	b := mustCreate(t, p, "b", 1<<20)
	a.WriteAt(bytes.Repeat([]byte{1}, 4096), 0)
	a.Sync()
	a.ZeroRange(0, 4096)
	b.WriteAt(bytes.Repeat([]byte{2}, 4096), 0)
	p.mapMu.RLock()
	freed, reused := p.quarantine[0], b.io.(*localHandle).vol.head.table.get(0).phys
	p.mapMu.RUnlock()
	if freed == reused {
		t.Fatalf("block %d reused by another volume before its free was committed", freed)
	}
}

func TestSeekDataAndHole(t *testing.T) {
	p := TestPool(t, Options{})
	h := mustCreate(t, p, "vol", 10*4096*entriesPerPage)
	h.WriteAt([]byte{1}, 3*4096+5)
	far := uint64(5*4096*entriesPerPage + 4096)
	h.WriteAt([]byte{1}, int64(far))
	cases := []struct {
		name   string
		got    func() (uint64, bool)
		want   uint64
		wantOK bool
	}{
		{"data from 0", func() (uint64, bool) { return h.SeekData(0) }, 3 * 4096, true},
		{"data inside block", func() (uint64, bool) { return h.SeekData(3*4096 + 9) }, 3*4096 + 9, true},
		{"data across empty pages", func() (uint64, bool) { return h.SeekData(4 * 4096) }, far, true},
		{"no data after last", func() (uint64, bool) { return h.SeekData(far + 4096) }, 0, false},
		{"hole from 0", func() (uint64, bool) { return h.SeekHole(0) }, 0, true},
		{"hole after data", func() (uint64, bool) { return h.SeekHole(3 * 4096) }, 4 * 4096, true},
		{"hole past end", func() (uint64, bool) { return h.SeekHole(h.Size()) }, 0, false},
	}
	for _, c := range cases {
		got, ok := c.got()
		if got != c.want || ok != c.wantOK {
			t.Errorf("%s: got %d,%v want %d,%v", c.name, got, ok, c.want, c.wantOK)
		}
	}
}

func TestResizeShrinkDiscardsTailAndGrowReadsZeros(t *testing.T) {
	p := TestPool(t, Options{})
	// What the resize itself frees, without the snapshot taken before it.
	if _, err := p.SetSetting("snapshot-before-resize", "false"); err != nil {
		t.Fatal(err)
	}
	h := mustCreate(t, p, "vol", 64*4096)
	h.WriteAt(bytes.Repeat([]byte{5}, 64*4096), 0)
	if _, err := p.ResizeVolume("vol", 10*4096+512, false); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("shrink without permission: %v", err)
	}
	if _, err := p.ResizeVolume("vol", 10*4096+512, true); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ResizeVolume("vol", 64*4096, false); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, h)
	for i, b := range got {
		if want := byte(5); i < 10*4096+512 && b != want || i >= 10*4096+512 && b != 0 {
			t.Fatalf("byte %d = %d after shrink and grow", i, b)
		}
	}
	if used := p.Info().UsedBytes; used != 11*4096 {
		t.Fatalf("used %d, want %d", used, 11*4096)
	}
}

func TestDeleteVolume(t *testing.T) {
	p := TestPool(t, Options{})
	h := mustCreate(t, p, "vol", 1<<20)
	h.WriteAt(make([]byte, 1<<20), 0)
	if _, err := p.DeleteVolume("vol", false); !errors.Is(err, ErrBusy) {
		t.Fatalf("delete open volume: %v, want ErrBusy", err)
	}
	h.Close()
	if _, err := p.DeleteVolume("vol", false); err != nil {
		t.Fatal(err)
	}
	if used := p.Info().UsedBytes; used != 0 {
		t.Fatalf("used %d after delete", used)
	}
	if _, err := p.Volume("vol"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted volume still found: %v", err)
	}
	if _, err := p.DeleteVolume("vol", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestForceDeleteFailsOpenHandles(t *testing.T) {
	p := TestPool(t, Options{})
	h := mustCreate(t, p, "vol", 1<<20)
	if _, err := p.DeleteVolume("vol", true); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte{1}, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("write after force delete: %v", err)
	}
	if _, err := h.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read after force delete: %v", err)
	}
}

func TestValidation(t *testing.T) {
	p := TestPool(t, Options{})
	for _, name := range []string{"", ".hidden", "a/b", "sp ace", string(bytes.Repeat([]byte("x"), 129)), "é"} {
		if _, err := p.CreateVolume(name, 4096); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("name %q accepted: %v", name, err)
		}
	}
	for _, size := range []uint64{0, 511, MaxVolumeSize + 512} {
		if _, err := p.CreateVolume("v", size); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("size %d accepted: %v", size, err)
		}
	}
	if _, err := p.CreateVolume("ok-Name_1.img", 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateVolume("ok-Name_1.img", 4096); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if len(p.Volumes()) != 1 {
		t.Fatalf("refused creates left volumes behind: %v", p.Volumes())
	}
}

func TestBlockSizeValidation(t *testing.T) {
	for _, bs := range []uint32{1024, 3 << 12, 2 << 20} {
		if _, err := Open(t.TempDir(), Options{BlockSize: bs}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("block size %d accepted: %v", bs, err)
		}
	}
}

func TestSecondOpenRefused(t *testing.T) {
	p := TestPool(t, Options{})
	_, err := Open(p.Dir(), Options{Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, ErrPoolLocked) {
		t.Fatalf("second open: %v, want ErrPoolLocked", err)
	}
}

func TestReopenKeepsDataAndBlockSize(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	p, err := Open(dir, Options{BlockSize: 16 << 10, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	p.CreateVolume("vol", 1<<20)
	h, _ := p.OpenVolume("vol", true)
	data := bytes.Repeat([]byte("rowfs"), 50000)
	h.WriteAt(data, 1234)
	h.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = Open(dir, Options{BlockSize: 4096, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.BlockSize() != 16<<10 {
		t.Fatalf("block size %d after reopen, want the pool's own 16 KiB", p.BlockSize())
	}
	h, _ = p.OpenVolume("vol", false)
	defer h.Close()
	got := make([]byte, len(data))
	h.ReadAt(got, 1234)
	if !bytes.Equal(got, data) {
		t.Fatal("data changed across reopen")
	}
	MustCheck(t, p)
}

func TestOrphanedMapEntriesRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	p, _ := Open(dir, Options{BlockSize: 4096, Logger: quiet})
	p.CreateVolume("vol", 1<<20)
	h, _ := p.OpenVolume("vol", true)
	h.WriteAt(make([]byte, 1<<20), 0)
	h.Close()
	p.Sync()
	// Simulate a crash between deleting the records and the map entries.
	v := p.volumes["vol"]
	p.store.Update(func(tx *blockmapTxn) error {
		tx.DeleteNode(v.head.rec.ID)
		return tx.DeleteVolume("vol")
	})
	p.Close()
	p, err := Open(dir, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if rep := MustCheck(t, p); rep.MappedBlocks != 0 {
		t.Fatalf("%d blocks still mapped", rep.MappedBlocks)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
}
