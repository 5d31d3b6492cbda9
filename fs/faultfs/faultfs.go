// Package faultfs is a test filesystem: a FUSE loopback of a directory that
// can cut the power and fail I/O on demand. Tests put a pool on it.
//
// Power: every write, truncate and fallocate goes straight to the backing
// file, and the bytes it replaced are kept in an undo log per file until
// that file is fsynced (fsync, fdatasync, msync). CutPower, called after
// Unmount (which also writes back the kernel's dirty pages), rolls every
// file back to its last sync, newest change first: what is left is what a
// disk would hold after a power cut that lost its volatile cache. Creating,
// renaming and removing files count as durable at once (most journalling
// filesystems make them so within seconds); only file contents are lost.
//
// Faults: Fail makes reads or writes of a byte range of one file return
// EIO until cleared.
//
// Safe for concurrent use; FUSE requests arrive in parallel.
package faultfs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// FS is one mounted faultfs.
type FS struct {
	backing string
	server  *fuse.Server

	mu     sync.Mutex
	undo   map[string][]change // backing path → changes since its last sync, oldest first
	faults []Fault
}

// change is what one write replaced: the old bytes at off, and the file's
// size before it.
type change struct {
	off     int64
	old     []byte
	oldSize int64
}

// Fault fails I/O on a byte range of the file whose name ends in Suffix.
type Fault struct {
	Suffix        string
	Off, Len      int64
	Reads, Writes bool
}

// Mount serves backing at mnt.
func Mount(backing, mnt string) (*FS, error) {
	f := &FS{backing: backing, undo: map[string][]change{}}
	root := &fs.LoopbackRoot{Path: backing}
	rootNode := &node{LoopbackNode: &fs.LoopbackNode{RootData: root}, fs: f}
	root.RootNode = rootNode
	server, err := fs.Mount(mnt, rootNode, &fs.Options{
		MountOptions: fuse.MountOptions{FsName: "faultfs", Name: "faultfs", DirectMount: true},
	})
	if err != nil {
		return nil, err
	}
	f.server = server
	return f, nil
}

// Unmount unmounts (writing back dirty pages first) and waits for the server.
func (f *FS) Unmount() error {
	err := f.server.Unmount()
	f.server.Wait()
	return err
}

// CutPower rolls every file back to its last sync. Call it after Unmount.
func (f *FS) CutPower() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for path, changes := range f.undo {
		file, err := os.OpenFile(path, os.O_RDWR, 0)
		if os.IsNotExist(err) {
			continue // removed since: its contents no longer matter
		}
		if err != nil {
			return err
		}
		for _, c := range slices.Backward(changes) {
			if err := file.Truncate(c.oldSize); err != nil {
				file.Close()
				return err
			}
			if len(c.old) > 0 {
				if _, err := file.WriteAt(c.old, c.off); err != nil {
					file.Close()
					return err
				}
			}
		}
		if err := file.Close(); err != nil {
			return err
		}
	}
	f.undo = map[string][]change{}
	return nil
}

// Unsynced reports how many files have changes a power cut would undo.
func (f *FS) Unsynced() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.undo)
}

// Fail adds a fault; Clear removes them all.
func (f *FS) Fail(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fault)
}

// Clear removes every fault.
func (f *FS) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

func (f *FS) faulty(path string, off, length int64, write bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range f.faults {
		if strings.HasSuffix(path, fl.Suffix) && off < fl.Off+fl.Len && fl.Off < off+length && (write && fl.Writes || !write && fl.Reads) {
			return true
		}
	}
	return false
}

// remember records what a change of [off, off+length) of file is about to
// replace. Caller makes the change right after.
func (f *FS) remember(path string, file *os.File, off, length int64) syscall.Errno {
	st, err := file.Stat()
	if err != nil {
		return fs.ToErrno(err)
	}
	size := st.Size()
	c := change{off: off, oldSize: size}
	if off < size {
		c.old = make([]byte, min(length, size-off))
		if _, err := file.ReadAt(c.old, off); err != nil {
			return fs.ToErrno(err)
		}
	}
	f.mu.Lock()
	f.undo[path] = append(f.undo[path], c)
	f.mu.Unlock()
	return 0
}

func (f *FS) synced(path string) {
	f.mu.Lock()
	delete(f.undo, path)
	f.mu.Unlock()
}

// node is a loopback node whose files are faultfs files.
type node struct {
	*fs.LoopbackNode
	fs *FS
}

var _ = (fs.NodeWrapChilder)((*node)(nil))

// WrapChild makes every node under the root one of ours.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), fs: n.fs}
}

func (n *node) backingPath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	path := n.backingPath()
	flags &^= syscall.O_APPEND | fuse.FMODE_EXEC
	if flags&syscall.O_TRUNC != 0 {
		if f, err := os.Open(path); err == nil {
			n.fs.remember(path, f, 0, 1<<62)
			f.Close()
		}
	}
	f, err := os.OpenFile(path, int(flags), 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	return &file{fs: n.fs, path: path, f: f}, 0, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	inode, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	// Reopen through our own file type; the loopback handle goes.
	if r, ok := fh.(fs.FileReleaser); ok {
		r.Release(ctx)
	}
	path := filepath.Join(n.backingPath(), name)
	f, err := os.OpenFile(path, int(flags&^(syscall.O_APPEND|syscall.O_CREAT|syscall.O_EXCL|syscall.O_TRUNC)), 0)
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	return inode, &file{fs: n.fs, path: path, f: f}, fuseFlags, 0
}

// Setattr records a truncate made without a file handle.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, ok := in.GetSize(); ok && fh == nil {
		path := n.backingPath()
		if f, err := os.Open(path); err == nil {
			n.fs.remember(path, f, 0, 1<<62)
			f.Close()
		}
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

// file is an open faultfs file.
type file struct {
	fs   *FS
	path string
	f    *os.File
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileSetattrer = (*file)(nil)
	_ fs.FileAllocater = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
)

func (h *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.fs.faulty(h.path, off, int64(len(dest)), false) {
		return nil, syscall.EIO
	}
	n, err := h.f.ReadAt(dest, off)
	if err != nil && n == 0 && !strings.Contains(err.Error(), "EOF") {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.fs.faulty(h.path, off, int64(len(data)), true) {
		return 0, syscall.EIO
	}
	if errno := h.fs.remember(h.path, h.f, off, int64(len(data))); errno != 0 {
		return 0, errno
	}
	n, err := h.f.WriteAt(data, off)
	return uint32(n), fs.ToErrno(err)
}

func (h *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if err := h.f.Sync(); err != nil {
		return fs.ToErrno(err)
	}
	h.fs.synced(h.path)
	return 0
}

func (h *file) Release(ctx context.Context) syscall.Errno { return fs.ToErrno(h.f.Close()) }

func (h *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(h.f.Fd()), &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	return 0
}

func (h *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if errno := h.fs.remember(h.path, h.f, int64(size), 1<<62); errno != 0 {
			return errno
		}
		if err := h.f.Truncate(int64(size)); err != nil {
			return fs.ToErrno(err)
		}
	}
	if mode, ok := in.GetMode(); ok {
		if err := h.f.Chmod(os.FileMode(mode)); err != nil {
			return fs.ToErrno(err)
		}
	}
	return h.Getattr(ctx, out)
}

func (h *file) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if errno := h.fs.remember(h.path, h.f, int64(off), int64(size)); errno != 0 {
		return errno
	}
	return fs.ToErrno(unix.Fallocate(int(h.f.Fd()), mode, int64(off), int64(size)))
}

func (h *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := unix.Seek(int(h.f.Fd()), int64(off), int(whence))
	return uint64(n), fs.ToErrno(err)
}
