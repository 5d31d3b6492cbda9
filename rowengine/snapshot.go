package rowengine

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rowfs/rowfs/blockmap"
)

// Snapshot kinds. A head has none.
const (
	KindManual = "manual"
	KindAuto   = "auto"
	// AutoPrefix starts automatic snapshots' names; manual names may not.
	AutoPrefix = "auto"
)

// SnapshotOptions qualify CreateSnapshot.
type SnapshotOptions struct {
	Description string
	// Auto makes an automatic snapshot: named auto-<UTC time> if no name is
	// given, and at the chain limit it rotates out the oldest automatic one.
	Auto bool
	// Policy names the snapshot policy taking an automatic snapshot; the
	// policy prunes only snapshots that carry its name.
	Policy string
	// Group names the snapshot group a group snapshot belongs to;
	// Consistency records "frozen" (the group's freeze hook ran) or "crash".
	Group, Consistency string
	// AutoKind says why an automatic snapshot is taken: "" (asked for, or
	// a policy), or "pre-resize", "pre-reset", "pre-rollback" (taken before
	// those operations). It names the snapshot: auto-pre-resize-<UTC time>.
	AutoKind string
}

// SnapshotInfo describes one node of a volume's tree.
type SnapshotInfo struct {
	ID     uint64
	Name   string // empty for the head
	Volume string // empty for a node of a deleted volume
	// Parent is the parent node's id (0 for a root); ParentRef names it as
	// VOL@SNAP when it belongs to another volume (a clone's origin).
	Parent      uint64
	ParentRef   string
	Created     time.Time
	Kind        string // manual, auto; "head" for the head
	Description string
	Size        uint64
	OwnBytes    uint64
	Hidden      bool
	Head        bool
	Children    int
	// Policy names the policy that took an automatic snapshot; Group the
	// group whose snapshot this is one member of, and Consistency whether
	// it was "frozen" or "crash"-consistent.
	Policy, Group, Consistency string
}

// DeleteOptions qualify DeleteSnapshot.
type DeleteOptions struct {
	Recursive bool // delete the snapshot's whole subtree
	DryRun    bool // plan only
}

// DeletePlan says what a delete does, in bytes stored on the host (a
// partly written block counts its sectors). It is exact for what the
// delete itself finishes (merges of other hidden nodes it unblocks
// included): the pool's StoredBytes drop by FreedBytes − FilledBytes.
type DeletePlan struct {
	Deleted    []string // snapshot names removed from view
	FreedBytes uint64   // space returned to the pool
	MovedBytes uint64   // space handed to a child (no data copied)
	// FilledBytes is what merges write first into children's partly
	// written blocks that read their other sectors from what is freed.
	FilledBytes uint64
	// KeptHidden lists nodes that stay, hidden, because more than one
	// child still reads them, with the reason.
	KeptHidden []string
	// Steps are what the job executes, in order (deleteplan.go).
	Steps []DeleteStep
}

// DeleteResult is a delete's plan and, unless it was a dry run or had no
// work left, the job finishing it.
type DeleteResult struct {
	Plan DeletePlan
	Job  *JobInfo
}

// nodesOfLocked returns v's nodes in id order.
func (p *Pool) nodesOfLocked(v *volume) []*node {
	out := make([]*node, 0, len(v.nodes))
	for _, n := range v.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *node) int { return cmpUint(a.rec.ID, b.rec.ID) })
	return out
}

// findSnapshotLocked resolves a visible snapshot of v by name.
func (p *Pool) findSnapshotLocked(v *volume, name string) (*node, error) {
	var hidden *node
	for _, n := range v.nodes {
		if n == v.head || n.rec.Name != name {
			continue
		}
		if !n.rec.Hidden {
			return n, nil
		}
		hidden = n
	}
	if hidden != nil {
		return nil, fmt.Errorf("%w: snapshot %s@%s was deleted; it is kept hidden only while %d children still read it",
			ErrInvalidArgument, v.rec.Name, name, len(hidden.children))
	}
	return nil, fmt.Errorf("%w: snapshot %s@%s", ErrNotFound, v.rec.Name, name)
}

func nodeRef(n *node) string {
	vol := "(deleted)"
	if n.vol != nil {
		vol = n.vol.rec.Name
	}
	name := n.rec.Name
	if name == "" {
		name = fmt.Sprintf("#%d", n.rec.ID)
	}
	return vol + "@" + name
}

func (p *Pool) snapshotInfoLocked(n *node) SnapshotInfo {
	info := SnapshotInfo{ID: n.rec.ID, Name: n.rec.Name, Parent: n.rec.Parent, Created: n.rec.Created,
		Kind: n.rec.Kind, Description: n.rec.Description, Size: n.rec.Size, OwnBytes: p.ownedBytes(n.owned, n.unwritten),
		Hidden: n.rec.Hidden, Children: len(n.children), Policy: n.rec.Policy, Group: n.rec.Group, Consistency: n.rec.Consistency}
	if n.vol != nil {
		info.Volume = n.vol.rec.Name
		if n.vol.head == n {
			info.Head, info.Kind, info.Size = true, "head", n.vol.rec.Size
		}
	}
	if n.parent != nil && n.parent.vol != n.vol {
		info.ParentRef = nodeRef(n.parent)
	}
	return info
}

// Snapshots lists a volume's tree in id order: its snapshots, hidden ones
// included (Hidden set), and its head (Head set).
func (p *Pool) Snapshots(volume string) ([]SnapshotInfo, error) {
	k, err := p.kindOf(volume)
	if err != nil {
		return nil, err
	}
	return k.snapshots()
}

func (l localVolume) snapshots() ([]SnapshotInfo, error) {
	p, v := l.p, l.v
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	var out []SnapshotInfo
	for _, n := range p.nodesOfLocked(v) {
		out = append(out, p.snapshotInfoLocked(n))
	}
	return out, nil
}

// Snapshot describes one visible snapshot.
func (p *Pool) Snapshot(volume, name string) (SnapshotInfo, error) {
	k, err := p.kindOf(volume)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return k.snapshot(name)
}

func (l localVolume) snapshot(name string) (SnapshotInfo, error) {
	p := l.p
	n, err := l.findSnapshot(name)
	if err != nil {
		return SnapshotInfo{}, err
	}
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	return p.snapshotInfoLocked(n), nil
}

func (l localVolume) openSnapshot(name string) (*Handle, error) {
	p := l.p
	p.mapMu.Lock()
	defer p.mapMu.Unlock()
	n, err := p.findSnapshotLocked(l.v, name)
	if err != nil {
		return nil, err
	}
	// The file reads the snapshot whole: it has a resolved table while open.
	p.pinViewLocked(n)
	return newHandle(&localHandle{pool: p, vol: l.v, snap: n}, false), nil
}

// findSnapshot resolves a visible snapshot of the volume by name.
func (l localVolume) findSnapshot(name string) (*node, error) {
	l.p.mapMu.RLock()
	defer l.p.mapMu.RUnlock()
	return l.p.findSnapshotLocked(l.v, name)
}

// maxSnapshotsLocked is the volume's chain limit.
func (p *Pool) maxSnapshotsLocked(v *volume) int {
	if v.rec.MaxSnapshots > 0 {
		return v.rec.MaxSnapshots
	}
	return p.opts.MaxSnapshots
}

// chainLocked returns the visible snapshots of v on the path from its head
// to the root, nearest first: what the chain limit counts.
func chainLocked(v *volume) []*node {
	var out []*node
	for n := v.head.parent; n != nil; n = n.parent {
		if n.vol == v && !n.rec.Hidden {
			out = append(out, n)
		}
	}
	return out
}

// CreateSnapshot freezes the volume's head as a snapshot and starts a new
// empty head under it. It is point-in-time exact: a write that completed
// before the call is in the snapshot; one that starts after it returns is
// not. Its cost does not depend on the volume's size.
func (p *Pool) CreateSnapshot(volume, name string, opts SnapshotOptions) (SnapshotInfo, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	k, err := p.kindOf(volume)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return k.createSnapshot(name, opts)
}

func (l localVolume) createSnapshot(name string, opts SnapshotOptions) (SnapshotInfo, error) {
	p := l.p
	cut, err := l.prepareCut(name, opts)
	if err != nil {
		return SnapshotInfo{}, err
	}
	infos, err := p.cutSnapshots([]*snapshotCut{cut})
	if err != nil {
		return SnapshotInfo{}, err
	}
	return infos[0], nil
}

// snapshotCut is one volume's part of a snapshot: what its frozen node and
// its new head's records will be.
type snapshotCut struct {
	v      *volume
	old    *node
	frozen blockmap.NodeRecord
	vrec   blockmap.VolumeRecord
	head   blockmap.NodeRecord // filled in by cutSnapshots
}

// prepareCut checks and names a snapshot of the volume and makes room for
// it under the chain limit; nothing is written. REQUIRES: adminMu.
func (l localVolume) prepareCut(name string, opts SnapshotOptions) (*snapshotCut, error) {
	p, v := l.p, l.v
	volume := v.rec.Name
	now := p.opts.Now().UTC()
	named := name == "" && opts.Auto
	if named {
		p.mapMu.RLock()
		name = autoSnapshotName(opts.AutoKind, v.rec.LastAuto[opts.AutoKind], now, func(name string) bool { return p.nameUsedLocked(v, name) })
		p.mapMu.RUnlock()
	}
	if err := ValidateSnapshotName(name, opts.Auto); err != nil {
		return nil, err
	}
	if len(opts.Description) > 1024 {
		return nil, fmt.Errorf("%w: description of %d bytes; at most 1024", ErrInvalidArgument, len(opts.Description))
	}
	p.mapMu.RLock()
	_, findErr := p.findSnapshotLocked(v, name)
	p.mapMu.RUnlock()
	if findErr == nil {
		return nil, fmt.Errorf("%w: snapshot %s@%s", ErrExists, volume, name)
	}
	if err := p.makeRoom(v, opts.Auto); err != nil {
		return nil, err
	}
	kind := KindManual
	if opts.Auto {
		kind = KindAuto
	}
	cut := &snapshotCut{v: v, old: v.head, vrec: v.rec}
	cut.frozen = v.head.rec
	cut.frozen.Name, cut.frozen.Kind, cut.frozen.Description, cut.frozen.Size, cut.frozen.Created = name, kind, opts.Description, v.rec.Size, now
	cut.frozen.Policy, cut.frozen.Group, cut.frozen.Consistency = opts.Policy, opts.Group, opts.Consistency
	if named {
		cut.vrec.LastAuto = maps.Clone(cut.vrec.LastAuto)
		if cut.vrec.LastAuto == nil {
			cut.vrec.LastAuto = map[string]string{}
		}
		cut.vrec.LastAuto[opts.AutoKind] = name
	}
	return cut, nil
}

// cutSnapshots takes the prepared snapshots at one instant: the records of
// all of them in one transaction, then every head switched under one hold
// of mapMu, so no write completed after the cut is in any of them and
// none completed before it is missing (a group's consistency). A crash
// after the transaction leaves all of them, one before it none.
//
// The records are written before the in-memory switch and outside mapMu:
// a Badger write can wait tens of milliseconds behind a memtable flush,
// and guest I/O must not wait with it. Only admin calls change the heads'
// records, and adminMu holds them off, so the records stay right; writes
// that land between the two steps belong to the snapshots, whose point in
// time is the switch, and a crash in between leaves their map entries to
// the snapshots just the same. REQUIRES: adminMu.
func (p *Pool) cutSnapshots(cuts []*snapshotCut) ([]SnapshotInfo, error) {
	err := p.store.Update(func(tx *blockmap.Txn) error {
		for _, c := range cuts {
			id, err := tx.NextID()
			if err != nil {
				return err
			}
			c.head = blockmap.NodeRecord{ID: id, Volume: c.v.rec.ID, Parent: c.old.rec.ID, Created: c.frozen.Created}
			c.vrec.Head = id
			if err := tx.PutNode(c.frozen); err != nil {
				return err
			}
			if err := tx.PutNode(c.head); err != nil {
				return err
			}
			if err := tx.PutVolume(c.vrec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create snapshot %s@%s: %w", cuts[0].v.rec.Name, cuts[0].frozen.Name, err)
	}
	p.mapMu.Lock()
	infos := make([]SnapshotInfo, len(cuts))
	for i, c := range cuts {
		c.old.rec = c.frozen
		p.attachLocked(c.v, c.old, c.head)
		c.v.rec = c.vrec
		infos[i] = p.snapshotInfoLocked(c.old)
		p.toCompact = append(p.toCompact, c.old)
	}
	p.mapMu.Unlock()
	p.crashPoint(CrashSnapshot)
	// A write that resolved its block before the switch may still be
	// writing in place into what is now a snapshot's block: it is part of
	// the snapshot (it was in flight at the cut), and must land before the
	// snapshot is made durable and returned.
	p.waitInUse()
	// Make the snapshots and everything written before them durable.
	if err := p.commit(); err != nil {
		return nil, err
	}
	p.kickCommitter() // which compacts the frozen nodes (frozen.go)
	for _, c := range cuts {
		p.log.Info("created snapshot", "volume", c.v.rec.Name, "snapshot", c.frozen.Name, "kind", c.frozen.Kind, "id", c.frozen.ID, "group", c.frozen.Group)
	}
	return infos, nil
}

// attachLocked adds a new head node under parent (or as a root, if parent
// is nil) and makes it v's head.
func (p *Pool) attachLocked(v *volume, parent *node, rec blockmap.NodeRecord) *node {
	n := &node{rec: rec, parent: parent, vol: v}
	gen := p.nextGen.Add(1)
	if parent != nil {
		// The new head starts as a copy of its parent's view, sharing its
		// pages (a frozen parent's view is built for it, not kept).
		n.table = p.buildTableLocked(parent).child(gen)
	} else {
		n.table = newTable(gen)
	}
	if parent != nil {
		parent.children = append(parent.children, n)
	}
	p.nodes[rec.ID] = n
	v.nodes[rec.ID] = n
	v.head = n
	return n
}

// nameUsedLocked reports a node of v named name, hidden ones included.
func (p *Pool) nameUsedLocked(v *volume, name string) bool {
	for _, n := range v.nodes {
		if n != v.head && n.rec.Name == name {
			return true
		}
	}
	return false
}

// makeRoom enforces the chain limit before a new snapshot: a manual
// one is refused, an automatic one first merges away the oldest automatic
// snapshots of the chain. REQUIRES: adminMu.
func (p *Pool) makeRoom(v *volume, auto bool) error {
	for {
		p.mapMu.RLock()
		chain, limit := chainLocked(v), p.maxSnapshotsLocked(v)
		var oldestAuto *node
		for _, n := range chain {
			if n.rec.Kind == KindAuto {
				oldestAuto = n
			}
		}
		p.mapMu.RUnlock()
		if len(chain) < limit {
			return nil
		}
		oldest := chain[len(chain)-1]
		if !auto {
			return fmt.Errorf("%w: volume %q has %d snapshots on its chain (limit %d); delete one first, e.g. the oldest: rowctl snapshot delete %s@%s (or raise the limit: rowctl volume set %s max-snapshots=N)",
				ErrChainLimit, v.rec.Name, len(chain), limit, v.rec.Name, oldest.rec.Name, v.rec.Name)
		}
		if oldestAuto == nil {
			return fmt.Errorf("%w: volume %q has %d snapshots on its chain (limit %d) and none is automatic, so none can rotate out; delete one, e.g. %s@%s",
				ErrChainLimit, v.rec.Name, len(chain), limit, v.rec.Name, oldest.rec.Name)
		}
		p.log.Info("rotating out the oldest automatic snapshot", "volume", v.rec.Name, "snapshot", oldestAuto.rec.Name)
		if err := p.hide([]*node{oldestAuto}, nil); err != nil {
			return err
		}
		if err := p.reapAll(func(uint64) {}); err != nil {
			return err
		}
	}
}

// hide marks nodes deleted (hidden) durably, with the job that finishes
// them if job is non-nil. REQUIRES: adminMu.
func (p *Pool) hide(nodes []*node, job func(tx *blockmap.Txn) error) error {
	err := p.store.Update(func(tx *blockmap.Txn) error {
		for _, n := range nodes {
			rec := n.rec
			rec.Hidden = true
			if err := tx.PutNode(rec); err != nil {
				return err
			}
		}
		if job != nil {
			return job(tx)
		}
		return nil
	})
	if err == nil {
		err = p.store.Sync()
	}
	if err != nil {
		return fmt.Errorf("mark snapshots deleted: %w", err)
	}
	p.crashPoint(CrashDeleteHidden)
	p.mapMu.Lock()
	for _, n := range nodes {
		n.rec.Hidden = true
	}
	p.mapMu.Unlock()
	return nil
}

// DeleteSnapshot deletes a snapshot (or, with Recursive, its subtree).
// What a child still reads moves to it; what no child reads is freed; a
// snapshot more than one child reads stays hidden until it can merge. The
// decision is durable when it returns; the merge runs as a job.
func (p *Pool) DeleteSnapshot(volume, name string, opts DeleteOptions) (DeleteResult, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	k, err := p.kindOf(volume)
	if err != nil {
		return DeleteResult{}, err
	}
	return k.deleteSnapshot(name, opts)
}

func (l localVolume) deleteSnapshot(name string, opts DeleteOptions) (DeleteResult, error) {
	p := l.p
	volume := l.v.rec.Name
	s, err := l.findSnapshot(name)
	if err != nil {
		return DeleteResult{}, err
	}
	p.mapMu.RLock()
	targets := []*node{s}
	if opts.Recursive {
		targets = subtree(s)
		for _, n := range targets {
			if n.vol != nil && n.vol.head == n {
				p.mapMu.RUnlock()
				return DeleteResult{}, fmt.Errorf("%w: the subtree of %s@%s holds the head of volume %q: roll %q back elsewhere or delete it first",
					ErrBusy, volume, name, n.vol.rec.Name, n.vol.rec.Name)
			}
		}
	}
	plan := p.planDeleteLocked(targets)
	p.mapMu.RUnlock()
	res := DeleteResult{Plan: plan}
	if opts.DryRun {
		return res, nil
	}
	var jobRec blockmap.JobRecord
	err = p.hide(targets, func(tx *blockmap.Txn) (err error) {
		jobRec, err = p.newJobTx(tx, JobDelete, volume+"@"+name)
		return err
	})
	if err != nil {
		return DeleteResult{}, err
	}
	job := p.launch(jobRec, (plan.FreedBytes + plan.MovedBytes), p.runReap)
	res.Job = &job
	p.log.Info("deleting snapshot", "volume", volume, "snapshot", name, "recursive", opts.Recursive,
		"frees", plan.FreedBytes, "moves", plan.MovedBytes, "job", job.ID)
	return res, nil
}

// ResetVolume is the VM's "reset to image": a clone goes back to the
// snapshot it was cloned from, another volume to zeros. Its snapshots stay.
// Refused while the volume is open for writing, unless force; an
// automatic snapshot (auto-pre-reset-…) keeps what it discards unless the
// pool setting snapshot-before-reset is off.
func (p *Pool) ResetVolume(volume string, force bool) (RollbackResult, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	k, err := p.kindOf(volume)
	if err != nil {
		return RollbackResult{}, err
	}
	if !force {
		if err := k.openForRollback(); err != nil {
			return RollbackResult{}, err
		}
	}
	return k.reset(force, func() error { return p.snapshotBefore(k, p.Settings().SnapshotBeforeReset, "pre-reset") })
}

// RollbackResult is the volume after a rollback and the job freeing the
// abandoned head's blocks.
type RollbackResult struct {
	Volume VolumeInfo
	Job    *JobInfo
}

// RollbackVolume makes the volume read as snapshot name again: the head's
// own blocks are released and a new empty head starts under the
// snapshot, whose size the volume takes. Snapshots of the old branch stay.
// Refused while the volume is open for writing, unless force.
func (p *Pool) RollbackVolume(volume, name string, force bool) (RollbackResult, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	k, err := p.kindOf(volume)
	if err != nil {
		return RollbackResult{}, err
	}
	if p.Settings().SnapshotBeforeRollback {
		// Only if the rollback can happen: a refused one changes nothing.
		if _, err := k.snapshot(name); err != nil {
			return RollbackResult{}, err
		}
		if !force {
			if err := k.openForRollback(); err != nil {
				return RollbackResult{}, err
			}
		}
		if err := p.snapshotBefore(k, true, "pre-rollback"); err != nil {
			return RollbackResult{}, err
		}
	}
	return k.rollback(name, force)
}

func (l localVolume) openForRollback() error {
	if n := l.p.waitClosed(l.v, true); n > 0 {
		return fmt.Errorf("%w: volume %q is open for writing (%d writers): stop the VM first (or force the rollback)", ErrBusy, l.v.rec.Name, n)
	}
	return nil
}

func (l localVolume) rollback(name string, force bool) (RollbackResult, error) {
	s, err := l.findSnapshot(name)
	if err != nil {
		return RollbackResult{}, err
	}
	return l.rollbackTo(s, s.rec.Size, force, "rollback", l.v.rec.Name+"@"+name)
}

// reset goes back to the snapshot a clone was made from, or to zeros.
func (l localVolume) reset(force bool, before func() error) (RollbackResult, error) {
	p := l.p
	if err := before(); err != nil {
		return RollbackResult{}, err
	}
	p.mapMu.RLock()
	var origin *node
	if root := cloneRootLocked(l.v); root != nil {
		origin = root.parent
	}
	size := l.v.rec.Size
	if origin != nil {
		size = origin.rec.Size
	}
	p.mapMu.RUnlock()
	return l.rollbackTo(origin, size, force, "reset", l.v.rec.Name)
}

// rollbackTo starts a new empty head under s (a root if s is nil) of the
// given size and releases the old head's blocks: a rollback, or a reset.
func (l localVolume) rollbackTo(s *node, size uint64, force bool, what, target string) (RollbackResult, error) {
	p, v := l.p, l.v
	volume := v.rec.Name
	if !force {
		if err := l.openForRollback(); err != nil {
			return RollbackResult{}, err
		}
	}
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.mapMu.Lock()
	defer p.mapMu.Unlock()
	if v.writers > 0 && !force {
		return RollbackResult{}, fmt.Errorf("%w: volume %q is open for writing (%d writers): stop the VM first (or force the rollback)",
			ErrBusy, volume, v.writers)
	}
	old := v.head
	vrec := v.rec
	vrec.Size = size
	now := p.opts.Now().UTC()
	var parentID uint64
	if s != nil {
		parentID = s.rec.ID
	}
	var headRec blockmap.NodeRecord
	var jobRec blockmap.JobRecord
	err := p.syncedUpdate(func(tx *blockmap.Txn) error {
		id, err := tx.NextID()
		if err != nil {
			return err
		}
		headRec = blockmap.NodeRecord{ID: id, Volume: v.rec.ID, Parent: parentID, Created: now}
		vrec.Head = id
		if jobRec, err = p.newJobTx(tx, JobRollback, target); err != nil {
			return err
		}
		if err := tx.PutNode(headRec); err != nil {
			return err
		}
		if err := tx.DeleteNode(old.rec.ID); err != nil {
			return err
		}
		return tx.PutVolume(vrec)
	})
	if err != nil {
		return RollbackResult{}, fmt.Errorf("%s %s: %w", what, target, err)
	}
	p.crashPoint(CrashRollback)
	freed := p.detachLocked(old)
	p.attachLocked(v, s, headRec)
	v.rec = vrec
	info := p.volumeInfoLocked(v)
	owned := uint64(len(freed)) * p.blockSize
	oldID := old.rec.ID
	jobInfo := p.launch(jobRec, owned, func(j *job) error {
		if err := p.purge([]uint64{oldID}, freed); err != nil {
			return err
		}
		j.done.Add(owned)
		return p.runReap(j)
	})
	p.log.Info("rolled back volume", "volume", volume, "to", target, "op", what, "freed_bytes", owned, "job", jobInfo.ID)
	return RollbackResult{Volume: info, Job: &jobInfo}, nil
}

// CloneVolume creates volume name from a snapshot of another volume,
// instantly: the clone reads the snapshot's blocks until it overwrites
// them. The snapshot cannot go away while the clone reads it.
func (p *Pool) CloneVolume(srcVolume, snap, name string) (VolumeInfo, error) {
	if err := ValidateVolumeName(name); err != nil {
		return VolumeInfo{}, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	k, err := p.kindOf(srcVolume)
	if err != nil {
		return VolumeInfo{}, err
	}
	return k.clone(snap, name)
}

func (l localVolume) clone(snap, name string) (VolumeInfo, error) {
	p := l.p
	srcVolume := l.v.rec.Name
	s, err := l.findSnapshot(snap)
	if err != nil {
		return VolumeInfo{}, err
	}
	info, err := p.newVolume(name, s.rec.Size, s)
	if err != nil {
		return VolumeInfo{}, err
	}
	p.log.Info("cloned volume", "from", srcVolume+"@"+snap, "to", name)
	return info, nil
}

// cloneRootLocked returns the oldest node of v on its head's path whose
// parent belongs to another volume, or nil if v shares nothing.
func cloneRootLocked(v *volume) *node {
	for n := v.head; n != nil; n = n.parent {
		if n.vol == v && n.parent != nil && n.parent.vol != v {
			return n
		}
	}
	return nil
}

// FlattenVolume copies into a clone every block it still reads from its
// origin, then cuts it loose. It runs as a job; the clone stays usable.
func (p *Pool) FlattenVolume(name string) (JobInfo, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	k, err := p.kindOf(name)
	if err != nil {
		return JobInfo{}, err
	}
	return k.flatten()
}

func (l localVolume) flatten() (JobInfo, error) {
	p, v := l.p, l.v
	name := v.rec.Name
	p.mapMu.RLock()
	root := cloneRootLocked(v)
	var shared uint64
	if root != nil {
		shared = p.inheritedBlocksLocked(root)
	}
	p.mapMu.RUnlock()
	if root == nil {
		return JobInfo{}, fmt.Errorf("%w: volume %q is not a clone; it shares no blocks", ErrInvalidArgument, name)
	}
	var rec blockmap.JobRecord
	err := p.store.Update(func(tx *blockmap.Txn) (err error) {
		rec, err = p.newJobTx(tx, JobFlatten, name)
		return err
	})
	if err == nil {
		err = p.store.Sync()
	}
	if err != nil {
		return JobInfo{}, fmt.Errorf("flatten %q: %w", name, err)
	}
	return p.launch(rec, shared*p.blockSize, func(j *job) error { return p.runFlatten(j, name) }), nil
}

func (p *Pool) inheritedBlocksLocked(root *node) uint64 {
	var n uint64
	p.buildTableLocked(root).each(^uint64(0), func(_ uint64, e entry) {
		if e.owner != root.rec.ID && e.phys != blockmap.ZeroBlock {
			n++
		}
	})
	return n
}

// flattenBatch is how many blocks one flatten step copies under adminMu.
const flattenBatch = 256

// runFlatten copies in steps, each re-resolving the clone, so other admin
// work interleaves and a resumed job starts where the durable state is.
func (p *Pool) runFlatten(j *job, name string) error {
	bs := p.blockSize
	for {
		if p.ctx.Err() != nil {
			return errInterrupted
		}
		finished, copied, err := p.flattenStep(name)
		j.done.Add(copied * bs)
		if err != nil || finished {
			return err
		}
	}
}

func (p *Pool) flattenStep(name string) (finished bool, copied uint64, err error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	v, err := p.lookup(name)
	if errors.Is(err, ErrNotFound) {
		return true, 0, nil // deleted meanwhile: nothing left to flatten
	}
	if err != nil {
		return false, 0, err
	}
	p.mapMu.Lock()
	root := cloneRootLocked(v)
	var todo []uint64
	if root != nil {
		// Copying up reads and writes root whole: it has a table meanwhile.
		p.pinViewLocked(root)
		defer func() {
			p.mapMu.Lock()
			p.unpinViewLocked(root)
			p.mapMu.Unlock()
		}()
		// Its partly written blocks read from the origin too: they are
		// made whole.
		root.table.each(^uint64(0), func(i uint64, e entry) {
			if len(todo) >= flattenBatch || e.phys == blockmap.ZeroBlock {
				return
			}
			if _, partial := root.table.partialAt(i); e.owner != root.rec.ID || partial {
				todo = append(todo, i)
			}
		})
	}
	p.mapMu.Unlock()
	if root == nil {
		return true, 0, nil
	}
	if len(todo) == 0 {
		cut, err := p.cutLoose(root)
		return cut, 0, err
	}
	bufp := p.getBlockBuffer()
	defer blockBuffers.Put(bufp)
	for _, i := range todo {
		if err := p.copyUp(v, root, i, *bufp); err != nil {
			return false, copied, err
		}
		copied++
	}
	if err := p.commit(); err != nil {
		return false, copied, err
	}
	p.crashPoint(CrashFlattenStep)
	return false, copied, nil
}

// copyUp gives root its own copy of block index, which it inherits, or
// makes its own partly written block there whole.
func (p *Pool) copyUp(v *volume, root *node, index uint64, buf []byte) error {
	if p.ownsPartial(root, index) {
		return p.fillPartial(root, index)
	}
	stripe := &p.stripes[index%uint64(len(p.stripes))]
	stripe.Lock()
	defer stripe.Unlock()
	for {
		p.mapMu.RLock()
		e, pi, _ := root.table.lookup(index)
		if e.owner == root.rec.ID || e.phys == blockmap.ZeroBlock || !e.mapped() {
			p.mapMu.RUnlock()
			return nil
		}
		err := p.readVisible(buf, e, pi, 0)
		p.mapMu.RUnlock()
		if err != nil {
			return err
		}
		done, err := p.redirect(v, root, index, e, buf, 0, partialInfo{}, false)
		if err != nil || done {
			return err
		}
	}
}

// cutLoose ends a flattened clone's tie to its origin: root reads only
// its own blocks, its inherited zero markers are dropped, and the origin
// loses a child (which may let a hidden origin merge).
//
// It reports false, having changed nothing, if root has a partly written
// block again (a guest wrote to a head root since the step looked): its
// base is the origin's, so it must be filled first.
func (p *Pool) cutLoose(root *node) (bool, error) {
	if err := p.commit(); err != nil {
		return false, err
	}
	p.mapMu.Lock()
	partial := false
	root.table.eachPartial(func(_ uint64, e entry, _ partialInfo) { partial = partial || e.owner == root.rec.ID })
	if partial {
		p.mapMu.Unlock()
		return false, nil
	}
	rec := root.rec
	rec.Parent = 0
	err := p.store.Update(func(tx *blockmap.Txn) error { return tx.PutNode(rec) })
	if err == nil {
		err = p.store.Sync()
	}
	if err != nil {
		p.mapMu.Unlock()
		return false, fmt.Errorf("flatten: detach node %d: %w", root.rec.ID, err)
	}
	p.crashPoint(CrashFlattenCut)
	origin := root.parent
	root.table.each(^uint64(0), func(i uint64, e entry) {
		if e.owner != root.rec.ID {
			p.rewriteSubtree(root, i, e, entry{}, partialInfo{})
		}
	})
	origin.children = slices.DeleteFunc(origin.children, func(c *node) bool { return c == root })
	root.parent, root.rec = nil, rec
	p.mapMu.Unlock()
	return true, p.reapAll(func(uint64) {})
}

// Extent is a byte range.
type Extent struct {
	Offset uint64
	Length uint64
}

// Diff returns the extents that differ between two nodes of a volume's
// tree, from the maps alone (no data is read). to == "" means the head.
func (p *Pool) Diff(volume, from, to string) ([]Extent, error) {
	k, err := p.kindOf(volume)
	if err != nil {
		return nil, err
	}
	return k.diff(from, to)
}

func (l localVolume) diff(from, to string) ([]Extent, error) {
	p, v := l.p, l.v
	a, err := l.findSnapshot(from)
	if err != nil {
		return nil, err
	}
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	b, bSize := v.head, v.rec.Size
	if to != "" {
		if b, err = p.findSnapshotLocked(v, to); err != nil {
			return nil, err
		}
		bSize = b.rec.Size
	}
	bs := p.blockSize
	size := max(a.rec.Size, bSize)
	blocks := (size + bs - 1) / bs
	visible := func(e entry) uint64 {
		if !e.mapped() {
			return blockmap.ZeroBlock
		}
		return e.phys
	}
	// Snapshots' views are built from their own entries for the diff.
	ta, tb := p.buildTableLocked(a), p.buildTableLocked(b)
	var out []Extent
	for i := uint64(0); i < blocks; i++ {
		if pi := i >> pageShift; pi < uint64(len(ta.pages)) && pi < uint64(len(tb.pages)) && ta.pages[pi] == tb.pages[pi] {
			i = (pi+1)<<pageShift - 1 // shared page: identical
			continue
		}
		if visible(ta.get(i)) == visible(tb.get(i)) {
			continue
		}
		off := i * bs
		length := min(bs, size-off)
		if k := len(out) - 1; k >= 0 && out[k].Offset+out[k].Length == off {
			out[k].Length += length
		} else {
			out = append(out, Extent{Offset: off, Length: length})
		}
	}
	return out, nil
}

// SetMaxSnapshots sets a volume's chain limit; 0 restores the pool default.
// checkLimitAbove refuses a chain limit below the snapshots a chain has:
// lowering the limit removes nothing, so the chain would stay over it, every
// manual snapshot refused and the next automatic one rotating out several.
func checkLimitAbove(volume string, chain, limit int) error {
	if chain <= limit {
		return nil
	}
	return fmt.Errorf("%w: volume %q has %d snapshots on its chain, more than a limit of %d allows, and a lower limit deletes none of them: delete snapshots first, or set max-snapshots=%d or more",
		ErrInvalidArgument, volume, chain, limit, chain)
}

func (p *Pool) SetMaxSnapshots(volume string, limit int) (VolumeInfo, error) {
	if limit < 0 || limit > MaxChainLimit {
		return VolumeInfo{}, fmt.Errorf("%w: max-snapshots=%d: must be 1 to %d, or 0 for the pool default", ErrInvalidArgument, limit, MaxChainLimit)
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	k, err := p.kindOf(volume)
	if err != nil {
		return VolumeInfo{}, err
	}
	return k.setMaxSnapshots(limit)
}

func (l localVolume) setMaxSnapshots(limit int) (VolumeInfo, error) {
	p, v := l.p, l.v
	volume := v.rec.Name
	p.mapMu.RLock()
	chain, effective := len(chainLocked(v)), cmp.Or(limit, p.opts.MaxSnapshots)
	p.mapMu.RUnlock()
	if err := checkLimitAbove(volume, chain, effective); err != nil {
		return VolumeInfo{}, err
	}
	rec := v.rec
	rec.MaxSnapshots = limit
	err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutVolume(rec) })
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("set max-snapshots of %q: %w", volume, err)
	}
	p.mapMu.Lock()
	defer p.mapMu.Unlock()
	v.rec.MaxSnapshots = limit
	return p.volumeInfoLocked(v), nil
}
