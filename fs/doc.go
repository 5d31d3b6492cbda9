// Package fs exposes a pool on a FUSE mount with go-fuse v2's fs API: the
// mount root lists the volumes, and MOUNT/NAME is a volume as a regular
// file that qemu opens as a raw image. It is a translator: every method
// converts its arguments, calls the engine and maps the error with toErrno
// (errors.go), the only place an errno is chosen. No snapshot logic lives
// here. A guest request on a volume that fails (a write refused with
// ENOSPC, a read that met EIO) is logged by guestlog.go, one line per
// volume, operation and errno per minute, since the guest only sees the
// errno.
//
// # Kernel caching
//
// Volume files are opened with FOPEN_DIRECT_IO|FOPEN_PARALLEL_DIRECT_WRITES:
// the kernel keeps no page cache for them, so content changed behind its
// back (rollback, later) can never be served stale, and several writers to
// one file run in parallel. Directory entries and attributes are cached for
// Options.AttrTimeout; the daemon calls VolumeChanged / VolumeRemoved after
// a resize or delete through the control API so the kernel drops them at
// once. Those notifications must never be sent from inside a FUSE request
// for the same inode (the kernel would wait on itself): they are only sent
// from control-API goroutines.
//
// # Concurrency
//
// go-fuse calls node methods concurrently. Nodes hold no mutable state but
// their attributes (mode, owner, times), guarded by attrMu; all I/O state
// lives in the engine, which is safe for concurrent use. The O_DSYNC writes
// in flight are listed in a sync.Map by request (syncwrite.go): each entry
// is written and read by its own request's goroutine only.
//
// # Extended attributes
//
// user.rowfs.* attributes are computed on demand, read-only (setxattr and
// removexattr give EPERM) and not listed by listxattr, as CephFS and CIFS
// do with virtual attributes, so cp -a and rsync -X do not copy them onto
// other filesystems as real ones. Unknown names give ENODATA;
// user.rowfs.keys lists the names a file supports.
//
// # Errors
//
// See errors.go: engine sentinels map to errno in exactly one table,
// errnos, which must name every rowengine.Sentinels entry (a test checks).
package fs
