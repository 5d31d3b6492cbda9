package rowengine

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/rowfs/rowfs/blockmap"
)

func diffBytes(img RBDImage, from string) (uint64, error) {
	var n uint64
	err := img.Diff(from, func(_, length uint64) error { n += length; return nil })
	return n, err
}

// rbdSnapshotInfo renders an RBD snapshot like a node of a local tree.
// RBD snapshots are independent: none is another's parent.
func rbdSnapshotInfo(v *rbdVolume, s RBDSnapshot, img RBDImage) SnapshotInfo {
	kind := KindManual
	if strings.HasPrefix(s.Name, AutoPrefix) {
		kind = KindAuto
	}
	desc, _ := img.Metadata(rbdDescriptionKey(s.Name))
	policy, _ := img.Metadata(rbdPolicyKey(s.Name))
	return SnapshotInfo{ID: s.ID, Name: s.Name, Volume: v.rec.Name, Created: s.Created, Kind: kind,
		Description: desc, Size: s.Size, Policy: policy}
}

// rbdOwnBytes is what each snapshot holds that the one before it did not,
// and what the head holds beyond the newest snapshot: the nearest RBD has
// to a node's own bytes. A volume's snapshot and total bytes are their
// sums, so they agree with the per-snapshot figures (du --tree). A
// snapshot's figure is computed once (v.ownBytes): only the head's is
// asked of Ceph every time.
func (p *Pool) rbdOwnBytes(v *rbdVolume, img RBDImage, snaps []RBDSnapshot) (own []uint64, head uint64, err error) {
	v.mu.Lock()
	cached := v.ownBytes
	v.mu.Unlock()
	known := make(map[rbdOwnKey]uint64, len(snaps))
	prev := RBDSnapshot{}
	for _, s := range snaps {
		key := rbdOwnKey{snap: s.ID, prev: prev.ID}
		n, ok := cached[key]
		if !ok {
			snapImg, err := p.opts.RBD.OpenSnapshot(v.rec.Pool, v.rec.Image, s.Name)
			if err != nil {
				return nil, 0, err
			}
			n, err = diffBytes(snapImg, prev.Name)
			snapImg.Close()
			if err != nil {
				return nil, 0, err
			}
		}
		known[key] = n
		own = append(own, n)
		prev = s
	}
	v.mu.Lock()
	v.ownBytes = known // pairs of snapshots gone since drop out
	v.mu.Unlock()
	head, err = diffBytes(img, prev.Name)
	return own, head, err
}

func (p *Pool) rbdSnapshots(v *rbdVolume) ([]SnapshotInfo, error) {
	var out []SnapshotInfo
	err := p.viewImage(v, func(img RBDImage) error {
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
			name = autoSnapshotName(opts.AutoKind, v.rec.LastAuto[opts.AutoKind], p.opts.Now(), func(name string) bool {
				return slices.ContainsFunc(snaps, func(s RBDSnapshot) bool { return s.Name == name })
			})
			rec := v.rec
			rec.LastAuto = maps.Clone(rec.LastAuto)
			if rec.LastAuto == nil {
				rec.LastAuto = map[string]string{}
			}
			rec.LastAuto[opts.AutoKind] = name
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
			_ = img.RemoveMetadata(rbdPolicyKey(snaps[i].Name))
			p.log.Info("rotated out automatic snapshot", "volume", v.rec.Name, "snapshot", snaps[i].Name)
			snaps = slices.Delete(snaps, i, i+1)
		}
		if opts.Description != "" {
			if err := img.SetMetadata(rbdDescriptionKey(name), opts.Description); err != nil {
				return err
			}
		}
		if opts.Policy != "" {
			if err := img.SetMetadata(rbdPolicyKey(name), opts.Policy); err != nil {
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
		_ = img.RemoveMetadata(rbdPolicyKey(name))
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
func (k rbdKind) openForRollback() error {
	if n := k.p.waitClosedRBD(k.v); n > 0 {
		return fmt.Errorf("%w: volume %q is open (%d handles): stop the VM first (or force the rollback)", ErrBusy, k.v.rec.Name, n)
	}
	return nil
}

func (p *Pool) rollbackRBD(v *rbdVolume, name string, force bool) (RollbackResult, error) {
	if !force {
		if err := (rbdKind{p, v}).openForRollback(); err != nil {
			return RollbackResult{}, err
		}
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
	if _, err := p.checkNewRBD(name, src.rec.Pool, name); err != nil {
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
	info, err := p.addRBD(name, src.rec.Pool, name, size)
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
	k, err := p.kindOf(name)
	if err != nil {
		return err
	}
	rk, ok := k.(rbdKind)
	if !ok {
		return fmt.Errorf("%w: volume %q is no longer an RBD volume", ErrNotFound, name)
	}
	v := rk.v
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
		err = p.viewImage(v, collect)
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
