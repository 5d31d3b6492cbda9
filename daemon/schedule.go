package daemon

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// A schedule is a policy's timetable: the first due time after a moment,
// or ok=false once it has no more (an "every" policy that ran its times).
type schedule interface {
	next(after time.Time) (due time.Time, ok bool)
}

// Policy kinds, as PolicyRecord.Kind stores them.
const (
	kindWeekly = "weekly" // Alibaba: hours × weekdays
	kindEvery  = "every"  // ZStack: every N minutes/hours/days, forever or K times
	taskBackup = "backup" // a policy run makes backup points, not snapshots
	kindCron   = "cron"
)

// scheduleOf validates rec's schedule and returns it.
func scheduleOf(rec rowengine.Policy) (schedule, error) {
	loc := time.Local
	if rec.Timezone != "" {
		var err error
		if loc, err = time.LoadLocation(rec.Timezone); err != nil {
			return nil, fmt.Errorf("%w: timezone %q: not an IANA zone name (like Europe/Berlin)", rowengine.ErrInvalidArgument, rec.Timezone)
		}
	}
	switch rec.Kind {
	case kindWeekly:
		if len(rec.Hours) == 0 || len(rec.Weekdays) == 0 {
			return nil, fmt.Errorf("%w: a weekly policy needs --hours and --weekdays", rowengine.ErrInvalidArgument)
		}
		for _, h := range rec.Hours {
			if h < 0 || h > 23 {
				return nil, fmt.Errorf("%w: hour %d: hours are 0 to 23", rowengine.ErrInvalidArgument, h)
			}
		}
		for _, d := range rec.Weekdays {
			if d < 1 || d > 7 {
				return nil, fmt.Errorf("%w: weekday %d: weekdays are 1 (Monday) to 7 (Sunday), or mon … sun", rowengine.ErrInvalidArgument, d)
			}
		}
		return weekly{hours: sortedSet(rec.Hours), days: sortedSet(rec.Weekdays), loc: loc}, nil
	case kindEvery:
		if rec.Every <= 0 {
			return nil, fmt.Errorf("%w: --every must be a positive period, like 30m, 4h or 1d", rowengine.ErrInvalidArgument)
		}
		if rec.Times < 0 {
			return nil, fmt.Errorf("%w: --times %d: 0 (forever) or more", rowengine.ErrInvalidArgument, rec.Times)
		}
		start := rec.Start
		if start.IsZero() {
			start = rec.Created
		}
		return every{start: start, period: time.Duration(rec.Every) * time.Second, times: rec.Times}, nil
	case kindCron:
		s, err := cron.ParseStandard(rec.Cron)
		if err != nil {
			return nil, fmt.Errorf("%w: cron expression %q: %v", rowengine.ErrInvalidArgument, rec.Cron, err)
		}
		return cronSchedule{s: s, loc: loc}, nil
	}
	return nil, fmt.Errorf("%w: a policy needs --hours and --weekdays, --every, or --cron", rowengine.ErrInvalidArgument)
}

func sortedSet(v []int) []int {
	s := slices.Clone(v)
	slices.Sort(s)
	return slices.Compact(s)
}

// weekly runs at each of hours on each of days (1 Monday … 7 Sunday), in
// loc. Across a daylight-saving change, time.Date moves an hour that does
// not exist forward and picks one of an hour that exists twice, so a run
// is neither skipped nor doubled.
type weekly struct {
	hours, days []int
	loc         *time.Location
}

func (w weekly) next(after time.Time) (time.Time, bool) {
	a := after.In(w.loc)
	for d := 0; d <= 7; d++ {
		day := time.Date(a.Year(), a.Month(), a.Day()+d, 0, 0, 0, 0, w.loc)
		wd := int(day.Weekday())
		if wd == 0 {
			wd = 7
		}
		if !slices.Contains(w.days, wd) {
			continue
		}
		for _, h := range w.hours {
			if t := time.Date(day.Year(), day.Month(), day.Day(), h, 0, 0, 0, w.loc); t.After(after) {
				return t, true
			}
		}
	}
	return time.Time{}, false // unreachable with a valid schedule
}

// every runs at start, start+period, …: times runs, or forever if 0.
type every struct {
	start  time.Time
	period time.Duration
	times  int
}

func (e every) next(after time.Time) (time.Time, bool) {
	i := int64(0)
	if !after.Before(e.start) {
		i = int64(after.Sub(e.start)/e.period) + 1
	}
	if e.times > 0 && i >= int64(e.times) {
		return time.Time{}, false
	}
	return e.start.Add(time.Duration(i) * e.period), true
}

type cronSchedule struct {
	s   cron.Schedule
	loc *time.Location
}

func (c cronSchedule) next(after time.Time) (time.Time, bool) {
	t := c.s.Next(after.In(c.loc))
	return t, !t.IsZero()
}

// policyFromRequest builds a policy record from the API's request,
// validating every field.
func policyFromRequest(req api.PolicyRequest, now time.Time) (rowengine.Policy, error) {
	rec := rowengine.Policy{Name: req.Name, Created: now.UTC(), Hours: req.Hours, Times: req.Times, Cron: req.Cron,
		Timezone: req.Timezone, Keep: req.Keep, Volumes: req.Volumes, Target: req.Target}
	switch req.Task {
	case "", "snapshot":
		if req.Target != "" {
			return rec, fmt.Errorf("%w: --target is for --task backup", rowengine.ErrInvalidArgument)
		}
	case "backup":
		rec.Task = taskBackup
	default:
		return rec, fmt.Errorf("%w: --task %q: snapshot or backup", rowengine.ErrInvalidArgument, req.Task)
	}
	if err := rowengine.ValidateVolumeName(req.Name); err != nil {
		return rec, fmt.Errorf("%w: policy name %q: names are %s", rowengine.ErrInvalidArgument, req.Name, rowengine.NameRule)
	}
	for _, d := range req.Weekdays {
		n, err := parseWeekday(d)
		if err != nil {
			return rec, err
		}
		rec.Weekdays = append(rec.Weekdays, n)
	}
	kinds := 0
	if len(req.Hours) > 0 || len(req.Weekdays) > 0 {
		rec.Kind, kinds = kindWeekly, kinds+1
	}
	if req.Every != "" {
		d, err := parsePeriod(req.Every)
		if err != nil {
			return rec, err
		}
		rec.Kind, rec.Every, kinds = kindEvery, int64(d/time.Second), kinds+1
	}
	if req.Cron != "" {
		rec.Kind, kinds = kindCron, kinds+1
	}
	if kinds > 1 {
		return rec, fmt.Errorf("%w: give one schedule: --hours with --weekdays, --every, or --cron", rowengine.ErrInvalidArgument)
	}
	if req.Start != "" {
		t, err := time.Parse(time.RFC3339, req.Start)
		if err != nil {
			return rec, fmt.Errorf("%w: --start %q: want an RFC 3339 time, like 2026-12-01T02:00:00+01:00", rowengine.ErrInvalidArgument, req.Start)
		}
		rec.Start = t.UTC()
	}
	switch req.RetainDays {
	case "", "forever":
	default:
		n, err := strconv.Atoi(req.RetainDays)
		if err != nil || n < 1 || n > 65536 {
			return rec, fmt.Errorf("%w: --retain-days %q: 1 to 65536, or forever", rowengine.ErrInvalidArgument, req.RetainDays)
		}
		rec.RetainDays = n
	}
	if req.Keep < 0 {
		return rec, fmt.Errorf("%w: --keep %d: 0 (no bound) or more", rowengine.ErrInvalidArgument, req.Keep)
	}
	if _, err := scheduleOf(rec); err != nil {
		return rec, err
	}
	return rec, nil
}

var weekdayNames = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

func parseWeekday(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 7 {
			return 0, fmt.Errorf("%w: weekday %d: weekdays are 1 (Monday) to 7 (Sunday), or mon … sun", rowengine.ErrInvalidArgument, n)
		}
		return n, nil
	}
	l := strings.ToLower(s)
	for i, name := range weekdayNames {
		if len(l) >= 3 && strings.HasPrefix(name, l[:3]) && strings.HasPrefix(strings.ToLower(time.Weekday((i+1)%7).String()), l) {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("%w: weekday %q: 1 to 7, or mon … sun", rowengine.ErrInvalidArgument, s)
}

// parsePeriod reads 30m, 4h, 1d (days are 24 hours), 90s.
func parsePeriod(s string) (time.Duration, error) {
	d, err := api.ParsePeriod(s)
	if err != nil || d < time.Minute {
		return 0, fmt.Errorf("%w: --every %q: a period of a minute or more, like 30m, 4h or 1d", rowengine.ErrInvalidArgument, s)
	}
	return d, nil
}
