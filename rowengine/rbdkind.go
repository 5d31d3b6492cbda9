package rowengine

import "fmt"

// The RBD kind of volume: each operation is one of rbd*.go.

func (k rbdKind) info() VolumeInfo                           { return k.p.rbdInfo(k.v) }
func (k rbdKind) snapshots() ([]SnapshotInfo, error)         { return k.p.rbdSnapshots(k.v) }
func (k rbdKind) snapshot(name string) (SnapshotInfo, error) { return k.p.rbdSnapshot(k.v, name) }
func (k rbdKind) createSnapshot(name string, opts SnapshotOptions) (SnapshotInfo, error) {
	return k.p.createRBDSnapshot(k.v, name, opts)
}
func (k rbdKind) deleteSnapshot(name string, opts DeleteOptions) (DeleteResult, error) {
	return k.p.deleteRBDSnapshot(k.v, name, opts)
}
func (k rbdKind) rollback(name string, force bool) (RollbackResult, error) {
	return k.p.rollbackRBD(k.v, name, force)
}
func (k rbdKind) clone(snap, name string) (VolumeInfo, error) { return k.p.cloneRBD(k.v, snap, name) }
func (k rbdKind) flatten() (JobInfo, error)                   { return k.p.flattenRBD(k.v) }
func (k rbdKind) diff(from, to string) ([]Extent, error)      { return k.p.diffRBD(k.v, from, to) }
func (k rbdKind) setMaxSnapshots(limit int) (VolumeInfo, error) {
	return k.p.setRBDMaxSnapshots(k.v, limit)
}
func (k rbdKind) remove(force bool) (VolumeDeleteResult, error) {
	return VolumeDeleteResult{}, k.p.deleteRBDVolume(k.v, force)
}
func (k rbdKind) resize(size uint64, allowShrink bool) (VolumeInfo, error) {
	return k.p.resizeRBD(k.v, size, allowShrink)
}
func (k rbdKind) detail() (VolumeInfo, error) { return k.p.rbdVolumeInfo(k.v) }

// reset zeroes a plain RBD volume. An RBD clone cannot go back to its
// parent snapshot in place (RBD has no such call): refused, saying so.
func (k rbdKind) reset(force bool, before func() error) (RollbackResult, error) {
	p, v := k.p, k.v
	var parent string
	err := p.withImage(v, func(img RBDImage) (err error) {
		parent, err = img.Parent()
		return err
	})
	if err != nil {
		return RollbackResult{}, fmt.Errorf("reset %s: %w", v.rec.Name, err)
	}
	if parent != "" {
		return RollbackResult{}, fmt.Errorf("%w: volume %q is an RBD clone of %s, and RBD cannot return a clone to its parent in place: delete it and clone %s again",
			ErrInvalidArgument, v.rec.Name, parent, parent)
	}
	if err := before(); err != nil {
		return RollbackResult{}, err
	}
	err = p.withImage(v, func(img RBDImage) error {
		size, err := img.Size()
		if err != nil {
			return err
		}
		return img.WriteZeroes(0, size)
	})
	if err != nil {
		return RollbackResult{}, fmt.Errorf("reset %s: %w", v.rec.Name, err)
	}
	info, err := p.rbdVolumeInfo(v)
	p.log.Info("reset RBD volume", "volume", v.rec.Name)
	return RollbackResult{Volume: info}, err
}
