package rowengine

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/rowfs/rowfs/blockmap"
)

// Fsck checks, and with mode repairs, the pool in dir while no daemon has
// it open. It needs nothing of the pool but its metadata and data file, so
// it runs on pools that Open refuses. The report is the state after any
// repair, with Repaired and Lost saying what the repair did.
func Fsck(dir string, mode RepairMode, opts Options) (CheckReport, error) {
	opts.EnsureDefaults()
	if _, err := os.Stat(filepath.Join(dir, "meta")); err != nil {
		return CheckReport{}, fmt.Errorf("%w: %s holds no pool (no meta directory)", ErrNotFound, dir)
	}
	rep, needMerge, err := fsckOffline(dir, mode, opts)
	if err != nil || !needMerge {
		return rep, err
	}
	// Finishing deleted snapshots is the engine's work: open the pool,
	// let it merge them, and check again.
	p, err := Open(dir, opts)
	if err != nil {
		return rep, err
	}
	p.adminMu.Lock()
	err = p.reapAll(func(uint64) {})
	p.adminMu.Unlock()
	if err == nil {
		for _, j := range p.Jobs() {
			if _, werr := p.WaitJob(p.ctx, j.ID); werr != nil && !errors.Is(werr, ErrJobFailed) {
				err = werr
			}
		}
	}
	err = errors.Join(err, p.Close())
	if err != nil {
		return rep, err
	}
	done := rep.Repaired
	lost := rep.Lost
	rep, _, err = fsckOffline(dir, RepairNone, opts)
	rep.Repaired = append(done, "finished the merges of deleted snapshots")
	rep.Lost = lost
	return rep, err
}

// fsckOffline checks with the pool locked, applies the repairs it can make
// on raw metadata, and reports whether deleted snapshots still need the
// engine to merge them.
func fsckOffline(dir string, mode RepairMode, opts Options) (CheckReport, bool, error) {
	lock, err := lockPool(dir)
	if err != nil {
		return CheckReport{}, false, err
	}
	defer lock.Close()
	store, err := blockmap.Open(blockmap.Options{Dir: filepath.Join(dir, "meta"), Logger: opts.Logger})
	if err != nil {
		return CheckReport{}, false, err
	}
	defer store.Close()
	prec, err := store.Pool()
	if err != nil {
		return CheckReport{}, false, fmt.Errorf("read pool record: %w", err)
	}
	if err := ValidateBlockSize(prec.BlockSize); err != nil {
		return CheckReport{}, false, fmt.Errorf("%w: pool record: %v", ErrCorrupt, err)
	}
	bs := uint64(prec.BlockSize)
	data, err := os.OpenFile(filepath.Join(dir, "data"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return CheckReport{}, false, fmt.Errorf("open pool data file: %w", err)
	}
	defer data.Close()

	check := func() (CheckReport, *inspection, []uint64, error) {
		var rep CheckReport
		meta, err := readDurableMeta(store)
		if err != nil {
			return rep, nil, nil, err
		}
		st, err := data.Stat()
		if err != nil {
			return rep, nil, nil, err
		}
		rep.FileBlocks = (uint64(st.Size()) + bs - 1) / bs
		in, err := inspect(meta, rep.FileBlocks)
		if err != nil {
			return rep, nil, nil, err
		}
		in.unfinishedDeletes()
		stray, err := in.strayData(data, bs, nil)
		if err != nil {
			return rep, nil, nil, err
		}
		in.report(&rep)
		rep.Volumes = len(meta.volumes)
		return rep, in, stray, nil
	}
	rep, in, stray, err := check()
	if err != nil || mode == RepairNone || rep.Clean() {
		return rep, false, err
	}
	fix := &metaRepair{nodes: map[uint64]blockmap.NodeRecord{}}
	var repaired, lost []string
	for _, f := range in.findings {
		if f.fix == nil || f.corruption && mode != RepairAll {
			continue
		}
		f.fix(fix)
		repaired = append(repaired, f.msg)
		if f.lost != "" {
			lost = append(lost, f.lost)
		}
	}
	if err := fix.apply(store, in, opts); err != nil {
		return rep, false, fmt.Errorf("repair metadata: %w", err)
	}
	if len(stray) > 0 {
		punchBlocks(data, bs, stray, opts.Logger)
		repaired = append(repaired, fmt.Sprintf("punched %d stray blocks out of the data file", len(stray)))
	}
	rep, in, _, err = check()
	rep.Repaired, rep.Lost = repaired, lost
	needMerge := err == nil && len(rep.Corruptions) == 0 && slices.ContainsFunc(in.findings, func(f finding) bool { return !f.corruption })
	return rep, needMerge, err
}

// apply writes the collected repairs in one transaction and syncs.
func (r *metaRepair) apply(store *blockmap.Store, in *inspection, opts Options) error {
	if len(r.nodes) == 0 && len(r.maps) == 0 && len(r.newHead) == 0 {
		return nil
	}
	vols, err := store.Volumes()
	if err != nil {
		return err
	}
	byName := map[string]blockmap.VolumeRecord{}
	for _, v := range vols {
		byName[v.Name] = v
	}
	now := opts.Now().UTC()
	err = store.Update(func(tx *blockmap.Txn) error {
		for _, id := range slices.Sorted(maps.Keys(r.nodes)) {
			if err := tx.PutNode(r.nodes[id]); err != nil {
				return err
			}
		}
		for _, name := range r.newHead {
			v := byName[name]
			id, err := tx.NextID()
			if err != nil {
				return err
			}
			head := blockmap.NodeRecord{ID: id, Volume: v.ID, Parent: newestSnapshot(in, v.ID, r), Created: now}
			if err := tx.PutNode(head); err != nil {
				return err
			}
			v.Head = id
			if err := tx.PutVolume(v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := store.ApplyMapChanges(r.maps); err != nil {
		return err
	}
	return store.Sync()
}

// newestSnapshot is the newest live snapshot of a volume, where a volume
// that lost its head restarts; 0 if it has none.
func newestSnapshot(in *inspection, volume uint64, r *metaRepair) uint64 {
	var best uint64
	for id, n := range in.byID {
		if fixed, ok := r.nodes[id]; ok {
			n = fixed
		}
		if n.Volume == volume && n.Name != "" && !n.Hidden && id > best {
			best = id
		}
	}
	return best
}
