package rowengine

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rowfs/rowfs/blockmap"
)

// Policy is a snapshot policy as the pool keeps it. The daemon's scheduler
// decides when it is due; the engine keeps it and runs it (RunPolicy).
type Policy = blockmap.PolicyRecord

// MaxPoliciesPerVolume bounds the policies applied to one volume (ZStack's
// and Alibaba's limit).
const MaxPoliciesPerVolume = 10

// Policies lists the pool's policies, ordered by name.
func (p *Pool) Policies() ([]Policy, error) { return p.store.Policies() }

// Policy returns one policy.
func (p *Pool) Policy(name string) (Policy, error) {
	all, err := p.store.Policies()
	if err != nil {
		return Policy{}, err
	}
	for _, rec := range all {
		if rec.Name == name {
			return rec, nil
		}
	}
	return Policy{}, fmt.Errorf("%w: policy %q", ErrNotFound, name)
}

// PoliciesOf names the policies applied to volume, in name order.
func (p *Pool) PoliciesOf(volume string) ([]string, error) {
	all, err := p.store.Policies()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rec := range all {
		if slices.Contains(rec.Volumes, volume) {
			out = append(out, rec.Name)
		}
	}
	return out, nil
}

// forgetPolicyVolume drops a deleted volume from the policies applied to
// it (a failure costs a policy run an error for it, nothing more).
// REQUIRES: adminMu.
func (p *Pool) forgetPolicyVolume(volume string) {
	all, err := p.store.Policies()
	if err != nil {
		return
	}
	for _, rec := range all {
		if !slices.Contains(rec.Volumes, volume) {
			continue
		}
		rec.Volumes = slices.DeleteFunc(rec.Volumes, func(v string) bool { return v == volume })
		if err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutPolicy(rec) }); err != nil {
			p.log.Warn("drop a deleted volume from a policy", "policy", rec.Name, "volume", volume, "err", err)
		}
	}
}

// SavePolicy creates or replaces a policy durably. Its volumes must exist,
// and none may carry more than MaxPoliciesPerVolume policies. The schedule
// is the caller's to validate (the daemon's scheduler reads it).
func (p *Pool) SavePolicy(rec Policy) error {
	if err := ValidateVolumeName(rec.Name); err != nil {
		return fmt.Errorf("%w: policy name %q: names are %s", ErrInvalidArgument, rec.Name, NameRule)
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	all, err := p.store.Policies()
	if err != nil {
		return err
	}
	count := map[string]int{}
	for _, other := range all {
		if other.Name == rec.Name {
			continue
		}
		for _, v := range other.Volumes {
			count[v]++
		}
	}
	slices.Sort(rec.Volumes)
	rec.Volumes = slices.Compact(rec.Volumes)
	slices.Sort(rec.Groups)
	rec.Groups = slices.Compact(rec.Groups)
	for _, g := range rec.Groups {
		if _, err := p.Group(g); err != nil {
			return fmt.Errorf("policy %q: %w", rec.Name, err)
		}
	}
	for _, v := range rec.Volumes {
		if _, err := p.kindOf(v); err != nil {
			return fmt.Errorf("policy %q: %w", rec.Name, err)
		}
		if count[v] >= MaxPoliciesPerVolume {
			return fmt.Errorf("%w: volume %q already has %d policies, the most a volume may have", ErrInvalidArgument, v, MaxPoliciesPerVolume)
		}
	}
	if rec.Volumes == nil {
		rec.Volumes = []string{}
	}
	return p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutPolicy(rec) })
}

// RecordPolicy writes a policy's record as it is: the scheduler's state
// after a run (its volumes may have gone meanwhile; a run reports those).
func (p *Pool) RecordPolicy(rec Policy) error {
	if _, err := p.Policy(rec.Name); err != nil {
		return err // deleted while it ran
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	return p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutPolicy(rec) })
}

// DeletePolicy removes a policy; the snapshots it took stay (automatic
// snapshots, rotated at the chain limit).
func (p *Pool) DeletePolicy(name string) error {
	if _, err := p.Policy(name); err != nil {
		return err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	return p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.DeletePolicy(name) })
}

// PolicyRun is what one run of a policy did.
type PolicyRun struct {
	Created []string // VOL@SNAP
	Pruned  []string // VOL@SNAP
	Errors  []string
}

// Result sums a run up for the policy's record: "ok", or the errors.
func (r PolicyRun) Result() string {
	if len(r.Errors) == 0 {
		return "ok"
	}
	return "failed: " + strings.Join(r.Errors, "; ")
}

// RunPolicy runs rec once at now: an automatic snapshot of each of its
// volumes, then the pruning of the policy's own snapshots beyond Keep or
// older than RetainDays (never a manual snapshot, another policy's, or the
// newest). A volume that fails does not stop the others.
// GroupSnapshotter takes a group snapshot for a policy run: the daemon's
// runs the group's freeze hook around the cut. Nil: Pool.GroupSnapshot,
// crash-consistent.
type GroupSnapshotter func(group string, opts SnapshotOptions) ([]SnapshotInfo, error)

func (p *Pool) RunPolicy(rec Policy, now time.Time, groupSnapshot GroupSnapshotter) PolicyRun {
	var run PolicyRun
	for _, vol := range rec.Volumes {
		s, err := p.CreateSnapshot(vol, "", SnapshotOptions{Auto: true, Policy: rec.Name,
			Description: "policy " + rec.Name})
		if err != nil {
			run.Errors = append(run.Errors, fmt.Sprintf("%s: %v", vol, err))
			continue
		}
		run.Created = append(run.Created, vol+"@"+s.Name)
		snaps, err := p.Snapshots(vol)
		if err != nil {
			run.Errors = append(run.Errors, fmt.Sprintf("%s: %v", vol, err))
			continue
		}
		for _, name := range prunePlan(snaps, rec.Name, rec.Keep, rec.RetainDays, now) {
			if _, err := p.DeleteSnapshot(vol, name, DeleteOptions{}); err != nil && !errors.Is(err, ErrNotFound) {
				run.Errors = append(run.Errors, fmt.Sprintf("prune %s@%s: %v", vol, name, err))
				continue
			}
			run.Pruned = append(run.Pruned, vol+"@"+name)
		}
	}
	if groupSnapshot == nil {
		groupSnapshot = func(group string, opts SnapshotOptions) ([]SnapshotInfo, error) {
			opts.Consistency = "crash"
			return p.GroupSnapshot(group, "", opts)
		}
	}
	for _, g := range rec.Groups {
		p.runPolicyGroup(rec, g, now, groupSnapshot, &run)
	}
	p.log.Info("policy ran", "policy", rec.Name, "created", len(run.Created), "pruned", len(run.Pruned), "errors", len(run.Errors))
	return run
}

// runPolicyGroup takes one automatic group snapshot of group g and prunes
// the policy's group snapshots as whole points (pruning members one by
// one would leave partial points).
func (p *Pool) runPolicyGroup(rec Policy, g string, now time.Time, groupSnapshot GroupSnapshotter, run *PolicyRun) {
	infos, err := groupSnapshot(g, SnapshotOptions{Auto: true, Policy: rec.Name, Description: "policy " + rec.Name})
	if err != nil {
		run.Errors = append(run.Errors, fmt.Sprintf("group %s: %v", g, err))
		return
	}
	run.Created = append(run.Created, g+"@"+infos[0].Name+" (group)")
	snaps, err := p.Snapshots(infos[0].Volume)
	if err != nil {
		run.Errors = append(run.Errors, fmt.Sprintf("group %s: %v", g, err))
		return
	}
	for _, name := range prunePlan(snaps, rec.Name, rec.Keep, rec.RetainDays, now) {
		if _, err := p.DeleteGroupSnapshot(g, name); err != nil {
			run.Errors = append(run.Errors, fmt.Sprintf("prune %s@%s: %v", g, name, err))
			continue
		}
		run.Pruned = append(run.Pruned, g+"@"+name+" (group)")
	}
}

// prunePlan picks the snapshots of one volume a policy prunes: its own
// visible ones beyond the newest keep (0: no count bound) or older than
// retainDays days (0: forever), oldest first, never the newest of them.
func prunePlan(snaps []SnapshotInfo, policy string, keep, retainDays int, now time.Time) []string {
	var own []SnapshotInfo
	for _, s := range snaps {
		if !s.Head && !s.Hidden && s.Kind == KindAuto && s.Policy == policy {
			own = append(own, s)
		}
	}
	sort.SliceStable(own, func(i, j int) bool { return own[i].Created.Before(own[j].Created) })
	var out []string
	for i, s := range own[:max(len(own)-1, 0)] { // the newest always stays
		beyondKeep := keep > 0 && len(own)-i > keep
		tooOld := retainDays > 0 && now.Sub(s.Created) > time.Duration(retainDays)*24*time.Hour
		if beyondKeep || tooOld {
			out = append(out, s.Name)
		}
	}
	return out
}
