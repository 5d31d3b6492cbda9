package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// DeletePlan is what a delete removes, computed once: shown by --dry-run
// and executed as computed.
type DeletePlan struct {
	// Point is the point asked for; Points every point that goes (it and,
	// without Only, the points that depend on it), oldest first.
	Point  string   `json:"point"`
	Points []string `json:"points"`
	// Why says, for each other point, why it goes.
	Why map[string]string `json:"why,omitempty"`
}

// PlanDelete plans deleting point id: a full point takes its chain with
// it, an incremental every point built on it; only, just the point
// (every point is self-contained for restore, so the others still are).
// Chunks stay until Collect.
func (r *Repo) PlanDelete(ctx context.Context, id string, only bool) (DeletePlan, error) {
	target, err := r.Point(ctx, id)
	if err != nil {
		return DeletePlan{}, err
	}
	plan := DeletePlan{Point: id, Points: []string{id}, Why: map[string]string{}}
	if only {
		return plan, nil
	}
	all, err := r.Points(ctx)
	if err != nil {
		return plan, err
	}
	going := map[string]bool{id: true}
	for _, m := range all { // oldest first: a parent is seen before its children
		switch {
		case m.ID == id:
		case target.Kind == "full" && m.Chain == target.Chain:
			going[m.ID] = true
			plan.Points = append(plan.Points, m.ID)
			plan.Why[m.ID] = "on the chain of full point " + id
		case m.Parent != "" && going[m.Parent]:
			going[m.ID] = true
			plan.Points = append(plan.Points, m.ID)
			plan.Why[m.ID] = "incremental on " + m.Parent
		}
	}
	return plan, nil
}

// ExecuteDelete removes the plan's points: each manifest first (then the
// point is gone, whole), then its index.
func (r *Repo) ExecuteDelete(ctx context.Context, plan DeletePlan) error {
	for _, id := range slices.Backward(plan.Points) {
		if err := r.target.Delete(ctx, manifestKey(id)); err != nil {
			return fmt.Errorf("delete point %s: %w", id, err)
		}
		if err := r.target.Delete(ctx, indexKey(id)); err != nil {
			return fmt.Errorf("delete index of %s: %w", id, err)
		}
	}
	return nil
}

// Damage is a chunk that verify found missing or corrupt, and what it breaks.
type Damage struct {
	Chunk string `json:"chunk"`
	Error string `json:"error"`
	// Breaks lists each point that needs the chunk and the byte ranges of
	// its volume that cannot be restored.
	Breaks []Broken `json:"breaks"`
}

// Broken is one point's ranges lost to a bad chunk.
type Broken struct {
	Point  string   `json:"point"`
	Volume string   `json:"volume"`
	Ranges []Extent `json:"ranges"`
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Points  int      `json:"points"`
	Chunks  int      `json:"chunks"`
	Bytes   uint64   `json:"bytes"`
	Damaged []Damage `json:"damaged"`
	// Quarantined chunks were moved to quarantine/ so the next backup of
	// the same data uploads them again.
	Quarantined int `json:"quarantined"`
}

// Clean reports no damage.
func (v VerifyReport) Clean() bool { return len(v.Damaged) == 0 }

// Verify reads and checks every chunk of point id (every point if id is
// ""), once each, reporting the points and byte ranges a bad chunk breaks.
// Unless dryRun, bad chunks are moved aside (quarantine/ID), so that the
// next backup that has their data uploads them again.
func (r *Repo) Verify(ctx context.Context, id string, dryRun bool, progress func(done, total int)) (VerifyReport, error) {
	var points []Manifest
	if id != "" {
		m, err := r.Point(ctx, id)
		if err != nil {
			return VerifyReport{}, err
		}
		points = []Manifest{m}
	} else {
		var err error
		if points, err = r.Points(ctx); err != nil {
			return VerifyReport{}, err
		}
	}
	rep := VerifyReport{Points: len(points), Damaged: []Damage{}}
	users := map[ChunkID][]Broken{}
	var order []ChunkID
	for _, m := range points {
		ix, err := r.index(ctx, m)
		if err != nil {
			rep.Damaged = append(rep.Damaged, Damage{Chunk: "index", Error: err.Error(),
				Breaks: []Broken{{Point: m.ID, Volume: m.Volume, Ranges: []Extent{{0, m.Size}}}}})
			continue
		}
		for i, cid := range ix.Chunks {
			if cid.IsZero() {
				continue
			}
			if _, seen := users[cid]; !seen {
				order = append(order, cid)
			}
			users[cid] = appendRange(users[cid], m, Extent{uint64(i) * ChunkSize, uint64(chunkLen(ix.Size, i))})
		}
	}
	for k, cid := range order {
		plain, err := r.readChunk(ctx, cid)
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
			return rep, err // the target failed: not the chunk's fault
		}
		rep.Chunks++
		rep.Bytes += uint64(len(plain))
		if err != nil {
			rep.Damaged = append(rep.Damaged, Damage{Chunk: cid.String(), Error: err.Error(), Breaks: users[cid]})
			if !dryRun && errors.Is(err, ErrCorrupt) {
				if err := r.quarantine(ctx, cid); err != nil {
					return rep, err
				}
				rep.Quarantined++
			}
		}
		if progress != nil {
			progress(k+1, len(order))
		}
	}
	return rep, nil
}

// appendRange adds a range of point m to the list, merging with the
// point's previous range when adjacent.
func appendRange(list []Broken, m Manifest, e Extent) []Broken {
	if n := len(list); n > 0 && list[n-1].Point == m.ID {
		last := &list[n-1].Ranges[len(list[n-1].Ranges)-1]
		if last.Offset+last.Length == e.Offset {
			last.Length += e.Length
			return list
		}
		list[n-1].Ranges = append(list[n-1].Ranges, e)
		return list
	}
	return append(list, Broken{Point: m.ID, Volume: m.Volume, Ranges: []Extent{e}})
}

func (r *Repo) quarantine(ctx context.Context, cid ChunkID) error {
	obj, err := r.target.Get(ctx, chunkKey(cid))
	if err != nil {
		return err
	}
	if err := r.target.Put(ctx, "quarantine/"+cid.String(), obj); err != nil {
		return err
	}
	return r.target.Delete(ctx, chunkKey(cid))
}

// GCPlan is what a collection removes: chunks no point references, and
// indexes left by backups that never finished.
type GCPlan struct {
	Chunks  []string `json:"chunks"`
	Indexes []string `json:"indexes"`
	// Referenced is how many chunks the points keep.
	Referenced int `json:"referenced"`
}

// Collect plans, and unless dryRun executes, a garbage collection. It
// holds the repo exclusively: no backup of this process runs meanwhile,
// so no chunk a backup has found stored (and counts on) is removed.
func (r *Repo) Collect(ctx context.Context, dryRun bool) (GCPlan, error) {
	r.gcMu.Lock()
	defer r.gcMu.Unlock()
	points, err := r.Points(ctx)
	if err != nil {
		return GCPlan{}, err
	}
	keep := map[ChunkID]bool{}
	have := map[string]bool{}
	for _, m := range points {
		ix, err := r.index(ctx, m)
		if err != nil {
			return GCPlan{}, fmt.Errorf("gc refuses to run with a point it cannot read (backup verify says more): %w", err)
		}
		for _, cid := range ix.Chunks {
			keep[cid] = true
		}
		have[m.ID] = true
	}
	plan := GCPlan{Chunks: []string{}, Indexes: []string{}, Referenced: len(keep)}
	keys, err := r.target.List(ctx, "")
	if err != nil {
		return plan, err
	}
	for _, k := range keys {
		if cid, ok := parseChunkKey(k); ok && !keep[cid] {
			plan.Chunks = append(plan.Chunks, k)
		}
		if id, ok := strings.CutSuffix(strings.TrimPrefix(k, "points/"), ".index"); ok && strings.HasPrefix(k, "points/") && !have[id] {
			plan.Indexes = append(plan.Indexes, k)
		}
	}
	if dryRun {
		return plan, nil
	}
	for _, k := range slices.Concat(plan.Indexes, plan.Chunks) {
		if err := r.target.Delete(ctx, k); err != nil {
			return plan, err
		}
	}
	return plan, nil
}
