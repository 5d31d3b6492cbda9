package rowengine

import (
	"bytes"
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
	before := p.commitCount()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				block := uint64(w*each + i)
				if _, err := h.WriteAt(bytes.Repeat([]byte{byte(block)}, 512), int64(block*MinBlockSize)); err != nil {
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
	commits := p.commitCount() - before
	t.Logf("%d synced writes from %d writers took %d commits", writers*each, writers, commits)
	if commits > writers*each*3/4 {
		t.Errorf("%d synced writes took %d commits: concurrent syncs are not sharing them", writers*each, commits)
	}
}

func (p *Pool) commitCount() uint64 {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	return p.commitsTaken
}
