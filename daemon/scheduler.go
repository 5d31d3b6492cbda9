package daemon

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// scheduler runs the pool's snapshot policies when they are due, on an
// injectable clock. Each policy's last handled due time is persisted with
// it, so after downtime a policy that missed runs runs once (never once
// per missed run), and due times that pass while a run is still going are
// skipped (counted and logged), not run late.
//
// Concurrency: one goroutine (run) ticks; runMu serialises a tick with a
// run asked for through the API, so one policy never runs twice at once.
type scheduler struct {
	pool  *rowengine.Pool
	now   func() time.Time
	log   *slog.Logger
	wake  chan struct{}
	runMu sync.Mutex
	// ran, if set, is told of every run (the metrics count them).
	ran func(policy string, run rowengine.PolicyRun)
	// backups runs the runs of backup policies.
	backups *backups
}

// maxCatchUp bounds the due times a tick steps over after a long downtime
// (a minutely policy down for a year is half a million).
const maxCatchUp = 1 << 20

func newScheduler(pool *rowengine.Pool, now func() time.Time, log *slog.Logger) *scheduler {
	return &scheduler{pool: pool, now: now, log: log, wake: make(chan struct{}, 1)}
}

// run ticks until ctx ends: at the next due time, at least every minute,
// and when a policy changes (poke).
func (s *scheduler) run(ctx context.Context) {
	for {
		next := s.tick()
		wait := time.Minute
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(s.now()), 0))
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// poke makes the loop look at the policies again (one was created or changed).
func (s *scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// tick runs every policy that is due and returns the earliest next due time.
func (s *scheduler) tick() time.Time {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	recs, err := s.pool.Policies()
	if err != nil {
		s.log.Error("read policies", "err", err)
		return time.Time{}
	}
	var earliest time.Time
	for _, rec := range recs {
		if rec.Paused {
			continue
		}
		sched, err := scheduleOf(rec)
		if err != nil {
			s.log.Error("policy has a bad schedule; it does not run", "policy", rec.Name, "err", err)
			continue
		}
		now := s.now()
		due, ok := sched.next(handledUntil(rec))
		if !ok {
			continue // done
		}
		if due.After(now) {
			if earliest.IsZero() || due.Before(earliest) {
				earliest = due
			}
			continue
		}
		if missed := countDue(sched, due, now) - 1; missed > 0 {
			s.log.Warn("policy missed runs while the daemon was down; running it once", "policy", rec.Name, "missed", missed)
		}
		rec, _ = s.runLocked(rec, sched, now)
		if next, ok := sched.next(rec.LastDue); ok && (earliest.IsZero() || next.Before(earliest)) {
			earliest = next
		}
	}
	return earliest
}

// handledUntil is the moment after which a policy's due times are still
// to handle: its last handled due time, or just before it was created.
func handledUntil(rec rowengine.Policy) time.Time {
	if !rec.LastDue.IsZero() {
		return rec.LastDue
	}
	return rec.Created.Add(-time.Nanosecond)
}

// countDue counts the due times from first up to and including until.
func countDue(sched schedule, first, until time.Time) int {
	n := 0
	for t, ok := first, true; ok && !t.After(until) && n < maxCatchUp; t, ok = sched.next(t) {
		n++
	}
	return n
}

// latestDue is the last due time at or before until (zero if none after from).
func latestDue(sched schedule, from, until time.Time) time.Time {
	var last time.Time
	n := 0
	for t, ok := sched.next(from); ok && !t.After(until) && n < maxCatchUp; t, ok = sched.next(t) {
		last = t
		n++
	}
	return last
}

// runLocked runs rec at now and records the run: the due times up to the
// run's end are handled (those that passed while it ran are skipped).
// REQUIRES: s.runMu.
func (s *scheduler) runLocked(rec rowengine.Policy, sched schedule, now time.Time) (rowengine.Policy, rowengine.PolicyRun) {
	run := s.runPolicy(rec, now)
	end := s.now()
	if fresh, err := s.pool.Policy(rec.Name); err == nil {
		rec = fresh // apply/remove/pause may have changed it meanwhile
	} else {
		return rec, run // deleted while it ran
	}
	if last := latestDue(sched, handledUntil(rec), now); !last.IsZero() {
		rec.LastDue = last
	}
	if overrun := latestDue(sched, rec.LastDue, end); !overrun.IsZero() {
		skipped := countDue(sched, mustNext(sched, rec.LastDue), overrun)
		rec.Skipped += skipped
		rec.LastDue = overrun
		s.log.Warn("policy run overran its next due time; skipped", "policy", rec.Name, "skipped", skipped)
	}
	rec = s.recordRun(rec, run, now)
	if err := s.pool.RecordPolicy(rec); err != nil {
		s.log.Error("record policy run", "policy", rec.Name, "err", err)
	}
	if len(run.Errors) > 0 {
		s.log.Error("policy run failed on some volumes", "policy", rec.Name, "errors", strings.Join(run.Errors, "; "))
	}
	return rec, run
}

// runPolicy runs one policy once: snapshots (the engine), or backups.
func (s *scheduler) runPolicy(rec rowengine.Policy, now time.Time) rowengine.PolicyRun {
	if rec.Task == taskBackup {
		if s.backups == nil {
			return rowengine.PolicyRun{Errors: []string{"backups are not available"}}
		}
		return s.backups.runPolicy(rec, now)
	}
	return s.pool.RunPolicy(rec, now, s.groupSnapshotter())
}

// groupSnapshotter takes a policy's group snapshots with the group's
// freeze hook, as the API does.
func (s *scheduler) groupSnapshotter() rowengine.GroupSnapshotter {
	return func(group string, opts rowengine.SnapshotOptions) ([]rowengine.SnapshotInfo, error) {
		infos, _, note, err := frozenGroupSnapshot(s.pool, s.log, 0, group, "", opts)
		if note != "" {
			s.log.Warn("policy group snapshot", "group", group, "note", note)
		}
		return infos, err
	}
}

func mustNext(sched schedule, after time.Time) time.Time {
	t, _ := sched.next(after)
	return t
}

// runNow runs a policy at once (rowctl policy run); its schedule goes on.
func (s *scheduler) runNow(name string) (rowengine.Policy, rowengine.PolicyRun, error) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	rec, err := s.pool.Policy(name)
	if err != nil {
		return rec, rowengine.PolicyRun{}, err
	}
	run := s.runPolicy(rec, s.now())
	if fresh, err := s.pool.Policy(name); err == nil {
		rec = fresh
	}
	rec = s.recordRun(rec, run, s.now())
	return rec, run, s.pool.RecordPolicy(rec)
}

// recordRun notes a run in its policy's record (and the metrics).
func (s *scheduler) recordRun(rec rowengine.Policy, run rowengine.PolicyRun, at time.Time) rowengine.Policy {
	rec.Runs++
	rec.LastRun = at.UTC()
	rec.LastResult = run.Result()
	if len(run.Errors) == 0 {
		rec.LastSuccess = rec.LastRun
	}
	if s.ran != nil {
		s.ran(rec.Name, run)
	}
	return rec
}

// policyDoc describes a policy for the API, with its next run.
func policyDoc(rec rowengine.Policy) api.Policy {
	doc := api.Policy{Name: rec.Name, Kind: rec.Kind, Task: cmp.Or(rec.Task, "snapshot"), Target: rec.Target, Timezone: rec.Timezone, Keep: rec.Keep, RetainDays: rec.RetainDays,
		Volumes: rec.Volumes, Groups: rec.Groups, State: "active", LastRun: rec.LastRun, LastResult: rec.LastResult, LastSuccess: rec.LastSuccess, Runs: rec.Runs, Skipped: rec.Skipped}
	if doc.Timezone == "" {
		doc.Timezone = time.Local.String()
	}
	switch rec.Kind {
	case kindWeekly:
		days := make([]string, len(rec.Weekdays))
		for i, d := range sortedSet(rec.Weekdays) {
			days[i] = weekdayNames[d-1]
		}
		hours := make([]string, len(rec.Hours))
		for i, h := range sortedSet(rec.Hours) {
			hours[i] = fmt.Sprintf("%02d:00", h)
		}
		doc.Schedule = strings.Join(days, ",") + " at " + strings.Join(hours, ",")
	case kindEvery:
		doc.Schedule = "every " + (time.Duration(rec.Every) * time.Second).String()
		if rec.Times > 0 {
			doc.Schedule += fmt.Sprintf(", %d times", rec.Times)
		}
	case kindCron:
		doc.Schedule = "cron " + rec.Cron
	}
	sched, err := scheduleOf(rec)
	switch {
	case err != nil:
		doc.State = "invalid: " + err.Error()
	case rec.Paused:
		doc.State = "paused"
	default:
		if next, ok := sched.next(handledUntil(rec)); ok {
			doc.NextRun = next.UTC()
		} else {
			doc.State = "done"
		}
	}
	if doc.Volumes == nil {
		doc.Volumes = []string{}
	}
	return doc
}

// changeVolumes adds (apply) or drops (remove) volumes and groups of a policy.
func changeVolumes(rec rowengine.Policy, vols, groups []string, add bool) rowengine.Policy {
	change := func(have, names []string) []string {
		if add {
			return append(slices.Clone(have), names...)
		}
		return slices.DeleteFunc(slices.Clone(have), func(v string) bool { return slices.Contains(names, v) })
	}
	rec.Volumes, rec.Groups = change(rec.Volumes, vols), change(rec.Groups, groups)
	return rec
}
