package rowengine

import (
	"bytes"
	"context"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestWarmBlocksAfterRollback: the blocks a rollback frees stay allocated
// in the data file, count as free, and take the next whole-block writes;
// a partial write never gets one; after WarmFreeAge they are punched.
func TestWarmBlocksAfterRollback(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1e9, 0).UnixNano())
	p := TestPool(t, Options{BlockSize: DefaultBlockSize, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	bs := p.blockSize
	h := mustCreate(t, p, "vol", 64*bs)
	write := func(b byte, off, n uint64) {
		t.Helper()
		if _, err := h.WriteAt(bytes.Repeat([]byte{b}, int(n)), int64(off)); err != nil {
			t.Fatal(err)
		}
		if err := h.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	allocated := func() int64 {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(p.Dir(), "data"), &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	write(1, 0, 16*bs)
	if _, err := p.CreateSnapshot("vol", "s1", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	write(2, 0, 16*bs) // 16 redirects: the head owns 16 blocks
	before, freeBefore := allocated(), p.Info().FreeBytes
	res, err := p.RollbackVolume("vol", "s1", true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Job != nil {
		if _, err := p.WaitJob(context.Background(), res.Job.ID); err != nil {
			t.Fatal(err)
		}
	}
	h = reopen(t, p, "vol")
	info := p.Info()
	if info.WarmFreeBytes != 16*bs {
		t.Fatalf("%d warm bytes after the rollback freed 16 blocks", info.WarmFreeBytes)
	}
	if got := allocated(); got != before {
		t.Fatalf("data file allocation %d → %d: warm blocks were punched", before, got)
	}
	if info.FreeBytes < freeBefore+16*bs-bs { // the host's own free space may move a little
		t.Fatalf("free bytes %d → %d: warm blocks must count as free", freeBefore, info.FreeBytes)
	}

	// A 4 KiB sector written into a block of s1 is a partial redirect: it takes
	// a cold block. Whole-block writes reuse warm ones.
	write(3, 9*bs+4096, 4096)
	write(4, 0, 8*bs)
	if got := p.Info().WarmFreeBytes; got != 8*bs {
		t.Fatalf("%d warm bytes after 8 whole-block writes, want %d", got, 8*bs)
	}
	if got := allocated(); got > before+int64(bs) {
		t.Fatalf("data file grew %d → %d bytes: whole writes did not reuse warm blocks", before, got)
	}
	got := readAll(t, h)
	for i, b := range got {
		want := byte(0)
		switch {
		case uint64(i) < 8*bs:
			want = 4
		case uint64(i) < 16*bs && (uint64(i) < 9*bs+4096 || uint64(i) >= 9*bs+8192):
			want = 1
		case uint64(i) >= 9*bs+4096 && uint64(i) < 9*bs+8192:
			want = 3
		}
		if b != want {
			t.Fatalf("byte %d = %d, want %d", i, b, want)
		}
	}
	MustCheck(t, p)

	// Older than WarmFreeAge: punched out, the host gets the space back.
	now.Add(int64(p.opts.WarmFreeAge + time.Second))
	p.coolWarm()
	if got := p.Info().WarmFreeBytes; got != 0 {
		t.Fatalf("%d warm bytes after WarmFreeAge", got)
	}
	if after := allocated(); after > before-int64(7*bs) {
		t.Fatalf("data file allocation %d → %d after cooling 8 blocks", before, after)
	}
	MustCheck(t, p)
}

// TestNoWarmBlocks: a negative WarmFreeBytes punches every freed block at
// once, as before warm blocks.
func TestNoWarmBlocks(t *testing.T) {
	p := TestPool(t, Options{WarmFreeBytes: -1})
	h := mustCreate(t, p, "vol", 1<<20)
	h.WriteAt(bytes.Repeat([]byte{7}, 1<<20), 0)
	if err := h.ZeroRange(0, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := p.Info().WarmFreeBytes; got != 0 {
		t.Fatalf("%d warm bytes with warm blocks off", got)
	}
}

func reopen(t *testing.T, p *Pool, name string) *Handle {
	t.Helper()
	h, err := p.OpenVolume(name, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
