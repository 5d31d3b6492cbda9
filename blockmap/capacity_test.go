package blockmap

import (
	"testing"
	"time"
)

// TestCapacityHistoryBounded: samples read back in order within a range,
// and every append trims to the retention, the per-series bound and the
// live series.
func TestCapacityHistoryBounded(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	live := map[uint64]bool{3: true, 4: true, 9: true}
	const maxPerSeries = 5
	for i := range 12 {
		at := t0.Add(time.Duration(i) * time.Hour)
		var batch []CapacitySample
		for id := range live {
			batch = append(batch, CapacitySample{Series: id, At: at, Head: uint64(i), Snapshots: id, Total: uint64(i) + id})
		}
		if i == 8 {
			delete(live, 9) // the volume was deleted
		}
		if _, err := s.AppendCapacity(batch, t0.Add(3*time.Hour), maxPerSeries, func(id uint64) bool { return live[id] }); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.CapacitySeries(3, t0, t0.Add(100*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != maxPerSeries || got[0].Head != 7 || got[len(got)-1].Head != 11 || got[0].Total != 10 {
		t.Fatalf("series 3 kept %+v, want hours 7..11", got)
	}
	if got, _ := s.CapacitySeries(9, t0, t0.Add(100*time.Hour)); len(got) != 0 {
		t.Fatalf("a deleted volume's series kept %d samples", len(got))
	}
	window, _ := s.CapacitySeries(4, t0.Add(8*time.Hour), t0.Add(9*time.Hour))
	if len(window) != 2 || !window[0].At.Equal(t0.Add(8*time.Hour)) {
		t.Fatalf("window [8h,9h] gave %+v", window)
	}
	if last, err := s.LastCapacitySample(); err != nil || !last.Equal(t0.Add(11*time.Hour)) {
		t.Fatalf("last sample %v, %v", last, err)
	}
	// Retention: a far later append drops everything older than its cut.
	if _, err := s.AppendCapacity([]CapacitySample{{Series: 3, At: t0.Add(1000 * time.Hour)}}, t0.Add(999*time.Hour), maxPerSeries, func(uint64) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.CapacitySeries(3, t0, t0.Add(2000*time.Hour)); len(got) != 1 {
		t.Fatalf("retention kept %d samples of series 3, want 1", len(got))
	}
	if got, _ := s.CapacitySeries(4, t0, t0.Add(2000*time.Hour)); len(got) != 0 {
		t.Fatalf("retention kept %d samples of series 4, want 0", len(got))
	}
}
