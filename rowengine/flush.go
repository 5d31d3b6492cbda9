package rowengine

import (
	"slices"
	"sync"
)

// Per-volume flushes: a guest's flush makes durable what its volume wrote.
//
// A guest flush (an fsync of the volume's file, an O_DSYNC write) must make
// durable every write to that volume acknowledged before it. It ran
// fdatasync of the pool's data file, which also wrote back every other
// volume's dirty overwrites: on a pool of many VMs one guest's flush waited
// behind its neighbours' data (a volume's first fsync after another volume
// wrote 2 GiB in place took 1.1 s). A write in place queues no map change,
// so each volume keeps the runs of data-file blocks it overwrote since its
// last flush (dirtyRuns, recorded after the pwrite returns and before the
// write is answered), and its flush syncs those and the blocks the pending
// map changes point at, as a background commit does (datasync.go). A
// volume that wrote more than maxDirtyRuns scattered runs since its last
// flush, and a host where ranged sync is unavailable, flush the whole file
// as before.

// maxDirtyRuns bounds the runs a volume records between flushes (16 KiB);
// past it the next flush syncs the whole data file.
const maxDirtyRuns = 1024

// dirtyRuns is what a volume's head overwrote in place since its last
// flush. Its mutex is taken alone by writers and innermost by commits.
type dirtyRuns struct {
	mu       sync.Mutex
	runs     []blockRun
	overflow bool   // more than maxDirtyRuns: the next flush is whole
	taken    uint64 // commits that have taken the runs
	done     uint64 // the newest of those to have succeeded
}

// add records blocks [first, first+count) of the data file as overwritten.
func (d *dirtyRuns) add(first, count uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.overflow {
		return
	}
	if n := len(d.runs); n > 0 {
		last := &d.runs[n-1]
		if first >= last.first && first+count <= last.first+last.count {
			return // the same block again
		}
		if last.first+last.count == first {
			last.count += count
			return
		}
	}
	if len(d.runs) == maxDirtyRuns {
		d.runs = mergeRuns(d.runs, nil) // random overwrites repeat blocks
		if len(d.runs) > maxDirtyRuns/2 {
			d.runs, d.overflow = nil, true
			return
		}
	}
	d.runs = append(d.runs, blockRun{first: first, count: count})
}

// addBytes records the blocks that length bytes at file offset off touch.
func (d *dirtyRuns) addBytes(off, length, blockSize uint64) {
	if length == 0 {
		return
	}
	first := off / blockSize
	d.add(first, (off+length-1)/blockSize-first+1)
}

// take hands the runs to a commit and reports which one it is.
// REQUIRES: mapMu held exclusively (takeFlushRuns).
func (d *dirtyRuns) take() (runs []blockRun, whole bool, gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	runs, whole = d.runs, d.overflow
	d.runs, d.overflow = nil, false
	d.taken++
	return runs, whole, d.taken
}

// restore gives back the runs of a commit that failed.
func (d *dirtyRuns) restore(runs []blockRun, whole bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runs = mergeRuns(d.runs, runs)
	d.overflow = d.overflow || whole || len(d.runs) > maxDirtyRuns
	if d.overflow {
		d.runs = nil
	}
}

// succeeded records that the commit gen made the runs it took durable.
func (d *dirtyRuns) succeeded(gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = max(d.done, gen)
}

// mergeRuns is the runs of a and b sorted and coalesced.
func mergeRuns(a, b []blockRun) []blockRun {
	all := append(slices.Clone(a), b...)
	slices.SortFunc(all, func(x, y blockRun) int {
		switch {
		case x.first < y.first:
			return -1
		case x.first > y.first:
			return 1
		}
		return 0
	})
	var out []blockRun
	for _, r := range all {
		if n := len(out); n > 0 && r.first <= out[n-1].first+out[n-1].count {
			out[n-1].count = max(out[n-1].count, r.first+r.count-out[n-1].first)
			continue
		}
		out = append(out, r)
	}
	return out
}

// flushVolume is the durability barrier of a guest flush on v: when it
// returns, every write to v acknowledged before the call survives a
// crash, and so does every map change queued before it. Like barrier it
// is a group commit: while it waits for commitMu, v is listed as waiting,
// and whichever flush commits next takes the runs of every waiting volume;
// a caller whose turn comes after a whole commit, or after a commit that
// took the pending changes and v's runs after it arrived, returns without
// a commit of its own.
func (p *Pool) flushVolume(v *volume) error {
	p.mapMu.RLock()
	arrived := p.commitsTaken
	v.dirty.mu.Lock()
	arrivedFlush := v.dirty.taken
	v.dirty.mu.Unlock()
	p.mapMu.RUnlock()
	p.flushMu.Lock()
	p.flushWaiting[v]++
	p.flushMu.Unlock()
	defer func() {
		p.flushMu.Lock()
		if p.flushWaiting[v]--; p.flushWaiting[v] == 0 {
			delete(p.flushWaiting, v)
		}
		p.flushMu.Unlock()
	}()

	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	if p.wholeCommitsDone > arrived {
		return nil
	}
	v.dirty.mu.Lock()
	covered := v.dirty.done > arrivedFlush
	v.dirty.mu.Unlock()
	if covered {
		return nil
	}
	return p.commitWith(commitFlush)
}

// takenRuns is what a flush commit took from one volume.
type takenRuns struct {
	vol   *volume
	runs  []blockRun
	whole bool
	gen   uint64
}

// takeFlushRuns takes the runs of every volume with a flush waiting, and
// reports whether one of them needs the whole file synced.
// REQUIRES: mapMu held exclusively.
func (p *Pool) takeFlushRuns() ([]takenRuns, bool) {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	var taken []takenRuns
	all := false
	for v := range p.flushWaiting {
		runs, whole, gen := v.dirty.take()
		taken = append(taken, takenRuns{vol: v, runs: runs, whole: whole, gen: gen})
		all = all || whole
	}
	return taken, all
}

// overwrittenRuns is the runs a flush commit took, from all its volumes.
func overwrittenRuns(taken []takenRuns) []blockRun {
	var runs []blockRun
	for _, t := range taken {
		runs = append(runs, t.runs...)
	}
	return runs
}
