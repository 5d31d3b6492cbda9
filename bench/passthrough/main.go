// Command passthrough serves one raw file on a FUSE mount with the go-fuse
// settings rowfs uses (1 MiB requests, async direct I/O, KILLPRIV_V2,
// direct-I/O opens with parallel writes) and no block mapping: the ceiling a
// Go FUSE daemon can reach here. Kernel passthrough is not used, so every
// request goes through this process, as with rowfs.
//
// A file opened O_SYNC or O_DSYNC writes through a backing descriptor
// opened the same way, so each such write is durable before it is
// answered: the kernel sends no FSYNC for them, only the flag on the
// WRITE request, and rowfs commits for it (fs/syncwrite.go); a ceiling
// that answered them from the page cache would not be doing the same work.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

type root struct{ gofs.Inode }

type file struct {
	gofs.Inode
	path    string
	backing *os.File
}

// syncHandle is an open of the file with O_SYNC or O_DSYNC: its writes go
// through a backing descriptor with O_DSYNC.
type syncHandle struct{ backing *os.File }

var _ gofs.FileReleaser = (*syncHandle)(nil)

func (h *syncHandle) Release(ctx context.Context) syscall.Errno {
	return gofs.ToErrno(h.backing.Close())
}

var (
	_ gofs.NodeOpener    = (*file)(nil)
	_ gofs.NodeReader    = (*file)(nil)
	_ gofs.NodeWriter    = (*file)(nil)
	_ gofs.NodeFsyncer   = (*file)(nil)
	_ gofs.NodeGetattrer = (*file)(nil)
	_ gofs.NodeLseeker   = (*file)(nil)
)

func (f *file) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	const openFlags = fuse.FOPEN_DIRECT_IO | fuse.FOPEN_PARALLEL_DIRECT_WRITES
	if flags&syscall.O_DSYNC == 0 { // (O_SYNC includes O_DSYNC)
		return nil, openFlags, 0
	}
	bf, err := os.OpenFile(f.path, os.O_RDWR|syscall.O_DSYNC, 0)
	if err != nil {
		return nil, 0, gofs.ToErrno(err)
	}
	return &syncHandle{backing: bf}, openFlags, 0
}

func (f *file) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	st, err := f.backing.Stat()
	if err != nil {
		return gofs.ToErrno(err)
	}
	out.Mode = syscall.S_IFREG | 0o644
	out.Size = uint64(st.Size())
	return 0
}

func (f *file) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := f.backing.ReadAt(dest, off)
	if err != nil && n == 0 {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *file) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	backing := f.backing
	if h, ok := fh.(*syncHandle); ok {
		backing = h.backing
	}
	n, err := backing.WriteAt(data, off)
	if err != nil {
		return uint32(n), gofs.ToErrno(err)
	}
	return uint32(n), 0
}

func (f *file) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	return gofs.ToErrno(unix.Fdatasync(int(f.backing.Fd())))
}

func (f *file) Lseek(ctx context.Context, fh gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := unix.Seek(int(f.backing.Fd()), int64(off), int(whence))
	return uint64(n), gofs.ToErrno(err)
}

func main() {
	backing := flag.String("file", "", "raw file to serve")
	mnt := flag.String("mount", "", "mount point; the file appears as MOUNT/disk.img")
	flag.Parse()
	bf, err := os.OpenFile(*backing, os.O_RDWR, 0)
	if err != nil {
		log.Fatal(err)
	}
	r := &root{}
	srv, err := gofs.Mount(*mnt, r, &gofs.Options{
		OnAdd: func(ctx context.Context) {
			r.AddChild("disk.img", r.NewPersistentInode(ctx, &file{path: *backing, backing: bf}, gofs.StableAttr{Mode: syscall.S_IFREG}), false)
		},
		MountOptions: fuse.MountOptions{
			FsName: "passthrough", Name: "passthrough", MaxWrite: 1 << 20, DirectMount: true, DisableSplice: true,
			ExtraCapabilities: fuse.CAP_ASYNC_DIO | fuse.CAP_HANDLE_KILLPRIV_V2,
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; srv.Unmount() }()
	log.Printf("passthrough of %s ready at %s/disk.img", *backing, *mnt)
	srv.Wait()
}
