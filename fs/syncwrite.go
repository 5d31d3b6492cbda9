package fs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// syncWrites makes O_SYNC and O_DSYNC writes durable before they are
// acknowledged. The kernel sends no FSYNC for them on a FOPEN_DIRECT_IO
// file: it only marks the WRITE request, whose flags carry the file's open
// flags plus O_DSYNC/O_SYNC for a pwritev2 with RWF_DSYNC/RWF_SYNC. go-fuse's
// node API does not pass those flags on, so this wrapper of the raw
// filesystem reads them and lists the request as a durable one while the
// node's Write runs. A volume's Write finds it there (durableWrite) and
// writes with Handle.WriteAtSync, which costs an overwrite what an O_DSYNC
// write to a raw file costs; any other node's write is followed by the
// same handle's Fsync, the pool's group commit.
type syncWrites struct {
	fuse.RawFileSystem
	inFlight *durableWrites
}

// durableWrites are the O_DSYNC writes in the node layer's hands, by their
// request's cancel channel: go-fuse gives every request its own and hands
// it to the node as fuse.Context.Cancel, so it names the request while it
// is in flight.
type durableWrites struct{ m sync.Map } // <-chan struct{} → *durableWrite

// durableWrite is one O_DSYNC write; made is set by the node that made it
// durable itself.
type durableWrite struct{ made bool }

// of is the durable write ctx belongs to, or nil.
func (d *durableWrites) of(ctx context.Context) *durableWrite {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Cancel == nil {
		return nil
	}
	w, _ := d.m.Load(fc.Cancel)
	dw, _ := w.(*durableWrite)
	return dw
}

// O_SYNC is O_DSYNC plus __O_SYNC on Linux; either asks for durability.
const syncWriteFlags = syscall.O_DSYNC

func (s syncWrites) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	w := s.begin(cancel, in)
	n, status := s.RawFileSystem.Write(cancel, in, data)
	return s.syncAfter(cancel, in, w, n, status)
}

func (s syncWrites) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	w := s.begin(cancel, in)
	n, status := s.RawFileSystem.Writev(cancel, in, data)
	return s.syncAfter(cancel, in, w, n, status)
}

// begin lists a write that asks for durability; nil for any other.
func (s syncWrites) begin(cancel <-chan struct{}, in *fuse.WriteIn) *durableWrite {
	if in.Flags&syncWriteFlags == 0 || cancel == nil {
		return nil
	}
	w := &durableWrite{}
	s.inFlight.m.Store(cancel, w)
	return w
}

// syncAfter commits a write that asked for durability, unless its node
// made it durable already. If the commit fails the write is not
// acknowledged: the caller sees the error, as a failed fsync would tell it.
func (s syncWrites) syncAfter(cancel <-chan struct{}, in *fuse.WriteIn, w *durableWrite, n uint32, status fuse.Status) (uint32, fuse.Status) {
	if w != nil {
		s.inFlight.m.Delete(cancel)
	}
	if !status.Ok() || in.Flags&syncWriteFlags == 0 || w != nil && w.made {
		return n, status
	}
	if st := s.RawFileSystem.Fsync(cancel, &fuse.FsyncIn{InHeader: in.InHeader, Fh: in.Fh, FsyncFlags: 1}); !st.Ok() {
		return 0, st
	}
	return n, status
}
