package rowengine

import (
	"fmt"
	"slices"
)

// groupKind is what one kind of snapshot group does: a group of local
// volumes (localGroup: one cut over their heads in the pool), of RBD
// volumes of one Ceph pool (rbdGroup: an RBD group, whose group snapshots
// Ceph makes consistent), or of both (mixedGroup: one of each, cut while
// the group's freeze hook holds the guest still; without a hook such a
// group is refused).
type groupKind interface {
	snapshot(name string, opts SnapshotOptions) ([]SnapshotInfo, error)
	points() ([]GroupPoint, error)
	rollback(pt GroupPoint, force bool) ([]RollbackResult, error)
	deleteSnapshot(pt GroupPoint) ([]DeleteResult, error)
	// members makes the backing store's membership old → new (nothing
	// for local groups); remove deletes it.
	members(old, new []string) error
	remove() error
}

type localGroup struct {
	p *Pool
	g Group
}

type rbdGroup struct {
	p *Pool
	g Group
}

var (
	_ groupKind = localGroup{}
	_ groupKind = rbdGroup{}
	_ groupKind = mixedGroup{}
)

func (p *Pool) groupKindOf(g Group) groupKind {
	if g.RBDPool == "" {
		return localGroup{p: p, g: g}
	}
	local, rbd := p.splitByKind(g.Volumes)
	if len(local) == 0 {
		return rbdGroup{p: p, g: g}
	}
	lg, rg := g, g
	lg.Volumes, lg.RBDPool, rg.Volumes = local, "", rbd
	return mixedGroup{local: localGroup{p: p, g: lg}, rbd: rbdGroup{p: p, g: rg}}
}

func (localGroup) members(old, new []string) error { return nil }
func (localGroup) remove() error                   { return nil }

// cephGroup is the RBD group behind a rowfs group: named so that it is
// plainly rowfs's own.
func (rg rbdGroup) cephGroup() string { return "rowfs-" + rg.g.Name }

func (rg rbdGroup) cluster() (RBDCluster, error) { return rg.p.cluster() }

// image is the RBD image of member volume.
func (rg rbdGroup) image(volume string) (*rbdVolume, error) {
	k, err := rg.p.kindOf(volume)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(rbdKind)
	if !ok {
		return nil, fmt.Errorf("%w: volume %q is not an RBD volume", ErrInvalidArgument, volume)
	}
	return rk.v, nil
}

func (rg rbdGroup) members(old, new []string) error {
	c, err := rg.cluster()
	if err != nil {
		return err
	}
	if old == nil {
		if err := c.CreateGroup(rg.g.RBDPool, rg.cephGroup()); err != nil {
			return err
		}
	}
	for _, v := range new {
		if slices.Contains(old, v) {
			continue
		}
		img, err := rg.image(v)
		if err != nil {
			return err
		}
		if err := c.GroupAddImage(rg.g.RBDPool, rg.cephGroup(), img.rec.Image); err != nil {
			return err
		}
	}
	for _, v := range old {
		if slices.Contains(new, v) {
			continue
		}
		img, err := rg.image(v)
		if err != nil {
			return err
		}
		if err := c.GroupRemoveImage(rg.g.RBDPool, rg.cephGroup(), img.rec.Image); err != nil {
			return err
		}
	}
	return nil
}

func (rg rbdGroup) remove() error {
	c, err := rg.cluster()
	if err != nil {
		return err
	}
	return c.RemoveGroup(rg.g.RBDPool, rg.cephGroup())
}

func (rg rbdGroup) snapshot(name string, opts SnapshotOptions) ([]SnapshotInfo, error) {
	c, err := rg.cluster()
	if err != nil {
		return nil, err
	}
	existing, err := c.GroupSnapshots(rg.g.RBDPool, rg.cephGroup())
	if err != nil {
		return nil, err
	}
	if name == "" && opts.Auto {
		name = autoSnapshotName("", "", rg.p.opts.Now(), func(n string) bool { return slices.Contains(existing, n) })
	}
	if err := ValidateSnapshotName(name, opts.Auto); err != nil {
		return nil, err
	}
	if slices.Contains(existing, name) {
		return nil, fmt.Errorf("%w: group snapshot %s@%s", ErrExists, rg.g.Name, name)
	}
	if err := c.GroupSnapshot(rg.g.RBDPool, rg.cephGroup(), name); err != nil {
		return nil, fmt.Errorf("group snapshot %s@%s: %w", rg.g.Name, name, err)
	}
	now := rg.p.opts.Now().UTC()
	var out []SnapshotInfo
	for _, v := range rg.g.Volumes {
		out = append(out, SnapshotInfo{Name: name, Volume: v, Created: now, Kind: KindManual, Group: rg.g.Name, Consistency: opts.Consistency})
	}
	rg.p.log.Info("created RBD group snapshot", "group", rg.g.Name, "snapshot", name, "ceph_group", rg.g.RBDPool+"/"+rg.cephGroup())
	return out, nil
}

// points are the RBD group's snapshots. RBD keeps which images each holds
// and refuses a rollback after the membership changed; this Ceph release
// does not say which images a group snapshot holds (GroupSnapGetInfo is
// ENOSYS on pacific), so a point lists the current members.
func (rg rbdGroup) points() ([]GroupPoint, error) {
	c, err := rg.cluster()
	if err != nil {
		return nil, err
	}
	names, err := c.GroupSnapshots(rg.g.RBDPool, rg.cephGroup())
	if err != nil {
		return nil, err
	}
	var out []GroupPoint
	for _, n := range names {
		out = append(out, GroupPoint{Name: n, Members: rg.g.Volumes, Consistency: "crash", Valid: true})
	}
	return out, nil
}

func (rg rbdGroup) rollback(pt GroupPoint, force bool) ([]RollbackResult, error) {
	var vols []*rbdVolume
	for _, v := range rg.g.Volumes {
		img, err := rg.image(v)
		if err != nil {
			return nil, err
		}
		// RBD rolls back images no client has open: closed here, always.
		if err := (rbdKind{rg.p, img}).openForRollback(); err != nil {
			return nil, fmt.Errorf("group rollback %s@%s: %w", rg.g.Name, pt.Name, err)
		}
		vols = append(vols, img)
	}
	c, err := rg.cluster()
	if err != nil {
		return nil, err
	}
	if err := c.GroupRollback(rg.g.RBDPool, rg.cephGroup(), pt.Name); err != nil {
		return nil, fmt.Errorf("group rollback %s@%s: %w", rg.g.Name, pt.Name, err)
	}
	var out []RollbackResult
	for _, v := range vols {
		info, err := rg.p.rbdVolumeInfo(v)
		if err != nil {
			return out, err
		}
		out = append(out, RollbackResult{Volume: info})
	}
	rg.p.log.Info("rolled back RBD group", "group", rg.g.Name, "snapshot", pt.Name)
	return out, nil
}

func (rg rbdGroup) deleteSnapshot(pt GroupPoint) ([]DeleteResult, error) {
	c, err := rg.cluster()
	if err != nil {
		return nil, err
	}
	if err := c.GroupRemoveSnapshot(rg.g.RBDPool, rg.cephGroup(), pt.Name); err != nil {
		return nil, fmt.Errorf("delete group snapshot %s@%s: %w", rg.g.Name, pt.Name, err)
	}
	return []DeleteResult{{Plan: DeletePlan{Deleted: []string{pt.Name}}}}, nil
}
