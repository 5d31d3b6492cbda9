//go:build ceph

package rbd

import (
	"errors"
	"fmt"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/rowfs/rowfs/rowengine"
)

// Image is an open RBD image, its head or one snapshot.
type Image struct {
	img   *rbd.Image
	ioctx *rados.IOContext
	spec  string // pool/image or pool/image@snap, for messages
}

func (i *Image) ReadAt(buf []byte, off int64) (int, error) {
	n, err := i.img.ReadAt(buf, off)
	return n, wrap(err, "read "+i.spec)
}

func (i *Image) WriteAt(data []byte, off int64) (int, error) {
	n, err := i.img.WriteAt(data, off)
	return n, wrap(err, "write "+i.spec)
}

func (i *Image) Flush() error { return wrap(i.img.Flush(), "flush "+i.spec) }

// zeroes is the pattern of write-same: librbd turns a write-same of zeros
// into an exact discard (rbd_discard_on_zeroed_write_same), where a plain
// discard skips partial objects and leaves their data.
var zeroes = make([]byte, 512)

func (i *Image) WriteZeroes(off, length uint64) error {
	// Unaligned edges are written; the aligned middle is a write-same.
	for length > 0 && (off%512 != 0 || length < 512) {
		n := min(length, 512-off%512)
		if _, err := i.img.WriteAt(zeroes[:n], int64(off)); err != nil {
			return wrap(err, "zero "+i.spec)
		}
		off, length = off+n, length-n
	}
	if middle := length / 512 * 512; middle > 0 {
		if _, err := i.img.WriteSame(off, middle, zeroes, 0); err != nil {
			return wrap(err, "zero "+i.spec)
		}
		off, length = off+middle, length-middle
	}
	if length > 0 {
		if _, err := i.img.WriteAt(zeroes[:length], int64(off)); err != nil {
			return wrap(err, "zero "+i.spec)
		}
	}
	return nil
}

func (i *Image) Size() (uint64, error) {
	size, err := i.img.GetSize()
	return size, wrap(err, "size of "+i.spec)
}

func (i *Image) ObjectSize() (uint64, error) {
	st, err := i.img.Stat()
	if err != nil {
		return 0, wrap(err, "stat "+i.spec)
	}
	return st.Obj_size, nil
}

func (i *Image) Resize(size uint64) error { return wrap(i.img.Resize(size), "resize "+i.spec) }

// Snapshots lists the image's own snapshots (the user namespace).
func (i *Image) Snapshots() ([]rowengine.RBDSnapshot, error) {
	snaps, err := i.img.GetSnapshotNames()
	if err != nil {
		return nil, wrap(err, "snapshots of "+i.spec)
	}
	out := make([]rowengine.RBDSnapshot, 0, len(snaps))
	for _, s := range snaps {
		// Only the user namespace: an RBD group snapshot also leaves a
		// snapshot on each image (".group.…"), which is the group's, not
		// the volume's, and cannot be opened by name.
		if ns, err := i.img.GetSnapNamespaceType(s.Id); err != nil {
			return nil, wrap(err, "snapshot "+i.spec+"@"+s.Name)
		} else if ns != rbd.SnapNamespaceTypeUser {
			continue
		}
		ts, err := i.img.GetSnapTimestamp(s.Id)
		if err != nil {
			return nil, wrap(err, "snapshot "+i.spec+"@"+s.Name)
		}
		out = append(out, rowengine.RBDSnapshot{ID: s.Id, Name: s.Name, Size: s.Size,
			Created: time.Unix(ts.Sec, ts.Nsec).UTC()})
	}
	return out, nil
}

func (i *Image) CreateSnapshot(name string) error {
	_, err := i.img.CreateSnapshot(name)
	return wrap(err, "snapshot "+i.spec+"@"+name)
}

func (i *Image) RemoveSnapshot(name string) error {
	snap := i.img.GetSnapshot(name)
	protected, err := snap.IsProtected()
	if err != nil {
		return wrap(err, "snapshot "+i.spec+"@"+name)
	}
	if protected {
		if err := snap.Unprotect(); err != nil {
			return wrap(err, "unprotect "+i.spec+"@"+name)
		}
	}
	return wrap(snap.Remove(), "remove snapshot "+i.spec+"@"+name)
}

func (i *Image) RollbackSnapshot(name string) error {
	return wrap(i.img.GetSnapshot(name).Rollback(), "roll back "+i.spec+" to "+name)
}

// CloneSnapshot protects the snapshot first: a format 1 clone, which any
// cluster accepts, needs it, and RemoveSnapshot unprotects it again.
func (i *Image) CloneSnapshot(snap, image string) error {
	s := i.img.GetSnapshot(snap)
	protected, err := s.IsProtected()
	if err != nil {
		return wrap(err, "snapshot "+i.spec+"@"+snap)
	}
	if !protected {
		if err := s.Protect(); err != nil {
			return wrap(err, "protect "+i.spec+"@"+snap)
		}
	}
	opts := rbd.NewRbdImageOptions()
	defer opts.Destroy()
	err = rbd.CloneFromImage(i.img, snap, i.ioctx, image, opts)
	return wrap(err, "clone "+i.spec+"@"+snap+" to "+image)
}

// Flatten reports no progress until it is done: librbd's progress call is
// a preview API in go-ceph v0.40.
func (i *Image) Flatten(progress func(done, total uint64)) error {
	if err := i.img.Flatten(); err != nil {
		return wrap(err, "flatten "+i.spec)
	}
	if size, err := i.img.GetSize(); err == nil {
		progress(size, size)
	}
	return nil
}

func (i *Image) Parent() (string, error) {
	p, err := i.img.GetParent()
	if errors.Is(err, rbd.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", wrap(err, "parent of "+i.spec)
	}
	return p.Image.PoolName + "/" + p.Image.ImageName + "@" + p.Snap.SnapName, nil
}

func (i *Image) Children(snap string) ([]string, error) {
	s, err := rbd.OpenImageReadOnly(i.ioctx, i.img.GetName(), snap)
	if err != nil {
		return nil, wrap(err, "snapshot "+i.spec+"@"+snap)
	}
	defer s.Close()
	pools, images, err := s.ListChildren()
	if err != nil {
		return nil, wrap(err, "clones of "+i.spec+"@"+snap)
	}
	out := make([]string, len(images))
	for k := range images {
		out[k] = pools[k] + "/" + images[k]
	}
	return out, nil
}

// Diff reports extents that hold data after from (extents RBD reports as
// discarded are left out: they read as zeros in both).
func (i *Image) Diff(from string, fn func(off, length uint64) error) error {
	size, err := i.img.GetSize()
	if err != nil || size == 0 {
		return wrap(err, "diff "+i.spec)
	}
	var cbErr error
	err = i.img.DiffIterate(rbd.DiffIterateConfig{
		SnapName: from, Offset: 0, Length: size, IncludeParent: rbd.ExcludeParent, WholeObject: rbd.DisableWholeObject,
		Callback: func(off, length uint64, exists int, _ interface{}) int {
			if exists == 0 {
				return 0
			}
			if cbErr = fn(off, length); cbErr != nil {
				return -1
			}
			return 0
		},
	})
	if cbErr != nil {
		return cbErr
	}
	if from == "" {
		from = "the start"
	}
	return wrap(err, fmt.Sprintf("diff %s since %s", i.spec, from))
}

// LockOwners names the live holders of the exclusive lock as
// "client.ID (ADDR)". A holder with no watch on the image is dead (killed,
// or its host gone): librbd breaks its lock when someone takes it, so it
// blocks nothing and is left out.
func (i *Image) LockOwners() ([]string, error) {
	owners, err := i.img.LockGetOwners()
	if errors.Is(err, rbd.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err, "lock owners of "+i.spec)
	}
	watchers, err := i.img.ListWatchers()
	if err != nil {
		return nil, wrap(err, "watchers of "+i.spec)
	}
	var out []string
	for _, o := range owners {
		for _, w := range watchers {
			if w.Addr == o.Owner {
				out = append(out, fmt.Sprintf("client.%d (%s)", w.Id, w.Addr))
				break
			}
		}
	}
	return out, nil
}

func (i *Image) SetMetadata(key, value string) error {
	return wrap(i.img.SetMetadata(key, value), "metadata of "+i.spec)
}

func (i *Image) Metadata(key string) (string, error) {
	v, err := i.img.GetMetadata(key)
	if errors.Is(err, rbd.ErrNotFound) {
		return "", nil
	}
	return v, wrap(err, "metadata of "+i.spec)
}

func (i *Image) RemoveMetadata(key string) error {
	err := i.img.RemoveMetadata(key)
	if errors.Is(err, rbd.ErrNotFound) {
		return nil
	}
	return wrap(err, "metadata of "+i.spec)
}

func (i *Image) Close() error { return wrap(i.img.Close(), "close "+i.spec) }
