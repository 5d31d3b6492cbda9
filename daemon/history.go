package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// historySampler samples every volume's capacity into the pool every
// interval, on an injectable clock. When the last sample was taken is
// read from the pool, so a restart neither doubles a sample nor waits a
// whole interval for the next.
type historySampler struct {
	pool     *rowengine.Pool
	now      func() time.Time
	interval time.Duration
	opts     rowengine.HistoryOptions
	log      *slog.Logger
}

// sampleIfDue takes a sample if the interval has passed since the last
// one and returns when the next is due.
func (h *historySampler) sampleIfDue() time.Time {
	now := h.now().UTC().Truncate(time.Second)
	last, err := h.pool.LastCapacitySample()
	if err != nil {
		h.log.Error("read capacity history", "err", err)
		return now.Add(h.interval)
	}
	if !last.IsZero() && now.Sub(last) < h.interval {
		return last.Add(h.interval)
	}
	if _, err := h.pool.SampleCapacity(now, h.opts); err != nil {
		h.log.Error("sample capacity history", "err", err)
	}
	return now.Add(h.interval)
}

// run samples until ctx ends.
func (h *historySampler) run(ctx context.Context) {
	for {
		wait := max(h.sampleIfDue().Sub(h.now()), time.Second)
		timer := time.NewTimer(min(wait, time.Hour))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

func (s *server) history(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	now := time.Now()
	since, until := time.Unix(0, 0), now.Add(24*time.Hour)
	for key, into := range map[string]*time.Time{"since": &since, "until": &until} {
		if v := q.Get(key); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, api.CodeInvalidArgument, fmt.Sprintf("%s=%q: want an RFC 3339 time", key, v))
				return
			}
			*into = t
		}
	}
	samples, err := s.pool.CapacityHistory(name, since, until)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	doc := api.CapacityHistory{Volume: name, Interval: "off", Retention: api.FormatPeriod(s.historyOpts.Retention), Samples: []api.CapacitySample{}}
	if s.historyInterval > 0 {
		doc.Interval = api.FormatPeriod(s.historyInterval)
	}
	if !until.Before(now) {
		if v, err := s.pool.Volume(name); err == nil {
			doc.Current = &api.CapacitySample{Time: now.UTC(), HeadBytes: v.UsedBytes, SnapshotBytes: v.SnapshotBytes, TotalBytes: v.TotalBytes}
		}
	}
	for _, c := range samples {
		doc.Samples = append(doc.Samples, api.CapacitySample{Time: c.At.UTC(), HeadBytes: c.HeadBytes, SnapshotBytes: c.SnapshotBytes, TotalBytes: c.TotalBytes})
	}
	writeJSON(w, http.StatusOK, doc)
}
