package rowengine

import (
	"fmt"
	"sync"
)

// volumeKind is what one kind of volume does. There are two: local
// redirect-on-write volumes (localVolume: volume.go, snapshot.go,
// handle.go) and Ceph RBD images (rbdKind: rbd*.go). The public Pool
// methods look a volume's kind up once (kindOf) and call it, so a kind
// without an operation does not compile, where a forgotten fork at a call
// site once failed silently.
//
// Each method runs with the locks its Pool method took (adminMu for those
// that change volumes or snapshots; see each Pool method).
type volumeKind interface {
	// info describes the volume without asking a remote cluster: file
	// attributes must not wait on one. detail may ask.
	info() VolumeInfo
	detail() (VolumeInfo, error)
	open(writable bool) (*Handle, error)
	openSnapshot(name string) (*Handle, error)
	resize(size uint64, allowShrink bool) (VolumeInfo, error)
	setMaxSnapshots(limit int) (VolumeInfo, error)
	snapshots() ([]SnapshotInfo, error)
	snapshot(name string) (SnapshotInfo, error)
	createSnapshot(name string, opts SnapshotOptions) (SnapshotInfo, error)
	deleteSnapshot(name string, opts DeleteOptions) (DeleteResult, error)
	rollback(name string, force bool) (RollbackResult, error)
	// reset goes back to the image the volume started from: a clone to
	// the snapshot it was cloned from, any other volume to zeros. before
	// runs once the reset is known to be possible, before anything changes
	// (the automatic snapshot).
	reset(force bool, before func() error) (RollbackResult, error)
	// clone makes volume name from snapshot snap; name is validated and
	// free in both namespaces.
	clone(snap, name string) (VolumeInfo, error)
	flatten() (JobInfo, error)
	diff(from, to string) ([]Extent, error)
	remove(force bool) (VolumeDeleteResult, error)
	// detach forgets an RBD volume, leaving its image in Ceph.
	detach(force bool) error
	// openForRollback says why a rollback or reset must be refused now,
	// after waiting Options.CloseGrace for the files to close (the kernel
	// releases them after close returns), or nil.
	openForRollback() error
}

// kindOf finds volume name, of whichever kind.
func (p *Pool) kindOf(name string) (volumeKind, error) {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	if p.closed {
		return nil, ErrClosed
	}
	if v := p.volumes[name]; v != nil {
		return localVolume{p: p, v: v}, nil
	}
	if v := p.rbd[name]; v != nil {
		return rbdKind{p: p, v: v}, nil
	}
	return nil, fmt.Errorf("%w: volume %q", ErrNotFound, name)
}

// localVolume is a local volume as a volumeKind.
type localVolume struct {
	p *Pool
	v *volume
}

// rbdKind is an RBD volume as a volumeKind.
type rbdKind struct {
	p *Pool
	v *rbdVolume
}

var (
	_ volumeKind = localVolume{}
	_ volumeKind = rbdKind{}
	_ handleIO   = (*localHandle)(nil)
	_ handleIO   = (*rbdHandle)(nil)
)

// handleIO is what a kind of volume gives a Handle. Offsets and lengths
// arrive unchecked, and writes only on handles opened writable.
type handleIO interface {
	size() uint64
	readAt(buf []byte, off int64) (int, error)
	writeAt(data []byte, off int64) (int, error)
	// writeAtSync is writeAt made durable before it returns.
	writeAtSync(data []byte, off int64) (int, error)
	zeroRange(off int64, length uint64) error
	sync() error
	seekData(off uint64) (uint64, bool)
	seekHole(off uint64) (uint64, bool)
	close()
}

// Handle is one open volume or snapshot, as a FUSE file handle holds it.
// A Handle is safe for concurrent use: the kernel sends parallel reads and
// writes.
type Handle struct {
	io       handleIO
	writable bool
	once     sync.Once
}

func newHandle(io handleIO, writable bool) *Handle { return &Handle{io: io, writable: writable} }

// OpenVolume opens a volume's head for I/O. Open handles make DeleteVolume
// and RollbackVolume refuse (without force).
func (p *Pool) OpenVolume(name string, writable bool) (*Handle, error) {
	k, err := p.kindOf(name)
	if err != nil {
		return nil, err
	}
	return k.open(writable)
}

// OpenSnapshot opens a snapshot read-only. Its handle fails with
// ErrNotFound once the snapshot is deleted.
func (p *Pool) OpenSnapshot(volume, name string) (*Handle, error) {
	k, err := p.kindOf(volume)
	if err != nil {
		return nil, err
	}
	return k.openSnapshot(name)
}

// Close releases the handle. It does not sync.
func (h *Handle) Close() error {
	h.once.Do(h.io.close)
	return nil
}

// Size returns the volume's current virtual size (a snapshot's: its size
// when it was taken).
func (h *Handle) Size() uint64 { return h.io.size() }

// Sync is the durability barrier (fsync/fdatasync): when it returns, every
// write acknowledged before the call survives a crash.
func (h *Handle) Sync() error { return h.io.sync() }

// ReadAt reads. Unwritten blocks read as zeros. Reading at or past the end
// returns io.EOF; a read across it is cut short.
func (h *Handle) ReadAt(buf []byte, off int64) (int, error) { return h.io.readAt(buf, off) }

// WriteAt writes to the head.
func (h *Handle) WriteAt(data []byte, off int64) (int, error) {
	if !h.writable {
		return 0, fmt.Errorf("%w: handle opened read-only", ErrReadOnly)
	}
	return h.io.writeAt(data, off)
}

// WriteAtSync writes to the head and makes that write durable before it
// returns, as an O_DSYNC or O_SYNC write must be: it survives a crash once
// acknowledged. (Unlike Sync it promises nothing of other writes; on a
// local volume an overwrite costs what the same write to a raw file does.)
func (h *Handle) WriteAtSync(data []byte, off int64) (int, error) {
	if !h.writable {
		return 0, fmt.Errorf("%w: handle opened read-only", ErrReadOnly)
	}
	return h.io.writeAtSync(data, off)
}

// ZeroRange makes a range read as zeros (punch hole, write zeroes,
// discard), freeing what it can.
func (h *Handle) ZeroRange(off int64, length uint64) error {
	if !h.writable {
		return fmt.Errorf("%w: handle opened read-only", ErrReadOnly)
	}
	return h.io.zeroRange(off, length)
}

// SeekData returns the first offset ≥ off that holds data, or ok=false if
// there is none before the end (ENXIO).
func (h *Handle) SeekData(off uint64) (uint64, bool) { return h.io.seekData(off) }

// SeekHole returns the first offset ≥ off in a hole; the end of the volume
// counts as a hole. ok=false if off is at or past the end.
func (h *Handle) SeekHole(off uint64) (uint64, bool) { return h.io.seekHole(off) }
