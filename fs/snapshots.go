package fs

import (
	"context"
	"strconv"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rowfs/rowfs/rowengine"
)

// SnapshotsDir is MOUNT/.snapshots: one directory per volume, one
// read-only file per visible snapshot. Volume names never start with a
// dot, so it cannot clash with a volume.
const SnapshotsDir = ".snapshots"

// Inode numbers: 1 the root, 2 .snapshots, then one range per kind keyed
// by ids from the pool's only-growing sequence, so they are never reused.
const snapshotsDirIno = 2

func volumeSnapDirIno(volumeID uint64) uint64 { return 2<<32 + volumeID }
func snapshotIno(nodeID uint64) uint64        { return 3<<32 + nodeID }

// maxSnapshotsJSON keeps user.rowfs.snapshots.json under the 64 KiB a
// Linux xattr value may hold.
const maxSnapshotsJSON = 64<<10 - 1

func dirAttr(out *fuse.Attr, ino uint64, r *rootNode) {
	out.Mode = syscall.S_IFDIR | 0o555
	out.Nlink = 2
	out.Ino = ino
	t := r.started
	out.SetTimes(&t, &t, &t)
}

// snapshotsRoot is MOUNT/.snapshots.
type snapshotsRoot struct {
	gofs.Inode
	root *rootNode
}

var (
	_ gofs.NodeLookuper  = (*snapshotsRoot)(nil)
	_ gofs.NodeReaddirer = (*snapshotsRoot)(nil)
	_ gofs.NodeGetattrer = (*snapshotsRoot)(nil)
)

func (d *snapshotsRoot) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, snapshotsDirIno, d.root)
	return 0
}

func (d *snapshotsRoot) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	info, err := d.root.opts.Engine.Volume(name)
	if err != nil {
		return nil, toErrno(err)
	}
	ino := volumeSnapDirIno(info.ID)
	child := d.NewInode(ctx, &volumeSnapshotsDir{root: d.root, volume: name, ino: ino}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino})
	dirAttr(&out.Attr, ino, d.root)
	return child, 0
}

func (d *snapshotsRoot) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var entries []fuse.DirEntry
	for _, v := range d.root.opts.Engine.Volumes() {
		entries = append(entries, fuse.DirEntry{Name: v.Name, Mode: syscall.S_IFDIR, Ino: volumeSnapDirIno(v.ID)})
	}
	return gofs.NewListDirStream(entries), 0
}

// volumeSnapshotsDir is MOUNT/.snapshots/VOL.
type volumeSnapshotsDir struct {
	gofs.Inode
	root   *rootNode
	volume string
	ino    uint64
}

var (
	_ gofs.NodeLookuper  = (*volumeSnapshotsDir)(nil)
	_ gofs.NodeReaddirer = (*volumeSnapshotsDir)(nil)
	_ gofs.NodeGetattrer = (*volumeSnapshotsDir)(nil)
)

func (d *volumeSnapshotsDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.ino, d.root)
	return 0
}

func (d *volumeSnapshotsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	info, err := d.root.opts.Engine.Snapshot(d.volume, name)
	if err != nil {
		return nil, toErrno(err)
	}
	node := &snapshotNode{root: d.root, volume: d.volume, name: name}
	child := d.NewInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: snapshotIno(info.ID)})
	fillSnapshotAttr(info, &out.Attr)
	return child, 0
}

func (d *volumeSnapshotsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	nodes, err := d.root.opts.Engine.Snapshots(d.volume)
	if err != nil {
		return nil, toErrno(err)
	}
	var entries []fuse.DirEntry
	for _, n := range nodes {
		if !n.Head && !n.Hidden {
			entries = append(entries, fuse.DirEntry{Name: n.Name, Mode: syscall.S_IFREG, Ino: snapshotIno(n.ID)})
		}
	}
	return gofs.NewListDirStream(entries), 0
}

// snapshotNode is MOUNT/.snapshots/VOL/SNAP: read-only.
type snapshotNode struct {
	gofs.Inode
	root   *rootNode
	volume string
	name   string
}

var (
	_ gofs.NodeOpener        = (*snapshotNode)(nil)
	_ gofs.NodeGetattrer     = (*snapshotNode)(nil)
	_ gofs.NodeSetattrer     = (*snapshotNode)(nil)
	_ gofs.NodeReader        = (*snapshotNode)(nil)
	_ gofs.NodeWriter        = (*snapshotNode)(nil)
	_ gofs.NodeReleaser      = (*snapshotNode)(nil)
	_ gofs.NodeLseeker       = (*snapshotNode)(nil)
	_ gofs.NodeGetxattrer    = (*snapshotNode)(nil)
	_ gofs.NodeSetxattrer    = (*snapshotNode)(nil)
	_ gofs.NodeRemovexattrer = (*snapshotNode)(nil)
	_ gofs.NodeListxattrer   = (*snapshotNode)(nil)
)

func fillSnapshotAttr(info rowengine.SnapshotInfo, out *fuse.Attr) {
	out.Ino = snapshotIno(info.ID)
	out.Mode = syscall.S_IFREG | 0o440
	out.Nlink = 1
	out.Size = info.Size
	out.Blocks = info.OwnBytes / 512
	t := info.Created
	out.SetTimes(&t, &t, &t)
}

func (s *snapshotNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	info, err := s.root.opts.Engine.Snapshot(s.volume, s.name)
	if err != nil {
		return toErrno(err)
	}
	fillSnapshotAttr(info, &out.Attr)
	return 0
}

func (s *snapshotNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (s *snapshotNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	h, err := s.root.opts.Engine.OpenSnapshot(s.volume, s.name)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	return &fileHandle{h: h}, fuse.FOPEN_DIRECT_IO, 0
}

func (s *snapshotNode) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return readHandle(f, dest, off)
}

func (s *snapshotNode) Write(ctx context.Context, f gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (s *snapshotNode) Release(ctx context.Context, f gofs.FileHandle) syscall.Errno {
	return releaseHandle(f)
}

func (s *snapshotNode) Lseek(ctx context.Context, f gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	return seekHandle(f, off, whence)
}

var snapshotXattrs = []string{xattrKeys, xattrKind, xattrSize, xattrUsed, xattrBtime, xattrInfoJSON}

func (s *snapshotNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !strings.HasPrefix(attr, xattrPrefix) {
		return 0, syscall.ENODATA
	}
	info, err := s.root.opts.Engine.Snapshot(s.volume, s.name)
	if err != nil {
		return 0, toErrno(err)
	}
	switch attr {
	case xattrKeys:
		return xattrValue(dest, []byte(strings.Join(snapshotXattrs, "\n")+"\n"), nil)
	case xattrKind:
		return xattrValue(dest, []byte("snapshot"), nil)
	case xattrSize:
		return xattrValue(dest, strconv.AppendUint(nil, info.Size, 10), nil)
	case xattrUsed:
		return xattrValue(dest, strconv.AppendUint(nil, info.OwnBytes, 10), nil)
	case xattrBtime:
		return xattrValue(dest, []byte(info.Created.UTC().Format("2006-01-02T15:04:05Z")), nil)
	case xattrInfoJSON:
		value, err := s.root.opts.Describer.SnapshotJSON(s.volume, s.name)
		return xattrValue(dest, value, err)
	}
	return 0, syscall.ENODATA
}

func (s *snapshotNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return 0, 0
}

func (s *snapshotNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return refuseSetxattr(attr)
}

func (s *snapshotNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return refuseSetxattr(attr)
}

// SnapshotsChanged drops the kernel's cached entries of a volume's
// snapshots that no longer exist, and its directory listing.
func (m *Mount) SnapshotsChanged(volume string) {
	snaps := m.root.GetChild(SnapshotsDir)
	if snaps == nil {
		return
	}
	dir := snaps.GetChild(volume)
	if dir == nil {
		snaps.NotifyEntry(volume)
		return
	}
	for name := range dir.Children() {
		if _, err := m.root.opts.Engine.Snapshot(volume, name); err != nil {
			dir.NotifyEntry(name)
		}
	}
	if _, err := m.root.opts.Engine.Volume(volume); err != nil {
		snaps.NotifyEntry(volume)
	}
	dir.NotifyContent(0, 0)
}
