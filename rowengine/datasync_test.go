package rowengine

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/blockmap"
)

func TestChangedRuns(t *testing.T) {
	changes := []blockmap.MapChange{
		{Phys: 7}, {Phys: 5}, {Phys: 6}, {Phys: 6}, {Phys: blockmap.ZeroBlock}, {Delete: true}, {Phys: 9}, {Phys: 0},
	}
	want := []blockRun{{0, 1}, {5, 3}, {9, 1}}
	if got := changedRuns(changes); !slices.Equal(got, want) {
		t.Errorf("runs %v, want %v", got, want)
	}
}

// TestBackgroundCommitSyncsOnlyItsBlocks: with the page cache as the
// witness (cachestat), a background commit writes back the block its
// map change points at and leaves a block overwritten in place dirty,
// which a guest flush (barrier) then writes back. After it the pool
// reads back everything and checks clean.
func TestBackgroundCommitSyncsOnlyItsBlocks(t *testing.T) {
	const bs = 64 << 10
	p := TestPool(t, Options{BlockSize: bs})
	if p.rangeSyncRing() == nil {
		var st unix.Statfs_t
		unix.Fstatfs(int(p.data.Fd()), &st)
		msg := fmt.Sprintf("RANGED DATA SYNC NOT TESTED: no io_uring here, or the test directory's filesystem (magic %#x) is not ext4 or XFS", st.Type)
		fmt.Fprintln(os.Stderr, "!!! "+msg)
		t.Skip(msg)
	}
	dirtyPages := func(phys uint64) uint64 {
		t.Helper()
		var cs unix.Cachestat_t
		err := unix.Cachestat(uint(p.data.Fd()), &unix.CachestatRange{Off: phys * bs, Len: bs}, &cs, 0)
		if errors.Is(err, unix.ENOSYS) {
			msg := "RANGED DATA SYNC NOT TESTED: the kernel has no cachestat(2) to see dirty pages with"
			fmt.Fprintln(os.Stderr, "!!! "+msg)
			t.Skip(msg)
		}
		if err != nil {
			t.Fatal(err)
		}
		return cs.Dirty + cs.Writeback
	}
	h := mustCreate(t, p, "vm", 16*bs)
	block := make([]byte, bs)
	if _, err := h.WriteAt(block, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	owned := p.volumes["vm"].head.table.get(0).phys
	// The kernel's flusher may write the in-place block back on its own
	// (a loaded machine): it must stay dirty in one of a few tries.
	for try := 1; ; try++ {
		block[0] = byte(try)
		if _, err := h.WriteAt(block[:4096], 0); err != nil { // in place
			t.Fatal(err)
		}
		if _, err := h.WriteAt(block, int64(try)*bs); err != nil { // a redirect: a new block
			t.Fatal(err)
		}
		mapped := p.volumes["vm"].head.table.get(uint64(try)).phys
		if err := p.backgroundCommit(); err != nil {
			t.Fatal(err)
		}
		if n := dirtyPages(mapped); n != 0 {
			t.Fatalf("try %d: the block the commit mapped has %d dirty pages after it", try, n)
		}
		if dirtyPages(owned) > 0 {
			break
		}
		if try == 5 {
			t.Fatal("a background commit wrote back the block overwritten in place in 5 tries out of 5")
		}
	}
	// A guest flush that arrived before that background commit still
	// syncs the whole file: the background commit did not.
	p.mapMu.RLock()
	arrived := p.commitsTaken - 1
	p.mapMu.RUnlock()
	if err := p.barrierSince(arrived); err != nil {
		t.Fatal(err)
	}
	if n := dirtyPages(owned); n != 0 {
		t.Fatalf("after a guest flush the in-place block has %d dirty pages", n)
	}
	MustCheck(t, p)
}
