package fs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// syncWrites makes O_SYNC and O_DSYNC writes durable before they are
// acknowledged. The kernel sends no FSYNC for them on a FOPEN_DIRECT_IO
// file: it only marks the WRITE request, whose flags carry the file's open
// flags plus O_DSYNC/O_SYNC for a pwritev2 with RWF_DSYNC/RWF_SYNC. go-fuse's
// node API does not pass those flags on, so this wrapper of the raw
// filesystem reads them and, after a successful write, sends the same
// handle's Fsync, which is the pool's group commit: concurrent sync
// writers share one commit (rowengine.Pool.commit).
type syncWrites struct {
	fuse.RawFileSystem
}

// O_SYNC is O_DSYNC plus __O_SYNC on Linux; either asks for durability.
const syncWriteFlags = syscall.O_DSYNC

func (s syncWrites) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	n, status := s.RawFileSystem.Write(cancel, in, data)
	return s.syncAfter(cancel, in, n, status)
}

func (s syncWrites) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	n, status := s.RawFileSystem.Writev(cancel, in, data)
	return s.syncAfter(cancel, in, n, status)
}

// syncAfter commits a write that asked for durability. If the commit
// fails the write is not acknowledged: the caller sees the error, as a
// failed fsync would tell it.
func (s syncWrites) syncAfter(cancel <-chan struct{}, in *fuse.WriteIn, n uint32, status fuse.Status) (uint32, fuse.Status) {
	if !status.Ok() || in.Flags&syncWriteFlags == 0 {
		return n, status
	}
	if st := s.RawFileSystem.Fsync(cancel, &fuse.FsyncIn{InHeader: in.InHeader, Fh: in.Fh, FsyncFlags: 1}); !st.Ok() {
		return 0, st
	}
	return n, status
}
