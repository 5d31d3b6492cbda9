package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rowfs/rowfs/rowengine"
)

// Engine is what the mount needs of a pool.
type Engine interface {
	Volumes() []rowengine.VolumeInfo
	Volume(name string) (rowengine.VolumeInfo, error)
	// VolumeDetail may ask Ceph (RBD volumes): for xattrs only.
	VolumeDetail(name string) (rowengine.VolumeInfo, error)
	OpenVolume(name string, writable bool) (*rowengine.Handle, error)
	ResizeVolume(name string, size uint64, allowShrink bool) (rowengine.VolumeInfo, error)
	Info() rowengine.PoolInfo
	Sync() error
	Snapshots(volume string) ([]rowengine.SnapshotInfo, error)
	Snapshot(volume, name string) (rowengine.SnapshotInfo, error)
	OpenSnapshot(volume, name string) (*rowengine.Handle, error)
	// PoliciesOf names the snapshot policies applied to a volume; GroupOf
	// its snapshot group ("" if none).
	PoliciesOf(volume string) ([]string, error)
	GroupOf(volume string) (string, error)
}

// Describer renders the JSON documents served as xattrs; the daemon owns
// the wire types, so user.rowfs.info.json is byte for byte what
// `rowctl volume info NAME --json` prints.
type Describer interface {
	VolumeJSON(name string) ([]byte, error)
	PoolJSON() ([]byte, error)
	SnapshotJSON(volume, snap string) ([]byte, error)
	// SnapshotsJSON lists a volume's snapshots in under limit bytes.
	SnapshotsJSON(volume string, limit int) ([]byte, error)
	// BackupsJSON lists a volume's backup points as the daemon last saw
	// them (never asking a target: no FUSE request waits on the network).
	BackupsJSON(volume string, limit int) ([]byte, error)
}

// Options configure a mount. Zero values take the documented defaults.
type Options struct {
	Engine    Engine
	Describer Describer
	// AttrTimeout is how long the kernel caches entries and attributes.
	// Default 1s; the daemon invalidates them on resize and delete.
	AttrTimeout time.Duration
	// AllowOther lets other users (libvirt runs qemu as its own user) use
	// the mount, with default_permissions so the kernel checks modes.
	// Off in the zero value; the daemon's config turns it on by default.
	AllowOther bool
	// MaxWrite is the largest read/write request. Default 1 MiB.
	MaxWrite int
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Debug logs every FUSE request.
	Debug bool
	// Source is the mount's source as mountinfo and df show it. The daemon
	// names its pool there ("rowfs:/var/lib/rowfs"), so that a later
	// rowfsd can tell a mount of its own pool from another's. Default "rowfs".
	Source string
	// AllowFileShrink lets a truncate of a volume file to a smaller size
	// shrink the volume, discarding its tail. Default false: EPERM, with a
	// log line pointing at rowctl volume resize --shrink, which asks.
	AllowFileShrink bool
	// Meter counts reads and writes of volume files. Default nil: none,
	// and a request reads no clock for it.
	Meter IOMeter
}

// EnsureDefaults fills zero fields.
func (o *Options) EnsureDefaults() {
	if o.AttrTimeout == 0 {
		o.AttrTimeout = time.Second
	}
	if o.MaxWrite == 0 {
		o.MaxWrite = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Source == "" {
		o.Source = "rowfs"
	}
}

// Mount is a mounted pool.
type Mount struct {
	server *fuse.Server
	root   *rootNode
	dir    string
}

// Capabilities rowfs asks of the kernel beyond go-fuse's defaults, measured
// in ../shared/NOTES.md and bench/: async direct I/O keeps iodepth > 1 in
// flight; HANDLE_KILLPRIV_V2 stops a GETXATTR security.capability before
// every write once Getxattr is implemented; DIRECT_IO_ALLOW_MMAP lets a
// FOPEN_DIRECT_IO file be mapped shared (without it mmap gives ENODEV).
const extraCapabilities = fuse.CAP_ASYNC_DIO | fuse.CAP_HANDLE_KILLPRIV_V2 | fuse.CAP_PARALLEL_DIROPS |
	fuse.CAP_DIRECT_IO_ALLOW_MMAP

// MountPool mounts the engine's volumes at dir and serves requests until Unmount.
func MountPool(dir string, opts Options) (*Mount, error) {
	opts.EnsureDefaults()
	root := &rootNode{opts: opts, started: time.Now(), guestErrors: newGuestErrorLog(opts.Logger, time.Now), durableWrites: &durableWrites{}}
	mo := fuse.MountOptions{
		FsName:            opts.Source,
		Name:              "rowfs",
		AllowOther:        opts.AllowOther,
		MaxWrite:          opts.MaxWrite,
		ExtraCapabilities: extraCapabilities,
		Debug:             opts.Debug,
		DirectMount:       true,
		// Replies are built in memory (ReadResultData); go-fuse would still
		// set up a pipe for every read before falling back, and log each
		// 1 MiB read that overflows the pipe.
		DisableSplice: true,
		// The kernel enforces OFD locks (qemu image locking) locally.
		EnableLocks: false,
	}
	if opts.AllowOther {
		mo.Options = append(mo.Options, "default_permissions")
	}
	timeout := opts.AttrTimeout
	nodeFS := gofs.NewNodeFS(root, &gofs.Options{
		MountOptions:   mo,
		EntryTimeout:   &timeout,
		AttrTimeout:    &timeout,
		RootStableAttr: &gofs.StableAttr{Ino: 1},
	})
	server, err := fuse.NewServer(syncWrites{RawFileSystem: nodeFS, inFlight: root.durableWrites}, dir, &mo)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	// Not server.WaitMount: the mount is made (NewServer returned), and
	// WaitMount's "poll hack" opens a file on the new mount from this very
	// process. A daemon killed while its own request is in its hands can
	// then never exit: the opening thread waits for an answer in an
	// uninterruptible sleep, and the connection is only aborted once every
	// thread is gone (seen in the kill -9 loop: a zombie rowfsd and a hung
	// mount). rowfsd never opens its own files, which is all the hack is for.
	go server.Serve()
	return &Mount{server: server, root: root, dir: dir}, nil
}

// Unmount unmounts, lazily if files are still open, and waits for the
// request loop to end.
func (m *Mount) Unmount() error {
	err := m.server.Unmount()
	if err != nil {
		m.root.opts.Logger.Warn("unmount busy; detaching lazily", "mount", m.dir, "err", err)
		err = syscall.Unmount(m.dir, syscall.MNT_DETACH)
	}
	m.server.Wait()
	return err
}

// VolumeChanged drops the kernel's cached attributes of a volume (after a
// resize through the control API).
func (m *Mount) VolumeChanged(name string) {
	if child := m.root.GetChild(name); child != nil {
		child.NotifyContent(-1, 0)
	}
}

// VolumeRemoved drops the kernel's cached entry of a deleted volume.
func (m *Mount) VolumeRemoved(name string) {
	m.root.NotifyEntry(name)
}

type rootNode struct {
	gofs.Inode
	opts        Options
	started     time.Time
	guestErrors *guestErrorLog
	// durableWrites are the O_DSYNC writes in flight (syncwrite.go).
	durableWrites *durableWrites
}

var (
	_ gofs.NodeLookuper    = (*rootNode)(nil)
	_ gofs.NodeReaddirer   = (*rootNode)(nil)
	_ gofs.NodeGetattrer   = (*rootNode)(nil)
	_ gofs.NodeStatfser    = (*rootNode)(nil)
	_ gofs.NodeGetxattrer  = (*rootNode)(nil)
	_ gofs.NodeListxattrer = (*rootNode)(nil)
	_ gofs.NodeSetxattrer  = (*rootNode)(nil)
)

// volumeIno keeps volume inode numbers stable and never reused: volume ids
// come from a sequence that only grows.
func volumeIno(id uint64) uint64 { return 1<<32 + id }

func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name == SnapshotsDir {
		dirAttr(&out.Attr, snapshotsDirIno, r)
		return r.NewInode(ctx, &snapshotsRoot{root: r}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: snapshotsDirIno}), 0
	}
	info, err := r.opts.Engine.Volume(name)
	if err != nil {
		return nil, toErrno(err)
	}
	node := &volumeNode{root: r, name: name, mode: 0o660, ctime: info.Created}
	child := r.NewInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: volumeIno(info.ID)})
	child.Operations().(*volumeNode).fillAttr(info, &out.Attr)
	return child, 0
}

func (r *rootNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	vols := r.opts.Engine.Volumes()
	entries := make([]fuse.DirEntry, 0, len(vols)+1)
	entries = append(entries, fuse.DirEntry{Name: SnapshotsDir, Mode: syscall.S_IFDIR, Ino: snapshotsDirIno})
	for _, v := range vols {
		entries = append(entries, fuse.DirEntry{Name: v.Name, Mode: syscall.S_IFREG, Ino: volumeIno(v.ID)})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return gofs.NewListDirStream(entries), 0
}

func (r *rootNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o755
	out.Nlink = 2
	out.Ino = 1
	t := r.started
	out.SetTimes(&t, &t, &t)
	return 0
}

func (r *rootNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	info := r.opts.Engine.Info()
	out.Bsize = uint32(info.BlockSize)
	out.Frsize = uint32(info.BlockSize)
	out.Blocks = info.CapacityBytes / info.BlockSize
	out.Bfree = info.FreeBytes / info.BlockSize
	out.Bavail = out.Bfree
	out.Files = uint64(info.Volumes)
	out.NameLen = 128
	return 0
}

func (r *rootNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	switch attr {
	case xattrKeys:
		return xattrValue(dest, []byte(xattrKeys+"\n"+xattrKind+"\n"+xattrPoolJSON+"\n"), nil)
	case xattrKind:
		return xattrValue(dest, []byte("pool"), nil)
	case xattrPoolJSON:
		value, err := r.opts.Describer.PoolJSON()
		return xattrValue(dest, value, err)
	}
	return 0, syscall.ENODATA
}

func (r *rootNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) { return 0, 0 }

func (r *rootNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return refuseSetxattr(attr)
}

// volumeNode is MOUNT/NAME.
type volumeNode struct {
	gofs.Inode
	root *rootNode
	name string

	attrMu sync.Mutex
	mode   uint32
	uid    uint32
	gid    uint32
	ctime  time.Time
	mtime  time.Time
}

var (
	_ gofs.NodeOpener        = (*volumeNode)(nil)
	_ gofs.NodeGetattrer     = (*volumeNode)(nil)
	_ gofs.NodeSetattrer     = (*volumeNode)(nil)
	_ gofs.NodeReader        = (*volumeNode)(nil)
	_ gofs.NodeWriter        = (*volumeNode)(nil)
	_ gofs.NodeFsyncer       = (*volumeNode)(nil)
	_ gofs.NodeFlusher       = (*volumeNode)(nil)
	_ gofs.NodeReleaser      = (*volumeNode)(nil)
	_ gofs.NodeAllocater     = (*volumeNode)(nil)
	_ gofs.NodeLseeker       = (*volumeNode)(nil)
	_ gofs.NodeGetxattrer    = (*volumeNode)(nil)
	_ gofs.NodeSetxattrer    = (*volumeNode)(nil)
	_ gofs.NodeRemovexattrer = (*volumeNode)(nil)
	_ gofs.NodeListxattrer   = (*volumeNode)(nil)
)

// fileHandle is one open of a volume file.
type fileHandle struct {
	h     *rowengine.Handle
	meter VolumeMeter // nil: not counted
}

// startMeter is the handle's meter and the request's start, if it has one.
func startMeter(f gofs.FileHandle) (VolumeMeter, time.Time) {
	if fh, ok := f.(*fileHandle); ok && fh.meter != nil {
		return fh.meter, time.Now()
	}
	return nil, time.Time{}
}

func handleOf(f gofs.FileHandle) (*rowengine.Handle, syscall.Errno) {
	fh, ok := f.(*fileHandle)
	if !ok {
		return nil, syscall.EBADF
	}
	return fh.h, 0
}

func (v *volumeNode) fillAttr(info rowengine.VolumeInfo, out *fuse.Attr) {
	v.attrMu.Lock()
	defer v.attrMu.Unlock()
	out.Ino = volumeIno(info.ID)
	out.Mode = syscall.S_IFREG | v.mode
	out.Nlink = 1
	out.Uid, out.Gid = v.uid, v.gid
	out.Size = info.Size
	out.Blocks = info.UsedBytes / 512
	out.Blksize = uint32(info.BlockSize)
	mtime := v.mtime
	if mtime.IsZero() {
		mtime = info.Created
	}
	out.SetTimes(&mtime, &mtime, &v.ctime)
}

func (v *volumeNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	info, err := v.root.opts.Engine.Volume(v.name)
	if err != nil {
		return toErrno(err)
	}
	v.fillAttr(info, &out.Attr)
	return 0
}

// Setattr resizes on a size change (truncate, qemu-img resize) and keeps
// mode, owner and times in memory, so libvirt can chown the image to its
// qemu user for the life of the mount.
func (v *volumeNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if errno := v.truncate(size); errno != 0 {
			return errno
		}
	}
	v.attrMu.Lock()
	if mode, ok := in.GetMode(); ok {
		v.mode = mode & 0o7777
	}
	if uid, ok := in.GetUID(); ok {
		v.uid = uid
	}
	if gid, ok := in.GetGID(); ok {
		v.gid = gid
	}
	if mtime, ok := in.GetMTime(); ok {
		v.mtime = mtime
	}
	v.ctime = time.Now()
	v.attrMu.Unlock()
	return v.Getattr(ctx, f, out)
}

// truncate resizes the volume to size. Growing is always allowed;
// shrinking discards the tail, so it is refused unless AllowFileShrink
// says otherwise. A truncate to 0 (O_TRUNC, and qemu-img create, which
// truncates to 0 before it sets the size) changes nothing: a volume cannot
// be empty, and emptying one by accident must not discard a disk.
func (v *volumeNode) truncate(size uint64) syscall.Errno {
	info, err := v.root.opts.Engine.Volume(v.name)
	if err != nil {
		return toErrno(err)
	}
	switch {
	case size == info.Size:
		return 0
	case size == 0:
		v.root.opts.Logger.Info("truncate to 0 of a volume file leaves it as it is (volumes cannot be empty)", "volume", v.name)
		return 0
	case size < info.Size && !v.root.opts.AllowFileShrink:
		v.root.opts.Logger.Warn("refused a truncate that would shrink the volume and discard its tail; use rowctl volume resize --shrink, or allow_file_shrink",
			"volume", v.name, "size", info.Size, "requested", size)
		return syscall.EPERM
	}
	_, err = v.root.opts.Engine.ResizeVolume(v.name, size, true)
	return toErrno(err)
}

func (v *volumeNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	writable := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	h, err := v.root.opts.Engine.OpenVolume(v.name, writable)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	fh := &fileHandle{h: h}
	if m := v.root.opts.Meter; m != nil {
		fh.meter = m.Volume(v.name)
	}
	return fh, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_PARALLEL_DIRECT_WRITES, 0
}

func (v *volumeNode) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	meter, started := startMeter(f)
	res, errno := readHandle(f, dest, off)
	if errno == 0 && meter != nil {
		meter.Observe(OpRead, res.Size(), time.Since(started))
	}
	return res, v.root.guestErrors.failed(v.name, "read", errno, nil)
}

func readHandle(f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, errno := handleOf(f)
	if errno != 0 {
		return nil, errno
	}
	n, err := h.ReadAt(dest, off)
	if err != nil && n == 0 && !isEOF(err) {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (v *volumeNode) Write(ctx context.Context, f gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	h, errno := handleOf(f)
	if errno != 0 {
		return 0, errno
	}
	meter, started := startMeter(f)
	var n int
	var err error
	if w := v.root.durableWrites.of(ctx); w != nil {
		n, err = h.WriteAtSync(data, off)
		w.made = err == nil
	} else {
		n, err = h.WriteAt(data, off)
	}
	if err != nil && n == 0 {
		return 0, v.root.guestErrors.failed(v.name, "write", toErrno(err), err)
	}
	if meter != nil {
		meter.Observe(OpWrite, n, time.Since(started))
	}
	return uint32(n), 0
}

func (v *volumeNode) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	if h, errno := handleOf(f); errno == 0 {
		err := h.Sync()
		return v.root.guestErrors.failed(v.name, "fsync", toErrno(err), err)
	}
	// fsync without a handle (rare): the barrier is pool-wide anyway.
	return toErrno(v.root.opts.Engine.Sync())
}

// Flush (close) is not a durability barrier; fsync is.
func (v *volumeNode) Flush(ctx context.Context, f gofs.FileHandle) syscall.Errno { return 0 }

func (v *volumeNode) Release(ctx context.Context, f gofs.FileHandle) syscall.Errno {
	return releaseHandle(f)
}

func releaseHandle(f gofs.FileHandle) syscall.Errno {
	if h, errno := handleOf(f); errno == 0 {
		h.Close()
	}
	return 0
}

const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

func (v *volumeNode) Allocate(ctx context.Context, f gofs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	h, errno := handleOf(f)
	if errno != 0 {
		return errno
	}
	end := off + size
	grow := func() syscall.Errno {
		if mode&fallocKeepSize == 0 && end > h.Size() {
			_, err := v.root.opts.Engine.ResizeVolume(v.name, (end+rowengine.SectorSize-1)/rowengine.SectorSize*rowengine.SectorSize, false)
			return toErrno(err)
		}
		return 0
	}
	switch mode &^ fallocKeepSize {
	case 0: // preallocate: the volume is thin, so only a size change matters
		return grow()
	case fallocPunchHole:
		if mode&fallocKeepSize == 0 {
			return syscall.EOPNOTSUPP
		}
	case fallocZeroRange:
		if errno := grow(); errno != 0 {
			return errno
		}
	default:
		return syscall.EOPNOTSUPP
	}
	end = min(end, h.Size())
	if off >= end {
		return 0
	}
	err := h.ZeroRange(int64(off), end-off)
	return v.root.guestErrors.failed(v.name, "fallocate", toErrno(err), err)
}

func (v *volumeNode) Lseek(ctx context.Context, f gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	return seekHandle(f, off, whence)
}

func seekHandle(f gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	h, errno := handleOf(f)
	if errno != 0 {
		return 0, errno
	}
	var pos uint64
	var ok bool
	switch whence {
	case seekData:
		pos, ok = h.SeekData(off)
	case seekHole:
		pos, ok = h.SeekHole(off)
	default:
		return 0, syscall.EINVAL
	}
	if !ok {
		return 0, syscall.ENXIO
	}
	return pos, 0
}

const (
	seekData = 3
	seekHole = 4
)

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
