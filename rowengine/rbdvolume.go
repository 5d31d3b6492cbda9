package rowengine

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rowfs/rowfs/blockmap"
)

// BackendRBD is the backend name of volumes kept in a Ceph RBD image.
const BackendRBD = "rbd"

// DefaultRBDMaxSnapshots is the chain limit of RBD volumes, ZStack's figure
// for Ceph: RBD snapshots are independent, so every one of them counts.
const DefaultRBDMaxSnapshots = 32

// RBDCluster is the Ceph side of RBD volumes, implemented by rowengine/rbd
// and handed in by the daemon (Options.RBD). The engine keeps which images
// are volumes and applies the same names, rules and limits as for local
// volumes; the image data, snapshots and clones stay Ceph's.
//
// Errors wrap ErrNotFound, ErrExists, ErrBusy or ErrUnavailable where one
// applies, so the engine's callers tell them apart as for local volumes.
type RBDCluster interface {
	CreateImage(pool, image string, size uint64) error
	RemoveImage(pool, image string) error
	// OpenImage opens the image's head for reading and writing.
	OpenImage(pool, image string) (RBDImage, error)
	// OpenSnapshot opens one of the image's snapshots read-only.
	OpenSnapshot(pool, image, snap string) (RBDImage, error)
	RBDGroups
}

// RBDGroups are RBD's image groups in one Ceph pool, whose group snapshots
// are consistent across their images: what a snapshot group of RBD
// volumes is made of.
type RBDGroups interface {
	CreateGroup(pool, group string) error
	// RemoveGroup removes a group and its group snapshots; the images stay.
	RemoveGroup(pool, group string) error
	GroupAddImage(pool, group, image string) error
	GroupRemoveImage(pool, group, image string) error
	GroupSnapshot(pool, group, snap string) error
	// GroupSnapshots names the group's snapshots, oldest first.
	GroupSnapshots(pool, group string) ([]string, error)
	// GroupRollback rolls every image back to a group snapshot; RBD
	// refuses if the group's images changed since.
	GroupRollback(pool, group, snap string) error
	GroupRemoveSnapshot(pool, group, snap string) error
}

// RBDImage is one open RBD image. It is safe for concurrent use, as librbd
// is.
type RBDImage interface {
	io.ReaderAt
	io.WriterAt
	Flush() error
	// WriteZeroes makes the range read as zeros, freeing whole objects.
	WriteZeroes(off, length uint64) error
	Size() (uint64, error)
	// ObjectSize is the size of the image's RADOS objects (4 MiB by
	// default): the unit RBD allocates in, shown as the volume's block size.
	ObjectSize() (uint64, error)
	Resize(size uint64) error
	Snapshots() ([]RBDSnapshot, error)
	CreateSnapshot(name string) error
	// RemoveSnapshot unprotects the snapshot first if it has no clones.
	RemoveSnapshot(name string) error
	RollbackSnapshot(name string) error
	// CloneSnapshot makes image a clone of snap, in the same Ceph pool.
	CloneSnapshot(snap, image string) error
	// Flatten copies what a clone reads from its parent; progress gets
	// (done, total) in bytes.
	Flatten(progress func(done, total uint64)) error
	// Parent names the snapshot a clone reads ("pool/image@snap"), or "".
	Parent() (string, error)
	// Children lists the clones of a snapshot as "pool/image".
	Children(snap string) ([]string, error)
	// Diff calls fn for each extent that changed after snapshot from ("":
	// since the image was created) up to this image's view.
	Diff(from string, fn func(off, length uint64) error) error
	// LockOwners names the live clients holding the exclusive lock.
	LockOwners() ([]string, error)
	SetMetadata(key, value string) error
	Metadata(key string) (string, error)
	RemoveMetadata(key string) error
	Close() error
}

// RBDSnapshot is one snapshot of an RBD image.
type RBDSnapshot struct {
	ID      uint64
	Name    string
	Size    uint64
	Created time.Time
}

// rbdVolume is an RBD image exposed as a volume. mu guards img and the
// open counts; the record changes only under the pool's adminMu.
type rbdVolume struct {
	rec blockmap.RBDVolumeRecord

	// cephMu serialises withImage's own opens of the image with its
	// removal: librbd refuses to remove an image another handle has open,
	// and sizes are learned in the background after Open. Lock order:
	// adminMu → cephMu → mu.
	cephMu sync.Mutex

	mu      sync.Mutex
	img     RBDImage // the head, open while handles are or withImage uses it
	pins    int      // withImage calls using img: it stays open until they end
	opens   int
	writers int
	size    uint64 // last size seen, for listings that must not wait on Ceph
	objSize uint64 // object size, once seen
	deleted bool
	// ownBytes caches what each snapshot holds beyond the one before it
	// (rbdOwnBytes): snapshots do not change, so a pair's figure holds
	// until one of them goes, and an info call need not open every
	// snapshot. Replaced whole, never changed in place.
	ownBytes map[rbdOwnKey]uint64
}

// rbdOwnKey names a snapshot and the one before it by their RBD ids,
// which an image never reuses; RBD numbers snapshots from 1, so prev 0 is
// none (the image's first snapshot).
type rbdOwnKey struct{ snap, prev uint64 }

func (v *rbdVolume) spec() string { return v.rec.Pool + "/" + v.rec.Image }

func rbdDescriptionKey(snap string) string { return "rowfs.description." + snap }

func rbdPolicyKey(snap string) string { return "rowfs.policy." + snap }

// cluster returns the Ceph connection, or why there is none.
func (p *Pool) cluster() (RBDCluster, error) {
	if p.opts.RBD == nil {
		return nil, fmt.Errorf("%w: this rowfsd has no RBD backend (build it with make, which needs librbd-dev)", ErrUnavailable)
	}
	return p.opts.RBD, nil
}

// nameTakenLocked reports a local or RBD volume of that name.
func (p *Pool) nameTakenLocked(name string) error {
	if p.volumes[name] != nil || p.rbd[name] != nil {
		return fmt.Errorf("%w: volume %q", ErrExists, name)
	}
	return nil
}

func validateRBDSpec(pool, image string) error {
	for what, s := range map[string]string{"pool": pool, "image": image} {
		if s == "" || strings.ContainsAny(s, "/@\x00") || len(s) > 255 {
			return fmt.Errorf("%w: RBD %s %q: must be 1 to 255 characters without '/' or '@'", ErrInvalidArgument, what, s)
		}
	}
	return nil
}

// CreateRBDVolume creates an RBD image of size bytes in the Ceph pool and
// exposes it as volume name. image "" names the image after the volume.
func (p *Pool) CreateRBDVolume(name, pool, image string, size uint64) (VolumeInfo, error) {
	if image == "" {
		image = name
	}
	if err := errors.Join(ValidateVolumeName(name), ValidateVolumeSize(size), validateRBDSpec(pool, image)); err != nil {
		return VolumeInfo{}, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	c, err := p.checkNewRBD(name, pool, image)
	if err != nil {
		return VolumeInfo{}, err
	}
	if err := c.CreateImage(pool, image, size); err != nil {
		return VolumeInfo{}, fmt.Errorf("create RBD image %s/%s: %w", pool, image, err)
	}
	info, err := p.addRBD(name, pool, image, size)
	if err != nil {
		// Nothing refers to the image yet: do not leave it behind.
		_ = c.RemoveImage(pool, image)
		return VolumeInfo{}, err
	}
	p.log.Info("created RBD volume", "name", name, "image", pool+"/"+image, "size", size)
	return info, nil
}

// AttachRBDVolume exposes an existing RBD image as volume name.
func (p *Pool) AttachRBDVolume(name, pool, image string) (VolumeInfo, error) {
	if err := errors.Join(ValidateVolumeName(name), validateRBDSpec(pool, image)); err != nil {
		return VolumeInfo{}, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	c, err := p.checkNewRBD(name, pool, image)
	if err != nil {
		return VolumeInfo{}, err
	}
	img, err := c.OpenImage(pool, image)
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("attach RBD image %s/%s: %w", pool, image, err)
	}
	size, err := img.Size()
	img.Close()
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("attach RBD image %s/%s: %w", pool, image, err)
	}
	info, err := p.addRBD(name, pool, image, size)
	if err != nil {
		return VolumeInfo{}, err
	}
	p.log.Info("attached RBD volume", "name", name, "image", pool+"/"+image, "size", size)
	return info, nil
}

// checkNewRBD checks that a new RBD volume may take name and image, and
// returns the cluster to make it with. REQUIRES: adminMu.
func (p *Pool) checkNewRBD(name, pool, image string) (RBDCluster, error) {
	c, err := p.cluster()
	if err != nil {
		return nil, err
	}
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	err = p.nameTakenLocked(name)
	for _, v := range p.rbd {
		if v.rec.Pool == pool && v.rec.Image == image {
			err = errors.Join(err, fmt.Errorf("%w: RBD image %s/%s is already attached as volume %q", ErrExists, pool, image, v.rec.Name))
		}
	}
	return c, err
}

func (p *Pool) addRBD(name, pool, image string, size uint64) (VolumeInfo, error) {
	rec := blockmap.RBDVolumeRecord{Name: name, Pool: pool, Image: image, Created: p.opts.Now().UTC()}
	err := p.syncedUpdate(func(tx *blockmap.Txn) (err error) {
		// From the sequence of local volumes, so that every volume file
		// has its own inode number.
		if rec.ID, err = tx.NextID(); err != nil {
			return err
		}
		return tx.PutRBDVolume(rec)
	})
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("record RBD volume %q: %w", name, err)
	}
	v := &rbdVolume{rec: rec, size: size}
	p.mapMu.Lock()
	p.rbd[name] = v
	p.mapMu.Unlock()
	return p.rbdInfo(v), nil
}

// DetachVolume removes an RBD volume from rowfs and leaves its image, with
// its snapshots, in Ceph. Refused while the volume is open, unless force.
func (p *Pool) DetachVolume(name string, force bool) error {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	k, err := p.kindOf(name)
	if err != nil {
		return err
	}
	return k.detach(force)
}

func (l localVolume) detach(force bool) error {
	return fmt.Errorf("%w: volume %q is local; detach is for RBD volumes (delete removes a local volume)", ErrInvalidArgument, l.v.rec.Name)
}

func (k rbdKind) detach(force bool) error {
	p, v, name := k.p, k.v, k.v.rec.Name
	if err := p.forgetRBD(v, force); err != nil {
		return err
	}
	p.log.Info("detached RBD volume", "name", name, "image", v.spec())
	return nil
}

func (p *Pool) forgetRBD(v *rbdVolume, force bool) error {
	if n := p.waitClosedRBD(v); n > 0 && !force {
		return fmt.Errorf("%w: volume %q is open (%d handles): stop the VM using it first, or force", ErrBusy, v.rec.Name, n)
	}
	if err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.DeleteRBDVolume(v.rec.Name) }); err != nil {
		return fmt.Errorf("remove RBD volume %q: %w", v.rec.Name, err)
	}
	p.mapMu.Lock()
	delete(p.rbd, v.rec.Name)
	p.mapMu.Unlock()
	v.mu.Lock()
	v.deleted = true
	if v.img != nil {
		v.img.Close()
		v.img = nil
	}
	v.mu.Unlock()
	return nil
}

// deleteRBDVolume removes the image from Ceph, its snapshots first, then
// the volume. A snapshot with clones stops it before anything is removed.
func (p *Pool) deleteRBDVolume(v *rbdVolume, force bool) error {
	if n := p.waitClosedRBD(v); n > 0 && !force {
		return fmt.Errorf("%w: volume %q is open (%d handles): stop the VM using it first, or force", ErrBusy, v.rec.Name, n)
	}
	err := p.withImage(v, func(img RBDImage) error {
		snaps, err := img.Snapshots()
		if err != nil {
			return err
		}
		for _, s := range snaps {
			if children, err := img.Children(s.Name); err != nil {
				return err
			} else if len(children) > 0 {
				return fmt.Errorf("%w: snapshot %s@%s has clones (%s): flatten or delete them first", ErrBusy, v.rec.Name, s.Name, strings.Join(children, ", "))
			}
		}
		for _, s := range snaps {
			if err := img.RemoveSnapshot(s.Name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete volume %q: %w", v.rec.Name, err)
	}
	c, err := p.cluster()
	if err != nil {
		return err
	}
	v.mu.Lock()
	if v.img != nil {
		v.img.Close()
		v.img = nil
	}
	v.mu.Unlock()
	v.cephMu.Lock()
	err = c.RemoveImage(v.rec.Pool, v.rec.Image)
	v.cephMu.Unlock()
	if err != nil {
		return fmt.Errorf("delete volume %q: remove image %s: %w", v.rec.Name, v.spec(), err)
	}
	return p.forgetRBD(v, true)
}

func (p *Pool) waitClosedRBD(v *rbdVolume) int {
	deadline := time.Now().Add(p.opts.CloseGrace)
	for {
		v.mu.Lock()
		n := v.opens
		v.mu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// withImage runs fn on the volume's open head, or on one opened for the
// call: operations that need the head use the handle the guest writes
// through when there is one, so librbd orders them with its I/O.
func (p *Pool) withImage(v *rbdVolume, fn func(RBDImage) error) error {
	return p.useHead(v, false, fn)
}

// viewImage is withImage for calls that only read the image's state
// (sizes, snapshots, diffs): without an open head it opens one read-only.
// A read-only open reads the header afresh and, unlike a read-write one,
// neither registers a watch nor looks for stale locks: an xattr or a
// listing costs fewer round trips, and no unwatch at close (where, on a
// loaded machine, librbd's close once waited forever in the e2e tests).
func (p *Pool) viewImage(v *rbdVolume, fn func(RBDImage) error) error {
	return p.useHead(v, true, fn)
}

func (p *Pool) useHead(v *rbdVolume, readOnly bool, fn func(RBDImage) error) error {
	v.mu.Lock()
	img := v.img
	if img != nil {
		v.pins++ // a handle closing meanwhile must not close it under fn
	}
	v.mu.Unlock()
	if img != nil {
		defer func() {
			v.mu.Lock()
			v.pins--
			v.closeHeadIfUnused(p.log)
			v.mu.Unlock()
		}()
		return fn(img)
	}
	c, err := p.cluster()
	if err != nil {
		return err
	}
	v.cephMu.Lock()
	defer v.cephMu.Unlock()
	v.mu.Lock()
	deleted := v.deleted
	v.mu.Unlock()
	if deleted {
		return fmt.Errorf("%w: volume %q", ErrNotFound, v.rec.Name)
	}
	if readOnly {
		img, err = c.OpenSnapshot(v.rec.Pool, v.rec.Image, "")
	} else {
		img, err = c.OpenImage(v.rec.Pool, v.rec.Image)
	}
	if err != nil {
		return fmt.Errorf("open RBD image %s: %w", v.spec(), err)
	}
	defer img.Close()
	return fn(img)
}

func (p *Pool) rbdInfo(v *rbdVolume) VolumeInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	return VolumeInfo{Name: v.rec.Name, ID: v.rec.ID, Size: v.size, BlockSize: v.objSize, Backend: BackendRBD, Created: v.rec.Created,
		MaxSnapshots: p.rbdMaxSnapshots(v), OpenHandles: v.opens, Writers: v.writers,
		RBDPool: v.rec.Pool, RBDImage: v.rec.Image}
}

// rbdVolumeInfo adds what only Ceph knows: snapshot count, clone parent and
// capacity. Ceph being down is an error here, never for a listing.
func (p *Pool) rbdVolumeInfo(v *rbdVolume) (VolumeInfo, error) {
	info := p.rbdInfo(v)
	err := p.viewImage(v, func(img RBDImage) error {
		size, err := v.learnGeometry(img)
		if err != nil {
			return err
		}
		info.Size = size
		info.BlockSize = v.objSize
		snaps, err := img.Snapshots()
		if err != nil {
			return err
		}
		info.Snapshots, info.ChainLength = len(snaps), len(snaps)
		if info.Parent, err = img.Parent(); err != nil {
			return err
		}
		own, head, err := p.rbdOwnBytes(v, img, snaps)
		if err != nil {
			return err
		}
		info.UsedBytes = head
		for _, n := range own {
			info.SnapshotBytes += n
		}
		info.TotalBytes = info.SnapshotBytes + info.UsedBytes
		return nil
	})
	if err != nil {
		return info, fmt.Errorf("volume %q: %w", v.rec.Name, err)
	}
	return info, nil
}

// learnGeometry reads the image's size and object size into v, for
// listings that must not wait on Ceph.
func (v *rbdVolume) learnGeometry(img RBDImage) (size uint64, err error) {
	if size, err = img.Size(); err != nil {
		return 0, err
	}
	objSize, err := img.ObjectSize()
	if err != nil {
		return 0, err
	}
	v.mu.Lock()
	v.size, v.objSize = size, objSize
	v.mu.Unlock()
	return size, nil
}

func (p *Pool) rbdMaxSnapshots(v *rbdVolume) int {
	if v.rec.MaxSnapshots > 0 {
		return v.rec.MaxSnapshots
	}
	return p.opts.RBDMaxSnapshots
}

func (p *Pool) resizeRBD(v *rbdVolume, size uint64, allowShrink bool) (VolumeInfo, error) {
	err := p.withImage(v, func(img RBDImage) error {
		old, err := img.Size()
		if err != nil {
			return err
		}
		if size < old && !allowShrink {
			return fmt.Errorf("%w: shrinking %q from %d to %d bytes discards its tail; allow it with --shrink",
				ErrInvalidArgument, v.rec.Name, old, size)
		}
		return img.Resize(size)
	})
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("resize volume %q: %w", v.rec.Name, err)
	}
	p.log.Info("resized RBD volume", "name", v.rec.Name, "to", size)
	return p.rbdVolumeInfo(v)
}

func (p *Pool) setRBDMaxSnapshots(v *rbdVolume, limit int) (VolumeInfo, error) {
	err := p.viewImage(v, func(img RBDImage) error {
		snaps, err := img.Snapshots()
		if err != nil {
			return err
		}
		return checkLimitAbove(v.rec.Name, len(snaps), cmp.Or(limit, p.opts.RBDMaxSnapshots))
	})
	if err != nil {
		return VolumeInfo{}, err
	}
	rec := v.rec
	rec.MaxSnapshots = limit
	if err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutRBDVolume(rec) }); err != nil {
		return VolumeInfo{}, fmt.Errorf("set max-snapshots of %q: %w", v.rec.Name, err)
	}
	v.rec = rec
	return p.rbdInfo(v), nil
}

// learnRBDSizes fills in the sizes of RBD volumes after Open, in the
// background, so their files show the right size before first use without
// Open waiting on Ceph.
func (p *Pool) learnRBDSizes() {
	defer p.stopped.Done()
	p.mapMu.RLock()
	vols := slices.Collect(maps.Values(p.rbd))
	p.mapMu.RUnlock()
	for _, v := range vols {
		if p.ctx.Err() != nil {
			return
		}
		err := p.viewImage(v, func(img RBDImage) error {
			_, err := v.learnGeometry(img)
			return err
		})
		if err != nil {
			p.log.Warn("RBD volume not reachable; its file shows size 0 until it is", "volume", v.rec.Name, "image", v.spec(), "err", err)
		}
	}
}

// loadRBD reads the RBD volume records. Ceph is not contacted: a cluster
// that is down must not keep local volumes from being served.
func (p *Pool) loadRBD() error {
	recs, err := p.store.RBDVolumes()
	if err != nil {
		return err
	}
	for _, rec := range recs {
		p.rbd[rec.Name] = &rbdVolume{rec: rec}
	}
	return nil
}
