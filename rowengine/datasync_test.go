package rowengine

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
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
	dirtyPages := pageCacheWitness(t, p)
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

// pageCacheWitness returns how many pages of a data-file block are dirty or
// under writeback (cachestat(2)), or skips the test, loudly, where ranged
// sync or cachestat is missing.
func pageCacheWitness(t *testing.T, p *Pool) func(phys uint64) uint64 {
	t.Helper()
	bs := p.blockSize
	if p.rangeSyncRing() == nil {
		var st unix.Statfs_t
		unix.Fstatfs(int(p.data.Fd()), &st)
		msg := fmt.Sprintf("RANGED DATA SYNC NOT TESTED: no io_uring here, or the test directory's filesystem (magic %#x) is not ext4 or XFS", st.Type)
		fmt.Fprintln(os.Stderr, "!!! "+msg)
		t.Skip(msg)
	}
	return func(phys uint64) uint64 {
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
}

// TestFlushSyncsOnlyItsVolume: with the page cache as the witness, a
// flush of one volume writes back what that volume overwrote in place,
// through every in-place path (a write within one owned block, one across
// several, more sectors of a partly written block), and leaves another
// volume's overwrites dirty; a flush of that one then writes them back.
func TestFlushSyncsOnlyItsVolume(t *testing.T) {
	const bs = 64 << 10
	const blocks = 64
	p := TestPool(t, Options{BlockSize: bs})
	dirtyPages := pageCacheWitness(t, p)
	a, b := mustCreate(t, p, "a", blocks*bs), mustCreate(t, p, "b", blocks*bs)
	whole := bytes.Repeat([]byte{1}, blocks*bs)
	for _, h := range []*Handle{a, b} {
		if _, err := h.WriteAt(whole, 0); err != nil {
			t.Fatal(err)
		}
	}
	// After a snapshot a's head owns blocks 1 on whole and block 0 partly
	// written, its sector 0 valid.
	if _, err := p.CreateSnapshot("a", "s1", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteAt(whole[:4096], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteAt(whole[bs:], bs); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, partial := p.volumes["a"].head.table.partialAt(0); !partial {
		t.Fatal("block 0 of a is not partly written after a 4 KiB write on a snapshot")
	}
	phys := func(vol string, index uint64) uint64 {
		p.mapMu.RLock()
		defer p.mapMu.RUnlock()
		return p.volumes[vol].head.table.get(index).phys
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for try := 1; ; try++ {
		touched := map[uint64]bool{0: true}
		if _, err := a.WriteAt([]byte{byte(try)}, 100); err != nil { // sector 0 of the partial block
			t.Fatal(err)
		}
		for range 20 { // in place into blocks a's head owns whole
			off := (1 + rng.Uint64N(blocks-2)) * bs
			off += rng.Uint64N(bs)
			n := 1 + rng.Uint64N(2*bs) // within one block or across two
			n = min(n, blocks*bs-off)
			if _, err := a.WriteAt(whole[:n], int64(off)); err != nil {
				t.Fatal(err)
			}
			for i := off / bs; i <= (off+n-1)/bs; i++ {
				touched[i] = true
			}
		}
		if _, err := b.WriteAt(whole[:4096], 5*bs); err != nil {
			t.Fatal(err)
		}
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
		for i := range touched {
			if n := dirtyPages(phys("a", i)); n != 0 {
				t.Fatalf("try %d: block %d of a has %d dirty pages after a's flush", try, i, n)
			}
		}
		if dirtyPages(phys("b", 5)) > 0 {
			break
		}
		if try == 5 {
			t.Fatal("a's flush wrote back b's overwrite in 5 tries out of 5")
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := dirtyPages(phys("b", 5)); n != 0 {
		t.Fatalf("b's overwrite has %d dirty pages after b's flush", n)
	}
	MustCheck(t, p)
}
