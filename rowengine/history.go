package rowengine

import (
	"fmt"
	"time"

	"github.com/rowfs/rowfs/blockmap"
)

// HistoryOptions bound the capacity history a pool keeps.
type HistoryOptions struct {
	// Retention is how long samples are kept. Default 90 days.
	Retention time.Duration
	// MaxSamples bounds one volume's samples whatever the interval, so a
	// short interval cannot grow the history without end. Default 2,400
	// (90 days of hourly samples, with room to spare).
	MaxSamples int
}

// EnsureDefaults fills zero fields.
func (o *HistoryOptions) EnsureDefaults() {
	if o.Retention <= 0 {
		o.Retention = 90 * 24 * time.Hour
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = 2400
	}
}

// CapacitySample is one point of a volume's capacity history: its head's,
// its snapshots' and its total bytes at a moment.
type CapacitySample struct {
	At                                   time.Time
	HeadBytes, SnapshotBytes, TotalBytes uint64
}

// SampleCapacity records every volume's capacity at at, and trims the
// history to opts (retention, bound per volume, deleted volumes).
// Returns the samples written.
func (p *Pool) SampleCapacity(at time.Time, opts HistoryOptions) (int, error) {
	opts.EnsureDefaults()
	vols := p.Volumes()
	live := make(map[uint64]bool, len(vols))
	samples := make([]blockmap.CapacitySample, 0, len(vols))
	for _, v := range vols {
		live[v.ID] = true
		samples = append(samples, blockmap.CapacitySample{Series: v.ID, At: at, Head: v.UsedBytes, Snapshots: v.SnapshotBytes, Total: v.TotalBytes})
	}
	if _, err := p.store.AppendCapacity(samples, at.Add(-opts.Retention), opts.MaxSamples, func(id uint64) bool { return live[id] }); err != nil {
		return 0, fmt.Errorf("capacity history: %w", err)
	}
	return len(samples), nil
}

// LastCapacitySample is when the newest sample was taken (zero if never).
func (p *Pool) LastCapacitySample() (time.Time, error) { return p.store.LastCapacitySample() }

// CapacityHistory returns a volume's samples from since to until, oldest first.
func (p *Pool) CapacityHistory(volume string, since, until time.Time) ([]CapacitySample, error) {
	info, err := p.Volume(volume)
	if err != nil {
		return nil, err
	}
	recs, err := p.store.CapacitySeries(info.ID, since, until)
	if err != nil {
		return nil, fmt.Errorf("capacity history of %s: %w", volume, err)
	}
	out := make([]CapacitySample, len(recs))
	for i, r := range recs {
		out[i] = CapacitySample{At: r.At, HeadBytes: r.Head, SnapshotBytes: r.Snapshots, TotalBytes: r.Total}
	}
	return out, nil
}
