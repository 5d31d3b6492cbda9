package daemon

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// schedTest is a pool with volumes a and b, a scheduler on the test's
// clock, and a way to count each policy's snapshots.
type schedTest struct {
	t     *testing.T
	pool  *rowengine.Pool
	clock *rowengine.TestClock
	sched *scheduler
}

func newSchedTest(t *testing.T, start time.Time) *schedTest {
	clock := &rowengine.TestClock{}
	clock.Freeze(start)
	pool := rowengine.TestPool(t, rowengine.Options{Now: clock.Now, MaxSnapshots: 512})
	for _, v := range []string{"a", "b"} {
		if _, err := pool.CreateVolume(v, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	return &schedTest{t: t, pool: pool, clock: clock, sched: newScheduler(pool, clock.Now, slog.New(slog.DiscardHandler))}
}

func (st *schedTest) create(req api.PolicyRequest) rowengine.Policy {
	st.t.Helper()
	rec, err := policyFromRequest(req, st.clock.Now())
	if err != nil {
		st.t.Fatal(err)
	}
	if err := st.pool.SavePolicy(rec); err != nil {
		st.t.Fatal(err)
	}
	return rec
}

// advance ticks the scheduler every step until d has passed.
func (st *schedTest) advance(d, step time.Duration) {
	end := st.clock.Now().Add(d)
	for now := st.clock.Now(); !now.After(end); now = now.Add(step) {
		st.clock.Freeze(now)
		st.sched.tick()
	}
	rowengine.WaitJobs(st.t, st.pool)
}

// own lists volume's snapshots that policy took.
func (st *schedTest) own(volume, policy string) []rowengine.SnapshotInfo {
	st.t.Helper()
	list, err := st.pool.Snapshots(volume)
	if err != nil {
		st.t.Fatal(err)
	}
	var out []rowengine.SnapshotInfo
	for _, s := range list {
		if !s.Head && !s.Hidden && s.Policy == policy {
			out = append(out, s)
		}
	}
	return out
}

func (st *schedTest) policy(name string) rowengine.Policy {
	rec, err := st.pool.Policy(name)
	if err != nil {
		st.t.Fatal(err)
	}
	return rec
}

// TestWeeklyPolicyOverTwoWeeks: Alibaba's kind, hours 0,6,12,18 on
// Monday, Wednesday and Friday, retention 7 days, over two simulated weeks.
func TestWeeklyPolicyOverTwoWeeks(t *testing.T) {
	start := time.Date(2026, 11, 30, 0, 30, 0, 0, time.UTC) // a Monday, after 00:00
	st := newSchedTest(t, start)
	st.create(api.PolicyRequest{Name: "weekly", Hours: []int{0, 6, 12, 18}, Weekdays: []string{"mon", "wed", "fri"},
		RetainDays: "7", Timezone: "UTC", Volumes: []string{"a", "b"}})
	mustSnapshotManual(t, st.pool, "a", "keepme")
	st.advance(14*24*time.Hour, 30*time.Minute)
	rec := st.policy("weekly")
	// Monday 00:00 was before the policy: 3 on that Monday, 4 on each of
	// the 5 scheduled days after, and the Monday two weeks on at 00:00.
	if want := 3 + 5*4 + 1; rec.Runs != want {
		t.Errorf("%d runs in two weeks, want %d", rec.Runs, want)
	}
	for _, s := range st.own("a", "weekly") {
		if age := rec.LastRun.Sub(s.Created); age > 7*24*time.Hour {
			t.Errorf("snapshot %s is %s old, past the 7-day retention", s.Name, age)
		}
		if wd := s.Created.Weekday(); wd != time.Monday && wd != time.Wednesday && wd != time.Friday || s.Created.Hour()%6 != 0 || s.Created.Minute() != 0 {
			t.Errorf("snapshot %s taken at %s, not on the schedule", s.Name, s.Created)
		}
	}
	if n := len(st.own("a", "weekly")); n < 10 || n > 13 {
		t.Errorf("%d snapshots kept within 7 days", n)
	}
	if _, err := st.pool.Snapshot("a", "keepme"); err != nil {
		t.Errorf("the manual snapshot was pruned: %v", err)
	}
}

func mustSnapshotManual(t *testing.T, p *rowengine.Pool, volume, name string) {
	t.Helper()
	if _, err := p.CreateSnapshot(volume, name, rowengine.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestEveryPolicyTimesAndKeep: ZStack's kind, every 30 minutes, 5 times,
// keeping 2: five runs, then done; never more than 2 of its snapshots.
func TestEveryPolicyTimesAndKeep(t *testing.T) {
	st := newSchedTest(t, time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	st.create(api.PolicyRequest{Name: "five", Every: "30m", Times: 5, Keep: 2, Volumes: []string{"a"}})
	st.advance(6*time.Hour, 5*time.Minute)
	rec := st.policy("five")
	if rec.Runs != 5 || policyDoc(rec).State != "done" {
		t.Errorf("runs %d, state %q; want 5 and done", rec.Runs, policyDoc(rec).State)
	}
	if own := st.own("a", "five"); len(own) != 2 {
		t.Errorf("%d snapshots kept, want 2", len(own))
	}
	// Forever: one run a period.
	st.create(api.PolicyRequest{Name: "hourly", Every: "1h", Volumes: []string{"b"}})
	st.advance(10*time.Hour, 10*time.Minute)
	if rec := st.policy("hourly"); rec.Runs != 11 {
		t.Errorf("hourly policy over 10 hours: %d runs, want 11", rec.Runs)
	}
}

// TestMissedRunsCatchUpOnce: after ten hours of downtime an hourly policy
// runs once, not ten times, and its next run is the next hour.
func TestMissedRunsCatchUpOnce(t *testing.T) {
	start := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	st := newSchedTest(t, start)
	st.create(api.PolicyRequest{Name: "hourly", Every: "1h", Volumes: []string{"a"}})
	st.sched.tick()
	st.clock.Freeze(start.Add(10*time.Hour + 5*time.Minute)) // the daemon was down
	st.sched.tick()
	rec := st.policy("hourly")
	if rec.Runs != 2 || len(st.own("a", "hourly")) != 2 {
		t.Errorf("after downtime: %d runs, %d snapshots; want 2 and 2", rec.Runs, len(st.own("a", "hourly")))
	}
	if next := policyDoc(rec).NextRun; !next.Equal(start.Add(11 * time.Hour)) {
		t.Errorf("next run %s, want %s", next, start.Add(11*time.Hour))
	}
	st.sched.tick()
	if rec := st.policy("hourly"); rec.Runs != 2 {
		t.Errorf("a tick with nothing due ran the policy (%d runs)", rec.Runs)
	}
}

// TestOverrunSkips: a run that lasts past the next due times skips them.
func TestOverrunSkips(t *testing.T) {
	start := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	st := newSchedTest(t, start)
	st.create(api.PolicyRequest{Name: "minutely", Every: "1m", Volumes: []string{"a"}})
	// The tick reads the clock at the start (08:00) and after the run,
	// which here ends at 08:02:30: 08:01 and 08:02 came due meanwhile.
	calls := 0
	st.sched.now = func() time.Time {
		calls++
		if calls >= 2 {
			return start.Add(150 * time.Second)
		}
		return start
	}
	st.sched.tick()
	rec := st.policy("minutely")
	if rec.Runs != 1 || rec.Skipped != 2 {
		t.Errorf("runs %d, skipped %d; want 1 and 2", rec.Runs, rec.Skipped)
	}
	if next := policyDoc(rec).NextRun; !next.Equal(start.Add(3 * time.Minute)) {
		t.Errorf("next run %s, want 08:03", next)
	}
}

// TestWeeklyAcrossDaylightSaving: a daily 02:00 run in Europe/Berlin runs
// once a day across both changes of 2026 (02:00 does not exist on March 29
// and exists twice on October 25).
func TestWeeklyAcrossDaylightSaving(t *testing.T) {
	rec := rowengine.Policy{Kind: kindWeekly, Hours: []int{2}, Weekdays: []int{1, 2, 3, 4, 5, 6, 7}, Timezone: "Europe/Berlin"}
	sched, err := scheduleOf(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, change := range []time.Time{time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC), time.Date(2026, 10, 23, 12, 0, 0, 0, time.UTC)} {
		days := map[string]int{}
		for t0, i := change, 0; i < 4; i++ {
			next, ok := sched.next(t0)
			if !ok {
				t.Fatal("no next run")
			}
			if !next.After(t0) {
				t.Fatalf("next %s is not after %s", next, t0)
			}
			days[next.In(time.UTC).Format("01-02")]++
			t0 = next
		}
		if len(days) != 4 {
			t.Errorf("four runs from %s fall on %v, want four days once each", change, days)
		}
	}
}

func TestCronPolicy(t *testing.T) {
	st := newSchedTest(t, time.Date(2026, 12, 1, 0, 30, 0, 0, time.UTC))
	st.create(api.PolicyRequest{Name: "sixhourly", Cron: "0 */6 * * *", Timezone: "UTC", Volumes: []string{"a"}})
	st.advance(24*time.Hour, 15*time.Minute)
	if rec := st.policy("sixhourly"); rec.Runs != 4 {
		t.Errorf("cron 0 */6 over a day: %d runs, want 4", rec.Runs)
	}
}

// TestPolicyBadInput: each refusal says why and creates nothing.
func TestPolicyBadInput(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		req  api.PolicyRequest
		want string
	}{
		{api.PolicyRequest{Name: "p", Hours: []int{24}, Weekdays: []string{"mon"}}, "hours are 0 to 23"},
		{api.PolicyRequest{Name: "p", Hours: []int{1}, Weekdays: []string{"8"}}, "weekdays are 1 (Monday) to 7"},
		{api.PolicyRequest{Name: "p", Hours: []int{1}, Weekdays: []string{"someday"}}, "weekday \"someday\""},
		{api.PolicyRequest{Name: "p", Hours: []int{1}, Weekdays: []string{"mon"}, RetainDays: "0"}, "1 to 65536, or forever"},
		{api.PolicyRequest{Name: "p", Every: "0m"}, "a minute or more"},
		{api.PolicyRequest{Name: "p", Cron: "61 * * * *"}, "cron expression"},
		{api.PolicyRequest{Name: "p", Every: "1h", Timezone: "Mars/Olympus"}, "IANA zone"},
		{api.PolicyRequest{Name: "p", Every: "1h", Cron: "0 * * * *"}, "give one schedule"},
		{api.PolicyRequest{Name: "p"}, "needs --hours and --weekdays, --every, or --cron"},
		{api.PolicyRequest{Name: "p/q", Every: "1h"}, "policy name"},
	}
	for _, c := range cases {
		_, err := policyFromRequest(c.req, now)
		if !errors.Is(err, rowengine.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an invalid-argument error saying %q", c.req, err, c.want)
		}
	}
	if rec, err := policyFromRequest(api.PolicyRequest{Name: "p", Hours: []int{0}, Weekdays: []string{"Monday", "sun", "3"}, RetainDays: "forever"}, now); err != nil ||
		len(rec.Weekdays) != 3 || rec.Weekdays[0] != 1 || rec.Weekdays[1] != 7 || rec.RetainDays != 0 {
		t.Errorf("weekday names: %+v, %v", rec.Weekdays, err)
	}
}

// TestPolicyOnGroupRunsFreezeHook: a policy run's group snapshot runs the
// group's freeze and thaw hooks around the cut, and records "frozen".
func TestPolicyOnGroupRunsFreezeHook(t *testing.T) {
	st := newSchedTest(t, time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	if _, err := st.pool.CreateGroup("vm", []string{"a", "b"}, rowengine.GroupHooks{}); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(t.TempDir(), "calls")
	if _, err := st.pool.SetGroupHooks("vm", rowengine.GroupHooks{FreezeCmd: "echo freeze >> " + calls, ThawCmd: "echo thaw >> " + calls}); err != nil {
		t.Fatal(err)
	}
	rec, err := policyFromRequest(api.PolicyRequest{Name: "hourly", Every: "1h"}, st.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec.Groups = []string{"vm"}
	if err := st.pool.SavePolicy(rec); err != nil {
		t.Fatal(err)
	}
	st.sched.tick()
	got, _ := os.ReadFile(calls)
	if strings.Join(strings.Fields(string(got)), " ") != "freeze thaw" {
		t.Errorf("hooks ran %q around the policy's group snapshot", got)
	}
	for _, s := range st.own("a", "hourly") {
		if s.Group != "vm" || s.Consistency != "frozen" {
			t.Errorf("a@%s: group %q consistency %q", s.Name, s.Group, s.Consistency)
		}
	}
	if len(st.own("b", "hourly")) != 1 {
		t.Errorf("b has %d of the policy's snapshots", len(st.own("b", "hourly")))
	}
}
