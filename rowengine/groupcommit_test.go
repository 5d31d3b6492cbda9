package rowengine

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

// TestGroupCommit: writers that each make every write durable at once (as
// O_DSYNC writes do) share commits: a sync that arrives while a commit is
// under way is covered by the next one, which takes every write queued
// before it. Each write redirects a fresh block, so each needs its map
// entry committed.
func TestGroupCommit(t *testing.T) {
	p := TestPool(t, Options{})
	const writers, each = 8, 50
	h := mustCreate(t, p, "vm", writers*each*uint64(MinBlockSize))
	defer h.Close()
	commits := syncedWrites(t, p, writers, each, func(w, i int) (*Handle, []byte, int64) {
		block := uint64(w*each + i)
		return h, bytes.Repeat([]byte{byte(block)}, 512), int64(block * MinBlockSize)
	})
	t.Logf("%d synced writes from %d writers took %d commits", writers*each, writers, commits)
	if commits > writers*each*3/4 {
		t.Errorf("%d synced writes took %d commits: concurrent syncs are not sharing them", writers*each, commits)
	}
}

// syncedWrites runs writers goroutines, each making each writes of
// write(w, i) and syncing its handle after every one, and returns how many
// commits they took.
func syncedWrites(t *testing.T, p *Pool, writers, each int, write func(w, i int) (*Handle, []byte, int64)) uint64 {
	t.Helper()
	before := p.commitCount()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				h, data, off := write(w, i)
				if _, err := h.WriteAt(data, off); err != nil {
					errs <- err
					return
				}
				if err := h.Sync(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return p.commitCount() - before
}

func TestGroupCommitAcrossVolumes(t *testing.T) {
	p := TestPool(t, Options{})
	const writers, each, blocks = 8, 50, 16
	handles := make([]*Handle, writers)
	for w := range writers {
		handles[w] = mustCreate(t, p, fmt.Sprintf("vm%d", w), blocks*uint64(MinBlockSize))
		if _, err := handles[w].WriteAt(make([]byte, blocks*MinBlockSize), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	commits := syncedWrites(t, p, writers, each, func(w, i int) (*Handle, []byte, int64) {
		return handles[w], bytes.Repeat([]byte{byte(w + i)}, 512), int64(i%blocks) * MinBlockSize // in place
	})
	t.Logf("%d flushes of %d volumes took %d commits", writers*each, writers, commits)
	if commits > writers*each*3/4 {
		t.Errorf("%d flushes took %d commits: flushes of different volumes are not sharing them", writers*each, commits)
	}
	for w, h := range handles {
		buf := make([]byte, 512)
		if _, err := h.ReadAt(buf, int64((each-1)%blocks)*MinBlockSize); err != nil || buf[0] != byte(w+each-1) {
			t.Fatalf("vm%d reads %d (err %v), want %d", w, buf[0], err, byte(w+each-1))
		}
	}
	MustCheck(t, p)
}

func (p *Pool) commitCount() uint64 {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	return p.commitsTaken
}
