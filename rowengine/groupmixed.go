package rowengine

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// mixedGroup is a group of local and RBD volumes: its local members are a
// localGroup (one cut in the pool) and its RBD members an rbdGroup (one
// RBD group snapshot in Ceph). No single cut covers both, so a group
// point is two cuts taken one after the other under the group's freeze
// hook, which the daemon holds around GroupSnapshot: such a group cannot
// be made, or lose its hook, without one. A point is valid only if both
// halves are.
type mixedGroup struct {
	local localGroup
	rbd   rbdGroup
}

func (mg mixedGroup) members(old, new []string) error { return nil } // syncRBDGroup keeps the RBD half
func (mg mixedGroup) remove() error                   { return mg.rbd.remove() }

// snapshot cuts the local half, then the RBD half under the same name; if
// the RBD half fails, the local member snapshots are deleted again, so a
// point is on every member or on none.
func (mg mixedGroup) snapshot(name string, opts SnapshotOptions) ([]SnapshotInfo, error) {
	c, err := mg.rbd.cluster()
	if err != nil {
		return nil, err
	}
	existing, err := c.GroupSnapshots(mg.rbd.g.RBDPool, mg.rbd.cephGroup())
	if err != nil {
		return nil, err
	}
	if name != "" && slices.Contains(existing, name) {
		return nil, fmt.Errorf("%w: group snapshot %s@%s", ErrExists, mg.local.g.Name, name)
	}
	local, err := mg.local.snapshotAvoiding(name, opts, func(n string) bool { return slices.Contains(existing, n) })
	if err != nil {
		return nil, err
	}
	name = local[0].Name
	remote, err := mg.rbd.snapshot(name, opts)
	if err != nil {
		pt := GroupPoint{Name: name, Members: mg.local.g.Volumes}
		if _, undoErr := mg.local.deleteSnapshot(pt); undoErr != nil {
			err = errors.Join(err, fmt.Errorf("and the local member snapshots stay: %w", undoErr))
		}
		return nil, err
	}
	return append(local, remote...), nil
}

// points joins the halves' points by name.
func (mg mixedGroup) points() ([]GroupPoint, error) {
	local, err := mg.local.points()
	if err != nil {
		return nil, err
	}
	remote, err := mg.rbd.points()
	if err != nil {
		return nil, err
	}
	rbdByName := map[string]GroupPoint{}
	for _, pt := range remote {
		rbdByName[pt.Name] = pt
	}
	var out []GroupPoint
	for _, pt := range local {
		r, ok := rbdByName[pt.Name]
		delete(rbdByName, pt.Name)
		if ok {
			pt.Members = slices.Sorted(slices.Values(slices.Concat(pt.Members, r.Members)))
		} else {
			pt.Valid = false
			pt.Why = strings.TrimPrefix(pt.Why+"; the RBD members ("+strings.Join(mg.rbd.g.Volumes, ", ")+") have no group snapshot "+pt.Name, "; ")
		}
		out = append(out, pt)
	}
	for _, r := range remote {
		if _, left := rbdByName[r.Name]; left {
			r.Valid, r.Why = false, "the local members ("+strings.Join(mg.local.g.Volumes, ", ")+") have no snapshot "+r.Name
			out = append([]GroupPoint{r}, out...)
		}
	}
	return out, nil
}

// rollback checks that no member of either half is open before it rolls
// either back, so a refused rollback changes nothing.
func (mg mixedGroup) rollback(pt GroupPoint, force bool) ([]RollbackResult, error) {
	p := mg.local.p
	for _, v := range mg.rbd.g.Volumes {
		img, err := mg.rbd.image(v)
		if err != nil {
			return nil, err
		}
		if err := (rbdKind{p, img}).openForRollback(); err != nil {
			return nil, fmt.Errorf("group rollback %s@%s: %w", mg.local.g.Name, pt.Name, err)
		}
	}
	localPt := pt
	localPt.Members = slices.DeleteFunc(slices.Clone(pt.Members), func(v string) bool { return slices.Contains(mg.rbd.g.Volumes, v) })
	out, err := mg.local.rollback(localPt, force)
	if err != nil {
		return out, err
	}
	remote, err := mg.rbd.rollback(pt, force)
	return append(out, remote...), err
}

func (mg mixedGroup) deleteSnapshot(pt GroupPoint) ([]DeleteResult, error) {
	localPt := pt
	localPt.Members = slices.DeleteFunc(slices.Clone(pt.Members), func(v string) bool { return slices.Contains(mg.rbd.g.Volumes, v) })
	out, err := mg.local.deleteSnapshot(localPt)
	if err != nil {
		return out, err
	}
	if !slices.ContainsFunc(pt.Members, func(v string) bool { return slices.Contains(mg.rbd.g.Volumes, v) }) {
		return out, nil // the RBD half has no such snapshot
	}
	remote, err := mg.rbd.deleteSnapshot(pt)
	return append(out, remote...), err
}
