package daemon

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// TestCapacityHistoryOnInjectedClock: five days of an hourly sampler on a
// test clock keep only the retention's samples, hourly, with the bytes
// the volume held at each, and the API returns the asked-for range.
func TestCapacityHistoryOnInjectedClock(t *testing.T) {
	clock := &rowengine.TestClock{}
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	clock.Freeze(start)
	pool := rowengine.TestPool(t, rowengine.Options{Now: clock.Now})
	if _, err := pool.CreateVolume("vm1", 64<<20); err != nil {
		t.Fatal(err)
	}
	h, err := pool.OpenVolume("vm1", true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	const retention = 72 * time.Hour
	opts := rowengine.HistoryOptions{Retention: retention}
	sampler := &historySampler{pool: pool, now: clock.Now, interval: time.Hour, opts: opts, log: slog.New(slog.DiscardHandler)}
	block := make([]byte, 64<<10)
	for now := start; now.Before(start.Add(5 * 24 * time.Hour)); now = now.Add(10 * time.Minute) {
		clock.Freeze(now)
		if now.Minute() == 30 && now.Hour()%6 == 0 { // the guest writes a block every 6 hours
			if _, err := h.WriteAt(block, int64(now.Sub(start)/(6*time.Hour))*int64(len(block))); err != nil {
				t.Fatal(err)
			}
		}
		sampler.sampleIfDue()
	}
	end := clock.Now()
	all, err := pool.CapacityHistory("vm1", time.Time{}, end)
	if err != nil {
		t.Fatal(err)
	}
	if want := int(retention/time.Hour) + 1; len(all) != want {
		t.Fatalf("kept %d samples, want %d (72 h of hourly samples)", len(all), want)
	}
	if oldest, newest := all[0].At, all[len(all)-1].At; oldest.Before(newest.Add(-retention)) || end.Sub(newest) >= time.Hour {
		t.Fatalf("samples from %v to %v at %v: older than the retention, or the newest is overdue", oldest, newest, end)
	}
	for i := 1; i < len(all); i++ {
		if gap := all[i].At.Sub(all[i-1].At); gap != time.Hour {
			t.Fatalf("samples %d and %d are %v apart, want 1h", i-1, i, gap)
		}
		if all[i].TotalBytes < all[i-1].TotalBytes {
			t.Fatalf("total bytes fell from %d to %d with only writes", all[i-1].TotalBytes, all[i].TotalBytes)
		}
	}
	last := all[len(all)-1]
	if blocks := uint64(5*24/6) * uint64(len(block)); last.TotalBytes != blocks || last.HeadBytes != blocks {
		t.Fatalf("last sample %+v, want %d bytes written", last, blocks)
	}

	// The API: a day's window, in order.
	srv := &server{pool: pool, log: slog.New(slog.DiscardHandler), historyInterval: time.Hour, historyOpts: opts}
	since, until := end.Add(-24*time.Hour).Format(time.RFC3339), end.Format(time.RFC3339)
	rec := httptest.NewRecorder()
	srv.routes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/volumes/vm1/history?since="+since+"&until="+until, nil))
	var doc api.CapacityHistory
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("history: %d %s (%v)", rec.Code, rec.Body, err)
	}
	if len(doc.Samples) < 24 || len(doc.Samples) > 25 || doc.Interval != "1h0m0s" || doc.Retention != "3d" || doc.Samples[0].Time.Before(end.Add(-24*time.Hour)) {
		t.Fatalf("a day's window gave %d samples from %v (interval %s)", len(doc.Samples), doc.Samples[0].Time, doc.Interval)
	}
	rec = httptest.NewRecorder()
	srv.routes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/volumes/vm1/history?since=yesterday", nil))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("a bad since gave %d", rec.Code)
	}
}
