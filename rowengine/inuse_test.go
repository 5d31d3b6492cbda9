package rowengine

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"
)

// holdFirstIO makes the next guest read or write of p stop between
// resolving its blocks and its pread or pwrite: held is closed when it
// gets there, and it goes on when release is closed.
func holdFirstIO(p *Pool) (held, release chan struct{}) {
	held, release = make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	p.ioResolved = func() {
		if once.CompareAndSwap(false, true) {
			close(held)
			<-release
		}
	}
	return held, release
}

// stillWaiting reports whether done is still open after a moment.
func stillWaiting(done chan error) bool {
	select {
	case <-done:
		return false
	case <-time.After(100 * time.Millisecond):
		return true
	}
}

// An in-place write that resolved its block before a snapshot's cut
// writes into what is then the snapshot's block: the snapshot is not made
// durable, nor returned, before that write lands, and holds it afterwards
// (it was in flight at the cut); the head reads it too.
func TestSnapshotWaitsForWritesInFlight(t *testing.T) {
	p := TestPool(t, Options{})
	h := mustCreate(t, p, "vm", 4*MinBlockSize)
	if _, err := h.WriteAt(pattern(1, 4*MinBlockSize), 0); err != nil {
		t.Fatal(err)
	}
	held, release := holdFirstIO(p)
	late := pattern(9, 512)
	wrote := make(chan error, 1)
	go func() { _, err := h.WriteAt(late, 100); wrote <- err }()
	<-held
	snapped := make(chan error, 1)
	go func() { _, err := p.CreateSnapshot("vm", "s1", SnapshotOptions{}); snapped <- err }()
	if !stillWaiting(snapped) {
		t.Fatal("snapshot create returned while a write into the head's block was in flight")
	}
	close(release)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if err := <-snapped; err != nil {
		t.Fatal(err)
	}
	s, err := p.OpenSnapshot("vm", "s1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, r := range []*Handle{s, h} {
		got := make([]byte, len(late))
		if _, err := r.ReadAt(got, 100); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, late) {
			t.Fatalf("the write in flight at the cut is missing: read %x…", got[:8])
		}
	}
}

// A block discarded while a write into it is in flight is not punched or
// reused by the commit that makes the discard durable until that write
// has landed; the range then reads as zeros.
func TestFreedBlocksWaitForIOInFlight(t *testing.T) {
	p := TestPool(t, Options{})
	h := mustCreate(t, p, "vm", 4*MinBlockSize)
	if _, err := h.WriteAt(pattern(1, 4*MinBlockSize), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	held, release := holdFirstIO(p)
	wrote := make(chan error, 1)
	go func() { _, err := h.WriteAt(pattern(9, 512), MinBlockSize); wrote <- err }()
	<-held
	if err := h.ZeroRange(MinBlockSize, MinBlockSize); err != nil {
		t.Fatal(err)
	}
	synced := make(chan error, 1)
	go func() { synced <- h.Sync() }()
	if !stillWaiting(synced) {
		t.Fatal("a commit reused a freed block while a write into it was in flight")
	}
	close(release)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	got := make([]byte, MinBlockSize)
	if _, err := h.ReadAt(got, MinBlockSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, MinBlockSize)) {
		t.Fatal("the discarded block does not read as zeros")
	}
}
