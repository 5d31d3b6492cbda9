package fs

import (
	"errors"
	"syscall"

	"github.com/rowfs/rowfs/rowengine"
)

// toErrno is the one place an engine error becomes an errno.
func toErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, rowengine.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, rowengine.ErrExists):
		return syscall.EEXIST
	case errors.Is(err, rowengine.ErrInvalidArgument):
		return syscall.EINVAL
	case errors.Is(err, rowengine.ErrBusy):
		return syscall.EBUSY
	case errors.Is(err, rowengine.ErrNoSpace):
		// Never EIO: qemu's werror=enospc pauses the VM on ENOSPC.
		return syscall.ENOSPC
	case errors.Is(err, rowengine.ErrReadOnly):
		return syscall.EROFS
	default:
		return syscall.EIO
	}
}
