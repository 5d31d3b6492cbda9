package fs

import (
	"errors"
	"syscall"

	"github.com/rowfs/rowfs/rowengine"
)

type errnoMapping struct {
	err   error
	errno syscall.Errno
}

// errnos is the one place an engine error becomes an errno: every engine
// sentinel has its errno here, chosen for what a client does with it
// (TestErrnoMapsEverySentinel checks none is left to the default).
var errnos = []errnoMapping{
	{rowengine.ErrNotFound, syscall.ENOENT},
	{rowengine.ErrExists, syscall.EEXIST},
	{rowengine.ErrInvalidArgument, syscall.EINVAL},
	{rowengine.ErrBusy, syscall.EBUSY},
	// Never EIO: qemu's werror=enospc pauses the VM on ENOSPC.
	{rowengine.ErrNoSpace, syscall.ENOSPC},
	{rowengine.ErrReadOnly, syscall.EROFS},
	// A limit, not a failure; file operations do not make snapshots, but
	// should one meet the limit it reads as a quota.
	{rowengine.ErrChainLimit, syscall.EDQUOT},
	// The Ceph cluster of an RBD volume cannot be reached: the guest's
	// data is not lost, its host is away.
	{rowengine.ErrUnavailable, syscall.EHOSTDOWN},
	// Metadata contradicts itself: what ext4 and XFS return for corruption.
	{rowengine.ErrCorrupt, syscall.EUCLEAN},
	{rowengine.ErrPoolLocked, syscall.EBUSY},
	// The pool is shutting down: the request did not happen.
	{rowengine.ErrClosed, syscall.EIO},
	{rowengine.ErrIO, syscall.EIO},
	{rowengine.ErrJobFailed, syscall.EIO},
}

// toErrno maps an engine error with errnos; anything else is EIO.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	for _, m := range errnos {
		if errors.Is(err, m.err) {
			return m.errno
		}
	}
	return syscall.EIO
}
