package rowengine

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// TestPool opens a pool in a fresh temporary directory with small blocks
// and a long commit interval (tests call Sync themselves). The pool is
// checked and closed when the test ends; a checker finding fails the test.
func TestPool(t testing.TB, opts Options) *Pool {
	t.Helper()
	if opts.BlockSize == 0 {
		opts.BlockSize = MinBlockSize
	}
	if opts.CommitInterval == 0 {
		opts.CommitInterval = 1 << 40
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CloseGrace == 0 {
		opts.CloseGrace = time.Millisecond // tests close their handles synchronously
	}
	p, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("open test pool: %v", err)
	}
	t.Cleanup(func() {
		if p.isClosed() {
			return
		}
		MustCheck(t, p)
		if err := p.Close(); err != nil {
			t.Errorf("close test pool: %v", err)
		}
	})
	return p
}

// MustCheck waits for running jobs, runs the checker and fails the test
// on any finding.
func MustCheck(t testing.TB, p *Pool) CheckReport {
	t.Helper()
	WaitJobs(t, p)
	rep, err := p.Check()
	if err != nil {
		t.Fatalf("checker could not run: %v", err)
	}
	for _, c := range rep.Corruptions {
		t.Errorf("checker: corruption: %s", c)
	}
	for _, l := range rep.Leaks {
		t.Errorf("checker: leak: %s", l)
	}
	for _, v := range p.Violations() {
		t.Errorf("invariant violated: %s", v)
	}
	return rep
}

func (p *Pool) isClosed() bool {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	return p.closed
}

// WaitJobs waits for every running job and fails the test if one failed.
func WaitJobs(t testing.TB, p *Pool) {
	t.Helper()
	for _, j := range p.Jobs() {
		if j.State != JobRunning {
			continue
		}
		if _, err := p.WaitJob(context.Background(), j.ID); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// TestClock is an injectable clock for Options.Now: the real time, or a
// frozen instant between Freeze and Thaw (many operations in "one second").
type TestClock struct {
	mu     sync.Mutex
	frozen time.Time
}

// Now is the clock's time.
func (c *TestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen.IsZero() {
		return c.frozen
	}
	return time.Now()
}

// Freeze stops the clock at at.
func (c *TestClock) Freeze(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frozen = at
}

// Thaw lets the clock run with the real time again.
func (c *TestClock) Thaw() { c.Freeze(time.Time{}) }
