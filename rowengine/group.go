package rowengine

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rowfs/rowfs/blockmap"
)

// Group is a snapshot group as the pool keeps it: volumes (a VM's disks)
// snapshotted at one instant.
type Group = blockmap.GroupRecord

// GroupPoint is one group snapshot: the members that have it, and whether
// it can be rolled back as a group (ZStack's rule: every member snapshot
// exists and the group's members are those it was taken of).
type GroupPoint struct {
	Name        string
	Created     time.Time
	Members     []string // volumes that have the snapshot
	Consistency string   // "frozen" or "crash"
	Valid       bool
	// Why says what makes it invalid.
	Why string
}

// Groups lists the groups, ordered by name.
func (p *Pool) Groups() ([]Group, error) { return p.store.Groups() }

// Group returns one group.
func (p *Pool) Group(name string) (Group, error) {
	all, err := p.store.Groups()
	if err != nil {
		return Group{}, err
	}
	for _, g := range all {
		if g.Name == name {
			return g, nil
		}
	}
	return Group{}, fmt.Errorf("%w: group %q", ErrNotFound, name)
}

// GroupOf names the group volume belongs to, or "".
func (p *Pool) GroupOf(volume string) (string, error) {
	all, err := p.store.Groups()
	if err != nil {
		return "", err
	}
	for _, g := range all {
		if slices.Contains(g.Volumes, volume) {
			return g.Name, nil
		}
	}
	return "", nil
}

// CreateGroup makes a group of volumes, each in no other group, with its
// freeze hooks: local volumes, RBD volumes of one Ceph pool, or (with a
// hook) both.
func (p *Pool) CreateGroup(name string, volumes []string, hooks GroupHooks) (Group, error) {
	if err := ValidateVolumeName(name); err != nil {
		return Group{}, fmt.Errorf("%w: group name %q: names are %s", ErrInvalidArgument, name, NameRule)
	}
	if err := hooks.validate(); err != nil {
		return Group{}, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if _, err := p.Group(name); err == nil {
		return Group{}, fmt.Errorf("%w: group %q", ErrExists, name)
	}
	g := Group{Name: name, Created: p.opts.Now().UTC(), Volumes: []string{},
		FreezeCmd: hooks.FreezeCmd, ThawCmd: hooks.ThawCmd, QGASocket: hooks.QGASocket}
	return p.saveGroupMembers(g, volumes)
}

// saveGroupMembers sets g's members after checking them: local volumes,
// RBD volumes of one Ceph pool, or both if g has a freeze hook; each in
// no other group. The RBD members are also an RBD group in Ceph.
// REQUIRES: adminMu.
func (p *Pool) saveGroupMembers(g Group, volumes []string) (Group, error) {
	volumes = slices.Compact(slices.Sorted(slices.Values(volumes)))
	if len(volumes) == 0 {
		return Group{}, fmt.Errorf("%w: a group needs at least one volume", ErrInvalidArgument)
	}
	rbdPool, local := "", 0
	var rbdVolumes []string
	for _, v := range volumes {
		k, err := p.kindOf(v)
		if err != nil {
			return Group{}, fmt.Errorf("group %q: %w", g.Name, err)
		}
		switch k := k.(type) {
		case localVolume:
			local++
		case rbdKind:
			if rbdPool != "" && rbdPool != k.v.rec.Pool {
				return Group{}, fmt.Errorf("%w: volumes %v are in different Ceph pools; an RBD group is in one", ErrInvalidArgument, volumes)
			}
			rbdPool = k.v.rec.Pool
			rbdVolumes = append(rbdVolumes, v)
		}
		if other, err := p.GroupOf(v); err != nil {
			return Group{}, err
		} else if other != "" && other != g.Name {
			return Group{}, fmt.Errorf("%w: volume %q is in group %q already; a volume belongs to one group at a time", ErrInvalidArgument, v, other)
		}
	}
	if local > 0 && rbdPool != "" && hooksOf(g) == (GroupHooks{}) {
		return Group{}, fmt.Errorf("%w: group %q would mix local and RBD volumes: no single cut covers both, so such a group needs a freeze hook "+
			"(--freeze-cmd and --thaw-cmd, or --qga-socket) that quiesces the guest across both snapshots; or make one group of each", ErrInvalidArgument, g.Name)
	}
	if g.RBDPool != "" && rbdPool != "" && g.RBDPool != rbdPool {
		return Group{}, fmt.Errorf("%w: group %q has RBD volumes in Ceph pool %s; an RBD group is in one pool", ErrInvalidArgument, g.Name, g.RBDPool)
	}
	_, oldRBD := p.splitByKind(g.Volumes)
	if err := p.syncRBDGroup(g, oldRBD, rbdPool, rbdVolumes); err != nil {
		return Group{}, fmt.Errorf("group %q: %w", g.Name, err)
	}
	g.RBDPool = rbdPool
	g.Volumes = volumes
	if err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutGroup(g) }); err != nil {
		return Group{}, fmt.Errorf("group %q: %w", g.Name, err)
	}
	p.log.Info("group saved", "group", g.Name, "volumes", strings.Join(volumes, ","))
	return g, nil
}

// ChangeGroup adds volumes to a group (add) or removes them.
func (p *Pool) ChangeGroup(name string, volumes []string, add bool) (Group, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	g, err := p.Group(name)
	if err != nil {
		return Group{}, err
	}
	members := slices.Clone(g.Volumes)
	for _, v := range volumes {
		switch {
		case add:
			members = append(members, v)
		case !slices.Contains(members, v):
			return Group{}, fmt.Errorf("%w: volume %q is not in group %q", ErrNotFound, v, name)
		default:
			members = slices.DeleteFunc(members, func(m string) bool { return m == v })
		}
	}
	return p.saveGroupMembers(g, members)
}

// forgetGroupVolume drops a deleted volume from its group (a group left
// empty is deleted). REQUIRES: adminMu.
func (p *Pool) forgetGroupVolume(volume string) {
	all, err := p.store.Groups()
	if err != nil {
		return
	}
	for _, g := range all {
		if !slices.Contains(g.Volumes, volume) {
			continue
		}
		g.Volumes = slices.DeleteFunc(g.Volumes, func(v string) bool { return v == volume })
		err := p.syncedUpdate(func(tx *blockmap.Txn) error {
			if len(g.Volumes) == 0 {
				return tx.DeleteGroup(g.Name)
			}
			return tx.PutGroup(g)
		})
		if err != nil {
			p.log.Warn("drop a deleted volume from its group", "group", g.Name, "volume", volume, "err", err)
		}
	}
}

// GroupHooks make a group's snapshots application-consistent: commands
// run before and after the cut, and a qemu guest agent asked to freeze
// the guest's filesystems. Either, both or neither.
type GroupHooks struct {
	FreezeCmd, ThawCmd string
	QGASocket          string
}

// hooksOf are the group's freeze hooks.
func hooksOf(g Group) GroupHooks {
	return GroupHooks{FreezeCmd: g.FreezeCmd, ThawCmd: g.ThawCmd, QGASocket: g.QGASocket}
}

func (h GroupHooks) validate() error {
	if (h.FreezeCmd == "") != (h.ThawCmd == "") {
		return fmt.Errorf("%w: a freeze hook needs both --freeze-cmd and --thaw-cmd", ErrInvalidArgument)
	}
	if h.QGASocket != "" && !filepath.IsAbs(h.QGASocket) {
		return fmt.Errorf("%w: --qga-socket %q: want the absolute path of the guest agent's socket", ErrInvalidArgument, h.QGASocket)
	}
	return nil
}

// SetGroupHooks sets (or, with empty strings, clears) a group's freeze and
// thaw commands; the daemon runs them around each group snapshot.
func (p *Pool) SetGroupHooks(name string, hooks GroupHooks) (Group, error) {
	if err := hooks.validate(); err != nil {
		return Group{}, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	g, err := p.Group(name)
	if err != nil {
		return Group{}, err
	}
	if hooks == (GroupHooks{}) && p.groupIsMixed(g.Volumes) {
		return Group{}, fmt.Errorf("%w: group %q mixes local and RBD volumes, whose snapshots are consistent only with a freeze hook: it cannot be cleared", ErrInvalidArgument, name)
	}
	g.FreezeCmd, g.ThawCmd, g.QGASocket = hooks.FreezeCmd, hooks.ThawCmd, hooks.QGASocket
	if err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutGroup(g) }); err != nil {
		return Group{}, err
	}
	return g, nil
}

// DeleteGroup deletes a group; its volumes and their snapshots stay.
func (p *Pool) DeleteGroup(name string) error {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	g, err := p.Group(name)
	if err != nil {
		return err
	}
	if err := p.groupKindOf(g).remove(); err != nil {
		return fmt.Errorf("delete group %q: %w", name, err)
	}
	if err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.DeleteGroup(name) }); err != nil {
		return err
	}
	all, err := p.store.Policies()
	if err != nil {
		return err
	}
	for _, rec := range all {
		if slices.Contains(rec.Groups, name) {
			rec.Groups = slices.DeleteFunc(rec.Groups, func(g string) bool { return g == name })
			if err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutPolicy(rec) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// GroupSnapshot takes one snapshot of every member at one instant
// (cutSnapshots): all named name, or, with opts.Auto and no name, an
// automatic name no member has used. Every member snapshot records the
// group. If any member refuses (a name taken, the chain limit), none is
// taken.
func (p *Pool) GroupSnapshot(group, name string, opts SnapshotOptions) ([]SnapshotInfo, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	g, err := p.Group(group)
	if err != nil {
		return nil, err
	}
	return p.groupKindOf(g).snapshot(name, opts)
}

func (lg localGroup) snapshot(name string, opts SnapshotOptions) ([]SnapshotInfo, error) {
	return lg.snapshotAvoiding(name, opts, func(string) bool { return false })
}

// snapshotAvoiding is snapshot whose automatic name is also none that
// takenElsewhere reports (a mixed group's RBD snapshots).
func (lg localGroup) snapshotAvoiding(name string, opts SnapshotOptions, takenElsewhere func(string) bool) ([]SnapshotInfo, error) {
	p, g, group := lg.p, lg.g, lg.g.Name
	var members []localVolume
	for _, v := range g.Volumes {
		k, err := p.kindOf(v)
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", group, err)
		}
		l, ok := k.(localVolume)
		if !ok {
			return nil, fmt.Errorf("%w: group %q: volume %q is not local", ErrInvalidArgument, group, v)
		}
		members = append(members, l)
	}
	auto := name == "" && opts.Auto
	if auto {
		name = p.groupAutoName(members, takenElsewhere)
	}
	opts.Group = group
	var cuts []*snapshotCut
	for _, l := range members {
		cut, err := l.prepareCut(name, opts)
		if err != nil {
			return nil, fmt.Errorf("group snapshot %s@%s: %w", group, name, err)
		}
		if auto {
			cut.vrec.LastAuto = map[string]string{}
			for k, v := range l.v.rec.LastAuto {
				cut.vrec.LastAuto[k] = v
			}
			cut.vrec.LastAuto[""] = name
		}
		cuts = append(cuts, cut)
	}
	return p.cutSnapshots(cuts)
}

// groupAutoName is an automatic name that no member has given or uses.
// REQUIRES: adminMu.
func (p *Pool) groupAutoName(members []localVolume, takenElsewhere func(string) bool) string {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	last := ""
	for _, l := range members {
		if n := l.v.rec.LastAuto[""]; n > last {
			last = n
		}
	}
	return autoSnapshotName("", last, p.opts.Now(), func(name string) bool {
		return takenElsewhere(name) || slices.ContainsFunc(members, func(l localVolume) bool { return p.nameUsedLocked(l.v, name) })
	})
}

// GroupPoints lists a group's snapshots, oldest first, with whether each
// can be rolled back as a group.
func (p *Pool) GroupPoints(group string) ([]GroupPoint, error) {
	g, err := p.Group(group)
	if err != nil {
		return nil, err
	}
	return p.groupKindOf(g).points()
}

func (lg localGroup) points() ([]GroupPoint, error) {
	p, g, group := lg.p, lg.g, lg.g.Name
	p.mapMu.RLock()
	byName := map[string]*GroupPoint{}
	for _, v := range p.volumes {
		for _, n := range v.nodes {
			if n.rec.Group != group || n.rec.Hidden || n == v.head {
				continue
			}
			pt := byName[n.rec.Name]
			if pt == nil {
				pt = &GroupPoint{Name: n.rec.Name, Created: n.rec.Created, Consistency: cmp.Or(n.rec.Consistency, "crash")}
				byName[n.rec.Name] = pt
			}
			pt.Members = append(pt.Members, v.rec.Name)
		}
	}
	p.mapMu.RUnlock()
	var out []GroupPoint
	for _, pt := range byName {
		slices.Sort(pt.Members)
		pt.Valid, pt.Why = true, ""
		var why []string
		for _, v := range g.Volumes {
			if !slices.Contains(pt.Members, v) {
				why = append(why, fmt.Sprintf("member %s has no snapshot %s (deleted, or it joined the group after)", v, pt.Name))
			}
		}
		for _, v := range pt.Members {
			if !slices.Contains(g.Volumes, v) {
				why = append(why, fmt.Sprintf("volume %s is no longer in the group", v))
			}
		}
		if len(why) > 0 {
			pt.Valid, pt.Why = false, strings.Join(why, "; ")
		}
		out = append(out, *pt)
	}
	slices.SortFunc(out, func(a, b GroupPoint) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// groupPoint finds one point of a group.
func (p *Pool) groupPoint(group, name string) (GroupPoint, error) {
	points, err := p.GroupPoints(group)
	if err != nil {
		return GroupPoint{}, err
	}
	for _, pt := range points {
		if pt.Name == name {
			return pt, nil
		}
	}
	return GroupPoint{}, fmt.Errorf("%w: group snapshot %s@%s", ErrNotFound, group, name)
}

// RollbackGroup rolls every member back to the group snapshot name: only a
// valid point, and only while no member is open for writing (unless
// force); then each member as RollbackVolume does.
func (p *Pool) RollbackGroup(group, name string, force bool) ([]RollbackResult, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	pt, err := p.groupPoint(group, name)
	if err != nil {
		return nil, err
	}
	if !pt.Valid {
		return nil, fmt.Errorf("%w: group snapshot %s@%s cannot be rolled back as a group: %s; roll members back one by one instead", ErrInvalidArgument, group, name, pt.Why)
	}
	g, err := p.Group(group)
	if err != nil {
		return nil, err
	}
	return p.groupKindOf(g).rollback(pt, force)
}

func (lg localGroup) rollback(pt GroupPoint, force bool) ([]RollbackResult, error) {
	p, group, name := lg.p, lg.g.Name, pt.Name
	var kinds []volumeKind
	for _, v := range pt.Members {
		k, err := p.kindOf(v)
		if err != nil {
			return nil, err
		}
		if !force {
			if err := k.openForRollback(); err != nil {
				return nil, fmt.Errorf("group rollback %s@%s: %w", group, name, err)
			}
		}
		kinds = append(kinds, k)
	}
	var out []RollbackResult
	for _, k := range kinds {
		if err := p.snapshotBefore(k, p.Settings().SnapshotBeforeRollback, "pre-rollback"); err != nil {
			return out, err
		}
		res, err := k.rollback(name, force)
		if err != nil {
			return out, fmt.Errorf("group rollback %s@%s: %w", group, name, err)
		}
		out = append(out, res)
	}
	p.log.Info("rolled back group", "group", group, "snapshot", name, "members", len(out))
	return out, nil
}

// DeleteGroupSnapshot deletes every member snapshot of a group point
// (merging as usual), valid or not.
func (p *Pool) DeleteGroupSnapshot(group, name string) ([]DeleteResult, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	pt, err := p.groupPoint(group, name)
	if err != nil {
		return nil, err
	}
	g, err := p.Group(group)
	if err != nil {
		return nil, err
	}
	return p.groupKindOf(g).deleteSnapshot(pt)
}

func (lg localGroup) deleteSnapshot(pt GroupPoint) ([]DeleteResult, error) {
	p, group, name := lg.p, lg.g.Name, pt.Name
	var out []DeleteResult
	for _, v := range pt.Members {
		k, err := p.kindOf(v)
		if err != nil {
			return out, err
		}
		res, err := k.deleteSnapshot(name, DeleteOptions{})
		if err != nil {
			return out, fmt.Errorf("delete group snapshot %s@%s: %w", group, name, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// splitByKind parts volumes into local and RBD ones (a volume that is
// gone counts as local: it has no RBD image to manage).
func (p *Pool) splitByKind(volumes []string) (local, rbd []string) {
	for _, v := range volumes {
		if k, err := p.kindOf(v); err == nil {
			if _, ok := k.(rbdKind); ok {
				rbd = append(rbd, v)
				continue
			}
		}
		local = append(local, v)
	}
	return local, rbd
}

// groupIsMixed reports volumes of both kinds.
func (p *Pool) groupIsMixed(volumes []string) bool {
	local, rbd := p.splitByKind(volumes)
	return len(local) > 0 && len(rbd) > 0
}

// syncRBDGroup makes g's RBD group in Ceph hold newRBD (in Ceph pool
// pool) where it held oldRBD: created with the first RBD member, removed
// with the last.
func (p *Pool) syncRBDGroup(g Group, oldRBD []string, pool string, newRBD []string) error {
	switch {
	case len(newRBD) == 0 && len(oldRBD) == 0:
		return nil
	case len(newRBD) == 0:
		return rbdGroup{p: p, g: g}.remove()
	}
	g.RBDPool = pool
	if len(oldRBD) == 0 {
		oldRBD = nil // members creates the RBD group
	}
	return rbdGroup{p: p, g: g}.members(oldRBD, newRBD)
}
