package fs

import (
	"fmt"
	"slices"
	"syscall"
	"testing"

	"github.com/rowfs/rowfs/rowengine"
)

func TestToErrno(t *testing.T) {
	cases := map[error]syscall.Errno{
		nil:                            0,
		rowengine.ErrNotFound:          syscall.ENOENT,
		rowengine.ErrExists:            syscall.EEXIST,
		rowengine.ErrInvalidArgument:   syscall.EINVAL,
		rowengine.ErrBusy:              syscall.EBUSY,
		rowengine.ErrNoSpace:           syscall.ENOSPC, // never EIO: qemu pauses the VM on ENOSPC
		rowengine.ErrReadOnly:          syscall.EROFS,
		rowengine.ErrIO:                syscall.EIO,
		rowengine.ErrChainLimit:        syscall.EDQUOT,
		rowengine.ErrUnavailable:       syscall.EHOSTDOWN,
		rowengine.ErrCorrupt:           syscall.EUCLEAN,
		fmt.Errorf("unexpected thing"): syscall.EIO,
	}
	for err, want := range cases {
		wrapped := err
		if err != nil {
			wrapped = fmt.Errorf("context: %w", err)
		}
		if got := toErrno(wrapped); got != want {
			t.Errorf("toErrno(%v) = %v, want %v", wrapped, got, want)
		}
	}
}

// TestErrnoMapsEverySentinel: each engine sentinel has an errno of its own
// choosing in errnos, none left to the EIO default.
func TestErrnoMapsEverySentinel(t *testing.T) {
	for name, sentinel := range rowengine.Sentinels {
		if !slices.ContainsFunc(errnos, func(m errnoMapping) bool { return m.err == sentinel }) {
			t.Errorf("rowengine.%s has no errno in errnos (fs/errors.go): choose one", name)
		}
	}
}

func TestXattrValue(t *testing.T) {
	if n, errno := xattrValue(nil, []byte("volume"), nil); n != 6 || errno != 0 {
		t.Errorf("size query: %d, %v", n, errno)
	}
	if _, errno := xattrValue(make([]byte, 3), []byte("volume"), nil); errno != syscall.ERANGE {
		t.Errorf("short buffer: %v, want ERANGE", errno)
	}
	buf := make([]byte, 16)
	if n, errno := xattrValue(buf, []byte("volume"), nil); n != 6 || errno != 0 || string(buf[:n]) != "volume" {
		t.Errorf("copy: %d %v %q", n, errno, buf[:n])
	}
	if refuseSetxattr("user.rowfs.kind") != syscall.EPERM || refuseSetxattr("user.other") != syscall.EOPNOTSUPP {
		t.Error("setxattr refusals wrong")
	}
}
