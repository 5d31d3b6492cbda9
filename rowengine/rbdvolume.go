package rowengine

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
}

func (v *rbdVolume) spec() string { return v.rec.Pool + "/" + v.rec.Image }

func rbdDescriptionKey(snap string) string { return "rowfs.description." + snap }

// cluster returns the Ceph connection, or why there is none.
func (p *Pool) cluster() (RBDCluster, error) {
	if p.opts.RBD == nil {
		return nil, fmt.Errorf("%w: this rowfsd has no RBD backend (build it with make, which needs librbd-dev)", ErrUnavailable)
	}
	return p.opts.RBD, nil
}

func (p *Pool) lookupRBD(name string) *rbdVolume {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	return p.rbd[name]
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
	c, err := p.newRBDLocked(name, pool, image)
	if err != nil {
		return VolumeInfo{}, err
	}
	if err := c.CreateImage(pool, image, size); err != nil {
		return VolumeInfo{}, fmt.Errorf("create RBD image %s/%s: %w", pool, image, err)
	}
	info, err := p.addRBDLocked(name, pool, image, size)
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
	c, err := p.newRBDLocked(name, pool, image)
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
	info, err := p.addRBDLocked(name, pool, image, size)
	if err != nil {
		return VolumeInfo{}, err
	}
	p.log.Info("attached RBD volume", "name", name, "image", pool+"/"+image, "size", size)
	return info, nil
}

// newRBDLocked checks that a new RBD volume may take name and image, and
// returns the cluster to make it with. Caller holds adminMu.
func (p *Pool) newRBDLocked(name, pool, image string) (RBDCluster, error) {
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

func (p *Pool) addRBDLocked(name, pool, image string, size uint64) (VolumeInfo, error) {
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
	v := p.lookupRBD(name)
	if v == nil {
		if _, err := p.lookup(name); err == nil {
			return fmt.Errorf("%w: volume %q is local; detach is for RBD volumes (delete removes a local volume)", ErrInvalidArgument, name)
		}
		return fmt.Errorf("%w: volume %q", ErrNotFound, name)
	}
	if err := p.forgetRBDLocked(v, force); err != nil {
		return err
	}
	p.log.Info("detached RBD volume", "name", name, "image", v.spec())
	return nil
}

func (p *Pool) forgetRBDLocked(v *rbdVolume, force bool) error {
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
	return p.forgetRBDLocked(v, true)
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
			v.closeHeadIfUnusedLocked(p.log)
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
	img, err = c.OpenImage(v.rec.Pool, v.rec.Image)
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
	err := p.withImage(v, func(img RBDImage) error {
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

func diffBytes(img RBDImage, from string) (uint64, error) {
	var n uint64
	err := img.Diff(from, func(_, length uint64) error { n += length; return nil })
	return n, err
}

func (p *Pool) rbdMaxSnapshots(v *rbdVolume) int {
	if v.rec.MaxSnapshots > 0 {
		return v.rec.MaxSnapshots
	}
	return p.opts.RBDMaxSnapshots
}

// openRBD opens a handle on the head, opening the image on first use.
func (p *Pool) openRBD(v *rbdVolume, writable bool) (*Handle, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.deleted {
		return nil, fmt.Errorf("%w: volume %q", ErrNotFound, v.rec.Name)
	}
	if v.img == nil {
		c, err := p.cluster()
		if err != nil {
			return nil, err
		}
		img, err := c.OpenImage(v.rec.Pool, v.rec.Image)
		if err != nil {
			return nil, fmt.Errorf("open volume %q (RBD image %s): %w", v.rec.Name, v.spec(), err)
		}
		if v.size, err = img.Size(); err != nil {
			img.Close()
			return nil, fmt.Errorf("open volume %q (RBD image %s): %w", v.rec.Name, v.spec(), err)
		}
		v.img = img
	}
	v.opens++
	if writable {
		v.writers++
	}
	return &Handle{pool: p, rbd: v, img: v.img, writable: writable}, nil
}

func (h *Handle) closeRBD() {
	v := h.rbd
	if h.snapName != "" {
		h.img.Close()
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.opens--
	if h.writable {
		v.writers--
	}
	v.closeHeadIfUnusedLocked(h.pool.log)
}

// closeHeadIfUnusedLocked closes the shared head once no handle and no
// withImage call uses it. Closing releases the exclusive lock, so another
// host may write. REQUIRES: v.mu.
func (v *rbdVolume) closeHeadIfUnusedLocked(log *slog.Logger) {
	if v.opens == 0 && v.pins == 0 && v.img != nil {
		if err := v.img.Close(); err != nil {
			log.Warn("close RBD image", "image", v.spec(), "err", err)
		}
		v.img = nil
	}
}

func (h *Handle) sizeRBD() uint64 {
	size, err := h.img.Size()
	if err != nil {
		return 0
	}
	if h.snapName == "" {
		h.rbd.mu.Lock()
		h.rbd.size = size
		h.rbd.mu.Unlock()
	}
	return size
}

func (h *Handle) checkRBD(off int64, length uint64) error {
	if h.snapName == "" {
		h.rbd.mu.Lock()
		deleted := h.rbd.deleted
		h.rbd.mu.Unlock()
		if deleted {
			return fmt.Errorf("%w: volume %q was removed", ErrNotFound, h.rbd.rec.Name)
		}
	}
	size := h.sizeRBD()
	if off < 0 || uint64(off) > size || length > size-uint64(off) {
		return fmt.Errorf("%w: range %d+%d is outside volume %q of %d bytes", ErrInvalidArgument, off, length, h.rbd.rec.Name, size)
	}
	return nil
}

func (h *Handle) readRBD(buf []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset", ErrInvalidArgument)
	}
	size := h.sizeRBD()
	if uint64(off) >= size {
		return 0, io.EOF
	}
	n := min(uint64(len(buf)), size-uint64(off))
	got, err := h.img.ReadAt(buf[:n], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return got, fmt.Errorf("%w: read volume %q: %v", ErrIO, h.rbd.rec.Name, err)
	}
	return got, nil
}

func (h *Handle) writeRBD(data []byte, off int64) (int, error) {
	if err := h.checkRBD(off, uint64(len(data))); err != nil {
		return 0, err
	}
	n, err := h.img.WriteAt(data, off)
	if err != nil {
		return n, fmt.Errorf("%w: write volume %q: %v", ErrIO, h.rbd.rec.Name, err)
	}
	return n, nil
}

// rbdSnapshotInfo renders an RBD snapshot like a node of a local tree.
// RBD snapshots are independent: none is another's parent.
func rbdSnapshotInfo(v *rbdVolume, s RBDSnapshot, img RBDImage) SnapshotInfo {
	kind := KindManual
	if strings.HasPrefix(s.Name, AutoPrefix) {
		kind = KindAuto
	}
	desc, _ := img.Metadata(rbdDescriptionKey(s.Name))
	return SnapshotInfo{ID: s.ID, Name: s.Name, Volume: v.rec.Name, Created: s.Created, Kind: kind,
		Description: desc, Size: s.Size}
}

// rbdOwnBytes is what each snapshot holds that the one before it did not,
// and what the head holds beyond the newest snapshot: the nearest RBD has
// to a node's own bytes. A volume's snapshot and total bytes are their
// sums, so they agree with the per-snapshot figures (du --tree).
func (p *Pool) rbdOwnBytes(v *rbdVolume, img RBDImage, snaps []RBDSnapshot) (own []uint64, head uint64, err error) {
	prev := ""
	for _, s := range snaps {
		snapImg, err := p.opts.RBD.OpenSnapshot(v.rec.Pool, v.rec.Image, s.Name)
		if err != nil {
			return nil, 0, err
		}
		n, err := diffBytes(snapImg, prev)
		snapImg.Close()
		if err != nil {
			return nil, 0, err
		}
		own = append(own, n)
		prev = s.Name
	}
	head, err = diffBytes(img, prev)
	return own, head, err
}

func (p *Pool) rbdSnapshots(v *rbdVolume) ([]SnapshotInfo, error) {
	var out []SnapshotInfo
	err := p.withImage(v, func(img RBDImage) error {
		snaps, err := img.Snapshots()
		if err != nil {
			return err
		}
		own, headOwn, err := p.rbdOwnBytes(v, img, snaps)
		if err != nil {
			return err
		}
		for i, s := range snaps {
			info := rbdSnapshotInfo(v, s, img)
			info.OwnBytes = own[i]
			out = append(out, info)
		}
		size, err := img.Size()
		if err != nil {
			return err
		}
		out = append(out, SnapshotInfo{Volume: v.rec.Name, Kind: "head", Head: true, Size: size, Created: v.rec.Created, OwnBytes: headOwn})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshots of %q: %w", v.rec.Name, err)
	}
	return out, nil
}

func (p *Pool) rbdSnapshot(v *rbdVolume, name string) (SnapshotInfo, error) {
	snaps, err := p.rbdSnapshots(v)
	if err != nil {
		return SnapshotInfo{}, err
	}
	for _, s := range snaps {
		if !s.Head && s.Name == name {
			return s, nil
		}
	}
	return SnapshotInfo{}, fmt.Errorf("%w: snapshot %s@%s", ErrNotFound, v.rec.Name, name)
}

func (p *Pool) openRBDSnapshot(v *rbdVolume, name string) (*Handle, error) {
	c, err := p.cluster()
	if err != nil {
		return nil, err
	}
	img, err := c.OpenSnapshot(v.rec.Pool, v.rec.Image, name)
	if err != nil {
		return nil, fmt.Errorf("open snapshot %s@%s: %w", v.rec.Name, name, err)
	}
	return &Handle{pool: p, rbd: v, img: img, snapName: name}, nil
}

// createRBDSnapshot applies the chain limit as for local volumes: a manual
// snapshot is refused at the limit, an automatic one first removes the
// oldest automatic snapshots.
func (p *Pool) createRBDSnapshot(v *rbdVolume, name string, opts SnapshotOptions) (SnapshotInfo, error) {
	if name != "" || !opts.Auto {
		if err := ValidateSnapshotName(name, opts.Auto); err != nil {
			return SnapshotInfo{}, err
		}
	}
	if len(opts.Description) > 1024 {
		return SnapshotInfo{}, fmt.Errorf("%w: description of %d bytes; at most 1024", ErrInvalidArgument, len(opts.Description))
	}
	var info SnapshotInfo
	err := p.withImage(v, func(img RBDImage) error {
		snaps, err := img.Snapshots()
		if err != nil {
			return err
		}
		if name == "" {
			// The name is recorded before the snapshot exists, so a crash
			// in between can waste a name but never give one twice.
			name = autoSnapshotName(v.rec.LastAuto, p.opts.Now(), func(name string) bool {
				return slices.ContainsFunc(snaps, func(s RBDSnapshot) bool { return s.Name == name })
			})
			rec := v.rec
			rec.LastAuto = name
			if err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutRBDVolume(rec) }); err != nil {
				return err
			}
			v.rec = rec
		}
		if slices.ContainsFunc(snaps, func(s RBDSnapshot) bool { return s.Name == name }) {
			return fmt.Errorf("%w: snapshot %s@%s", ErrExists, v.rec.Name, name)
		}
		limit := p.rbdMaxSnapshots(v)
		for len(snaps) >= limit {
			if !opts.Auto {
				return fmt.Errorf("%w: volume %q has %d snapshots, its limit: delete one or raise it with rowctl volume set %s max-snapshots=N",
					ErrChainLimit, v.rec.Name, len(snaps), v.rec.Name)
			}
			i := slices.IndexFunc(snaps, func(s RBDSnapshot) bool { return strings.HasPrefix(s.Name, AutoPrefix) })
			if i < 0 {
				return fmt.Errorf("%w: volume %q has %d manual snapshots, its limit, and no automatic one to rotate out",
					ErrChainLimit, v.rec.Name, len(snaps))
			}
			if err := img.RemoveSnapshot(snaps[i].Name); err != nil {
				return fmt.Errorf("rotate out %s@%s: %w", v.rec.Name, snaps[i].Name, err)
			}
			_ = img.RemoveMetadata(rbdDescriptionKey(snaps[i].Name))
			p.log.Info("rotated out automatic snapshot", "volume", v.rec.Name, "snapshot", snaps[i].Name)
			snaps = slices.Delete(snaps, i, i+1)
		}
		if opts.Description != "" {
			if err := img.SetMetadata(rbdDescriptionKey(name), opts.Description); err != nil {
				return err
			}
		}
		if err := img.CreateSnapshot(name); err != nil {
			return err
		}
		after, err := img.Snapshots()
		if err != nil {
			return err
		}
		for _, s := range after {
			if s.Name == name {
				info = rbdSnapshotInfo(v, s, img)
			}
		}
		return nil
	})
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("create snapshot %s@%s: %w", v.rec.Name, name, err)
	}
	p.log.Info("created RBD snapshot", "volume", v.rec.Name, "snapshot", name, "image", v.spec())
	return info, nil
}

func (p *Pool) deleteRBDSnapshot(v *rbdVolume, name string, opts DeleteOptions) (DeleteResult, error) {
	res := DeleteResult{Plan: DeletePlan{Deleted: []string{name}}}
	err := p.withImage(v, func(img RBDImage) error {
		snaps, err := img.Snapshots()
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(snaps, func(s RBDSnapshot) bool { return s.Name == name }) {
			return fmt.Errorf("%w: snapshot %s@%s", ErrNotFound, v.rec.Name, name)
		}
		children, err := img.Children(name)
		if err != nil {
			return err
		}
		if len(children) > 0 {
			return fmt.Errorf("%w: snapshot %s@%s has clones (%s): flatten them first", ErrBusy, v.rec.Name, name, strings.Join(children, ", "))
		}
		if opts.DryRun {
			return nil
		}
		if err := img.RemoveSnapshot(name); err != nil {
			return err
		}
		_ = img.RemoveMetadata(rbdDescriptionKey(name))
		return nil
	})
	if err != nil {
		return DeleteResult{}, fmt.Errorf("delete snapshot %s@%s: %w", v.rec.Name, name, err)
	}
	if !opts.DryRun {
		p.log.Info("deleted RBD snapshot", "volume", v.rec.Name, "snapshot", name)
	}
	return res, nil
}

// rollbackRBD refuses while the volume file is open here (force overrides
// that, rolling back through the open image) and while another client
// holds the image's exclusive lock, which nothing here overrides.
func (p *Pool) rollbackRBD(v *rbdVolume, name string, force bool) (RollbackResult, error) {
	if n := p.waitClosedRBD(v); n > 0 && !force {
		return RollbackResult{}, fmt.Errorf("%w: volume %q is open (%d handles): stop the VM first (or force the rollback)", ErrBusy, v.rec.Name, n)
	}
	err := p.withImage(v, func(img RBDImage) error {
		v.mu.Lock()
		ours := v.img == img
		v.mu.Unlock()
		if !ours {
			owners, err := img.LockOwners()
			if err != nil {
				return err
			}
			if len(owners) > 0 {
				return fmt.Errorf("%w: RBD image %s is locked by %s: another host or process has it open for writing",
					ErrBusy, v.spec(), strings.Join(owners, ", "))
			}
		}
		snaps, err := img.Snapshots()
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(snaps, func(s RBDSnapshot) bool { return s.Name == name }) {
			return fmt.Errorf("%w: snapshot %s@%s", ErrNotFound, v.rec.Name, name)
		}
		return img.RollbackSnapshot(name)
	})
	if err != nil {
		return RollbackResult{}, fmt.Errorf("roll back %s to %s: %w", v.rec.Name, name, err)
	}
	info, err := p.rbdVolumeInfo(v)
	if err != nil {
		return RollbackResult{}, err
	}
	p.log.Info("rolled back RBD volume", "volume", v.rec.Name, "snapshot", name)
	return RollbackResult{Volume: info}, nil
}

// cloneRBD clones a snapshot into a new image of the same Ceph pool, named
// after the new volume, and exposes it.
func (p *Pool) cloneRBD(src *rbdVolume, snap, name string) (VolumeInfo, error) {
	if _, err := p.newRBDLocked(name, src.rec.Pool, name); err != nil {
		return VolumeInfo{}, err
	}
	var size uint64
	err := p.withImage(src, func(img RBDImage) error {
		snaps, err := img.Snapshots()
		if err != nil {
			return err
		}
		i := slices.IndexFunc(snaps, func(s RBDSnapshot) bool { return s.Name == snap })
		if i < 0 {
			return fmt.Errorf("%w: snapshot %s@%s", ErrNotFound, src.rec.Name, snap)
		}
		size = snaps[i].Size
		return img.CloneSnapshot(snap, name)
	})
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("clone %s@%s to %q: %w", src.rec.Name, snap, name, err)
	}
	info, err := p.addRBDLocked(name, src.rec.Pool, name, size)
	if err != nil {
		return VolumeInfo{}, err
	}
	p.log.Info("cloned RBD volume", "from", src.rec.Name+"@"+snap, "to", name)
	return info, nil
}

// flattenRBD runs librbd's flatten as a job; it resumes after a restart.
func (p *Pool) flattenRBD(v *rbdVolume) (JobInfo, error) {
	err := p.withImage(v, func(img RBDImage) error {
		parent, err := img.Parent()
		if err == nil && parent == "" {
			err = fmt.Errorf("%w: volume %q is not a clone", ErrInvalidArgument, v.rec.Name)
		}
		return err
	})
	if err != nil {
		return JobInfo{}, fmt.Errorf("flatten %q: %w", v.rec.Name, err)
	}
	var rec blockmap.JobRecord
	err = p.syncedUpdate(func(tx *blockmap.Txn) (err error) {
		rec, err = p.newJobTx(tx, JobRBDFlatten, v.rec.Name)
		return err
	})
	if err != nil {
		return JobInfo{}, fmt.Errorf("flatten %q: %w", v.rec.Name, err)
	}
	return p.launch(rec, v.size, func(j *job) error { return p.runRBDFlatten(j, v.rec.Name) }), nil
}

func (p *Pool) runRBDFlatten(j *job, name string) error {
	v := p.lookupRBD(name)
	if v == nil {
		return fmt.Errorf("%w: volume %q", ErrNotFound, name)
	}
	return p.withImage(v, func(img RBDImage) error {
		if parent, err := img.Parent(); err != nil || parent == "" {
			return err
		}
		return img.Flatten(func(done, total uint64) {
			j.total.Store(total)
			j.done.Store(done)
		})
	})
}

func (p *Pool) diffRBD(v *rbdVolume, from, to string) ([]Extent, error) {
	var out []Extent
	collect := func(img RBDImage) error {
		return img.Diff(from, func(off, length uint64) error {
			if k := len(out) - 1; k >= 0 && out[k].Offset+out[k].Length == off {
				out[k].Length += length
			} else {
				out = append(out, Extent{Offset: off, Length: length})
			}
			return nil
		})
	}
	var err error
	if to == "" {
		err = p.withImage(v, collect)
	} else {
		var img RBDImage
		if img, err = p.opts.RBD.OpenSnapshot(v.rec.Pool, v.rec.Image, to); err == nil {
			err = collect(img)
			img.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("diff %s from %q to %q: %w", v.rec.Name, from, cmp.Or(to, "head"), err)
	}
	return out, nil
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
	err := p.withImage(v, func(img RBDImage) error {
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
		err := p.withImage(v, func(img RBDImage) error {
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

// flushRBDHeads flushes every open RBD head image: a barrier without a
// handle (Pool.Sync, a handle-less fsync) must cover RBD volumes as well
// as the pool's own data.
func (p *Pool) flushRBDHeads() error {
	p.mapMu.RLock()
	vols := slices.Collect(maps.Values(p.rbd))
	p.mapMu.RUnlock()
	var errs []error
	for _, v := range vols {
		v.mu.Lock()
		if v.img != nil {
			if err := v.img.Flush(); err != nil {
				errs = append(errs, fmt.Errorf("%w: flush volume %q: %v", ErrIO, v.rec.Name, err))
			}
		}
		v.mu.Unlock()
	}
	return errors.Join(errs...)
}
