package rowengine

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
