package rowengine

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPrunePlan(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	snap := func(name, kind, policy string, age time.Duration) SnapshotInfo {
		return SnapshotInfo{Name: name, Kind: kind, Policy: policy, Created: now.Add(-age)}
	}
	snaps := []SnapshotInfo{
		snap("m1", KindManual, "", 30*day),
		snap("a1", KindAuto, "daily", 10*day),
		snap("a2", KindAuto, "daily", 5*day),
		snap("o1", KindAuto, "other", 9*day),
		snap("a3", KindAuto, "daily", 2*day),
		snap("a4", KindAuto, "daily", day),
		{Kind: "head", Head: true},
	}
	cases := []struct {
		keep, days int
		want       []string
	}{
		{0, 0, nil},
		{2, 0, []string{"a1", "a2"}},
		{0, 4, []string{"a1", "a2"}},
		{3, 7, []string{"a1"}},
		{1, 0, []string{"a1", "a2", "a3"}},
		// Everything older than the retention, but the newest stays.
		{0, 1, []string{"a1", "a2", "a3"}},
	}
	for _, c := range cases {
		if got := prunePlan(snaps, "daily", c.keep, c.days, now); !slices.Equal(got, c.want) {
			t.Errorf("keep %d, retain %d days: prune %v, want %v", c.keep, c.days, got, c.want)
		}
	}
}

// TestRunPolicy: runs make one automatic snapshot per volume, named as
// --auto names, and prune only the policy's own beyond keep; a manual
// snapshot and another policy's stay.
func TestRunPolicy(t *testing.T) {
	clock := &TestClock{}
	p := TestPool(t, Options{Now: clock.Now})
	for _, v := range []string{"a", "b"} {
		mustCreate(t, p, v, 1<<20).Close()
	}
	mustSnapshot(t, p, "a", "manual")
	if err := p.SavePolicy(Policy{Name: "often", Kind: "every", Every: 60, Keep: 2, Volumes: []string{"b", "a", "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := p.SavePolicy(Policy{Name: "other", Kind: "every", Every: 60, Keep: 1, Volumes: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	rec, _ := p.Policy("often")
	if !slices.Equal(rec.Volumes, []string{"a", "b"}) {
		t.Errorf("volumes %v", rec.Volumes)
	}
	other, _ := p.Policy("other")
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock.Freeze(start)
	p.RunPolicy(other, start, nil)
	for i := range 4 {
		clock.Freeze(start.Add(time.Duration(i+1) * time.Minute))
		run := p.RunPolicy(rec, clock.Now(), nil)
		if len(run.Errors) > 0 || len(run.Created) != 2 {
			t.Fatalf("run %d: %+v", i, run)
		}
	}
	WaitJobs(t, p)
	for _, v := range []string{"a", "b"} {
		list, _ := p.Snapshots(v)
		var own, rest []string
		for _, s := range list {
			switch {
			case s.Head || s.Hidden:
			case s.Policy == "often":
				own = append(own, s.Name)
				if !strings.HasPrefix(s.Name, "auto-20261201T12") || s.Kind != KindAuto {
					t.Errorf("policy snapshot %s@%s (%s)", v, s.Name, s.Kind)
				}
			default:
				rest = append(rest, s.Name)
			}
		}
		if len(own) != 2 {
			t.Errorf("%s keeps %d of the policy's snapshots: %v", v, len(own), own)
		}
		if v == "a" && len(rest) != 2 {
			t.Errorf("a's manual snapshot and the other policy's: %v", rest)
		}
	}
	for i := range MaxPoliciesPerVolume - 2 {
		if err := p.SavePolicy(Policy{Name: "p" + string(rune('a'+i)), Kind: "every", Every: 60, Volumes: []string{"a"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.SavePolicy(Policy{Name: "eleventh", Kind: "every", Every: 60, Volumes: []string{"a"}}); err == nil {
		t.Error("an 11th policy on a volume was accepted")
	}
	if err := p.SavePolicy(Policy{Name: "ghost", Kind: "every", Every: 60, Volumes: []string{"nope"}}); err == nil {
		t.Error("a policy on a missing volume was accepted")
	}
	if _, err := p.DeleteVolume("b", false); err != nil {
		t.Fatal(err)
	}
	if rec, _ := p.Policy("often"); !slices.Equal(rec.Volumes, []string{"a"}) {
		t.Errorf("after deleting b the policy applies to %v", rec.Volumes)
	}
}

// TestRunPolicyOnGroup: a policy applied to a group takes one group
// snapshot a run and prunes whole points.
func TestRunPolicyOnGroup(t *testing.T) {
	clock := &TestClock{}
	p := TestPool(t, Options{Now: clock.Now})
	for _, v := range []string{"a", "b"} {
		mustCreate(t, p, v, 1<<20).Close()
	}
	if _, err := p.CreateGroup("vm", []string{"a", "b"}, GroupHooks{}); err != nil {
		t.Fatal(err)
	}
	if err := p.SavePolicy(Policy{Name: "often", Kind: "every", Every: 60, Keep: 2, Volumes: []string{}, Groups: []string{"vm"}}); err != nil {
		t.Fatal(err)
	}
	rec, _ := p.Policy("often")
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for i := range 4 {
		clock.Freeze(start.Add(time.Duration(i) * time.Minute))
		if run := p.RunPolicy(rec, clock.Now(), nil); len(run.Errors) > 0 {
			t.Fatalf("run %d: %v", i, run.Errors)
		}
	}
	WaitJobs(t, p)
	points, err := p.GroupPoints("vm")
	if err != nil || len(points) != 2 {
		t.Fatalf("group points after 4 runs with keep 2: %+v, %v", points, err)
	}
	for _, pt := range points {
		if !pt.Valid || len(pt.Members) != 2 {
			t.Errorf("point %+v", pt)
		}
	}
	if err := p.DeleteGroup("vm"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := p.Policy("often"); len(rec.Groups) != 0 {
		t.Errorf("a deleted group stays in the policy: %v", rec.Groups)
	}
}
