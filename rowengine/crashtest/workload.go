package crashtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// Target is what the workload drives. Every call returns when the
// operation has returned to its caller (for jobs: when started).
type Target interface {
	CreateVolume(name string, size uint64) error
	DeleteVolume(name string) error
	// WriteAt writes whole sectors.
	WriteAt(volume string, data []byte, off int64) error
	// WriteAtSync writes whole sectors, durable once it returns (an
	// O_DSYNC write).
	WriteAtSync(volume string, data []byte, off int64) error
	// Discard makes a sector-aligned range read as zeros.
	Discard(volume string, off, length int64) error
	// Sync is fsync on the volume.
	Sync(volume string) error
	Snapshot(volume, name string) error
	// Rollback may force: the workload holds no handle open across calls.
	Rollback(volume, snap string) error
	DeleteSnapshot(volume, snap string) error
	Clone(volume, snap, name string) error
	// Flatten of a volume that shares nothing any more (deleting its
	// origin snapshot merged that into it) succeeds and does nothing.
	Flatten(volume string) error
}

// Config shapes a workload. Zero fields take the defaults noted.
type Config struct {
	Sectors    int // per volume; default 64 (256 KiB)
	MaxVolumes int // default 4
	MaxSnaps   int // per volume; default 6
	// Churn keeps two volumes and only writes, discards, syncs, takes and
	// deletes snapshots: the most block frees and reuses per step.
	Churn bool
}

// Workload runs random operations against a Target and keeps the Model.
type Workload struct {
	T   Target
	M   *Model
	Rnd *rand.Rand
	Cfg Config
	// BeforeOp, if set, sees the model with the operation in flight
	// before each operation starts (a child process saves it there).
	BeforeOp func(m *Model) error
}

func (w *Workload) defaults() {
	if w.Cfg.Sectors == 0 {
		w.Cfg.Sectors = 64
	}
	if w.Cfg.MaxVolumes == 0 {
		w.Cfg.MaxVolumes = 4
	}
	if w.Cfg.MaxSnaps == 0 {
		w.Cfg.MaxSnaps = 6
	}
}

// Step picks one operation, runs it, and updates the model.
func (w *Workload) Step() (*Op, error) {
	w.defaults()
	op := w.pick()
	if err := w.run(op); err != nil {
		return op, fmt.Errorf("step %d, %s: %w", w.M.Steps, op, err)
	}
	w.M.Steps++
	return op, nil
}

func (w *Workload) name(prefix string) string {
	w.M.NextName++
	return fmt.Sprintf("%s%d", prefix, w.M.NextName)
}

func (w *Workload) pick() *Op {
	m, r := w.M, w.Rnd
	vols := sortedKeys(m.Volumes)
	if len(vols) == 0 || w.Cfg.Churn && len(vols) < 2 {
		return &Op{Kind: "create", Target: w.name("v"), Tags: make([]uint64, w.Cfg.Sectors)}
	}
	vol := vols[r.IntN(len(vols))]
	v := m.Volumes[vol]
	snaps := sortedKeys(v.Snapshots)
	for {
		n := r.IntN(100)
		if w.Cfg.Churn && n >= 67 && n < 74 {
			n = 75 // a delete instead of a rollback
		} else if w.Cfg.Churn && n >= 83 {
			continue
		}
		switch {
		case n < 40:
			count := 1 + r.IntN(4)
			first := r.IntN(w.Cfg.Sectors - count + 1)
			op := &Op{Kind: "write", Volume: vol, First: first}
			if n < 10 {
				op.Kind = "write-sync"
			}
			for range count {
				op.Tags = append(op.Tags, m.NextTag)
				m.NextTag++
			}
			return op
		case n < 45:
			count := 1 + r.IntN(8)
			first := r.IntN(w.Cfg.Sectors - count + 1)
			return &Op{Kind: "discard", Volume: vol, First: first, Tags: make([]uint64, count)}
		case n < 55:
			return &Op{Kind: "sync", Volume: vol}
		case n < 67:
			if len(snaps) >= w.Cfg.MaxSnaps {
				return &Op{Kind: "delete-snapshot", Volume: vol, Snap: snaps[r.IntN(len(snaps))]}
			}
			return &Op{Kind: "snapshot", Volume: vol, Snap: w.name("s")}
		case n < 74 && len(snaps) > 0:
			return &Op{Kind: "rollback", Volume: vol, Snap: snaps[r.IntN(len(snaps))]}
		case n < 83 && len(snaps) > 0:
			return &Op{Kind: "delete-snapshot", Volume: vol, Snap: snaps[r.IntN(len(snaps))]}
		case n < 89 && len(snaps) > 0 && len(vols) < w.Cfg.MaxVolumes:
			snap := snaps[r.IntN(len(snaps))]
			return &Op{Kind: "clone", Volume: vol, Snap: snap, Target: w.name("c"), Tags: slices.Clone(v.Snapshots[snap])}
		case n < 94 && v.Clone:
			return &Op{Kind: "flatten", Volume: vol}
		case n < 97 && len(vols) > 1:
			return &Op{Kind: "delete-volume", Volume: vol}
		case n >= 97 && len(vols) < w.Cfg.MaxVolumes:
			return &Op{Kind: "create", Target: w.name("v"), Tags: make([]uint64, w.Cfg.Sectors)}
		}
	}
}

func (w *Workload) run(op *Op) error {
	m := w.M
	v := m.Volumes[op.Volume]
	// Record what the operation may leave before starting it.
	if op.Kind == "write" || op.Kind == "write-sync" || op.Kind == "discard" {
		for i, tag := range op.Tags {
			v.Sectors[op.First+i] = append(v.Sectors[op.First+i], tag)
		}
	}
	m.Inflight = op
	if w.BeforeOp != nil {
		if err := w.BeforeOp(m); err != nil {
			return err
		}
	}
	var err error
	switch op.Kind {
	case "create":
		err = w.T.CreateVolume(op.Target, uint64(w.Cfg.Sectors*SectorSize))
		if err == nil {
			nv := &Volume{Snapshots: map[string][]uint64{}}
			for range w.Cfg.Sectors {
				nv.Sectors = append(nv.Sectors, []uint64{0})
			}
			m.Volumes[op.Target] = nv
		}
	case "write", "write-sync":
		buf := make([]byte, len(op.Tags)*SectorSize)
		for i, tag := range op.Tags {
			Fill(buf[i*SectorSize:(i+1)*SectorSize], tag)
		}
		if op.Kind == "write" {
			err = w.T.WriteAt(op.Volume, buf, int64(op.First*SectorSize))
			break
		}
		if err = w.T.WriteAtSync(op.Volume, buf, int64(op.First*SectorSize)); err == nil {
			for i, tag := range op.Tags { // these sectors are durable now
				v.Sectors[op.First+i] = []uint64{tag}
			}
		}
	case "discard":
		err = w.T.Discard(op.Volume, int64(op.First*SectorSize), int64(len(op.Tags)*SectorSize))
	case "sync":
		if err = w.T.Sync(op.Volume); err == nil {
			v.settle()
		}
	case "snapshot":
		if err = w.T.Snapshot(op.Volume, op.Snap); err == nil {
			v.settle()
			v.Snapshots[op.Snap] = v.newest()
		}
	case "rollback":
		if err = w.T.Rollback(op.Volume, op.Snap); err == nil {
			for i, tag := range v.Snapshots[op.Snap] {
				v.Sectors[i] = []uint64{tag}
			}
		}
	case "delete-snapshot":
		if err = w.T.DeleteSnapshot(op.Volume, op.Snap); err == nil {
			delete(v.Snapshots, op.Snap)
		}
	case "clone":
		if err = w.T.Clone(op.Volume, op.Snap, op.Target); err == nil {
			nv := &Volume{Snapshots: map[string][]uint64{}, Clone: true}
			for _, tag := range op.Tags {
				nv.Sectors = append(nv.Sectors, []uint64{tag})
			}
			m.Volumes[op.Target] = nv
		}
	case "flatten":
		if err = w.T.Flatten(op.Volume); err == nil {
			v.Clone = false
		}
	case "delete-volume":
		if err = w.T.DeleteVolume(op.Volume); err == nil {
			delete(m.Volumes, op.Volume)
		}
	default:
		err = fmt.Errorf("unknown operation %q", op.Kind)
	}
	if err == nil {
		m.Inflight = nil
	}
	return err
}
