package rowengine

// Keeping a snapshot costs its own entries, not a table.
//
// A head keeps a resolved table (table.go): every read is two slice
// indexes whatever the chain depth. A frozen node (a snapshot, hidden or
// not) needs no resolved table to serve I/O, and keeping one per snapshot
// made memory grow with every snapshot (a table page copied for each page
// the next head wrote). So once frozen, a node is compacted: its own
// entries move to an ownMap and its table is dropped. Pages it shared with
// its children stay theirs.
//
// A frozen node gets a table again only while something reads it whole: an
// open snapshot file, a flatten copying into it (pinView … unpinView), or
// a head created under it (rollback, clone), whose table starts as a copy
// of it. Compaction drops tables no one pins. Everything else that needs a
// frozen node's view at one block (merges, discards of a head, the delete
// planner, the checker) resolves it up the chain (resolveLocked).
//
// Invariants: a node has a table, an ownMap, or both; when both, they
// agree (rewriteSubtree keeps them so). A head always has a table.

// isHeadLocked reports whether n is its volume's head. REQUIRES: mapMu.
func isHeadLocked(n *node) bool { return n.vol != nil && n.vol.head == n }

// ownGetLocked is n's own entry at index. REQUIRES: mapMu.
func ownGetLocked(n *node, index uint64) (uint64, bool) {
	if n.own != nil {
		return n.own.get(index)
	}
	e := n.table.get(index)
	return e.phys, e.owner == n.rec.ID
}

// ownEachLocked calls fn for n's own entries in index order. REQUIRES: mapMu.
func ownEachLocked(n *node, fn func(index, phys uint64)) {
	if n.own != nil {
		n.own.each(fn)
		return
	}
	n.table.each(^uint64(0), func(index uint64, e entry) {
		if e.owner == n.rec.ID {
			fn(index, e.phys)
		}
	})
}

// resolveLocked is what n reads at index: the entry of the nearest node
// from n to the root that maps it (the first resolved table on the way
// answers for all above it). REQUIRES: mapMu.
func resolveLocked(n *node, index uint64) entry {
	for a := n; a != nil; a = a.parent {
		if a.table != nil {
			return a.table.get(index)
		}
		if phys, ok := a.own.get(index); ok {
			return entry{phys: phys, owner: a.rec.ID}
		}
	}
	return entry{}
}

// buildTableLocked returns a resolved table of n: its own if it has one,
// else one built from the own entries on its path (on the nearest
// ancestor's table if one has a table). It does not install it.
// REQUIRES: mapMu.
func (p *Pool) buildTableLocked(n *node) *table {
	if n.table != nil {
		return n.table
	}
	var path []*node
	a := n
	for ; a != nil && a.table == nil; a = a.parent {
		path = append(path, a)
	}
	gen := p.nextGen.Add(1)
	t := newTable(gen)
	if a != nil {
		t = a.table.child(gen)
	}
	for i := len(path) - 1; i >= 0; i-- {
		id, own := path[i].rec.ID, path[i].own
		own.each(func(index, phys uint64) {
			var pi partialInfo
			if valid := own.validAt(index); valid != 0 {
				// The base is what the table shows there so far: the parent's view.
				pi = partialInfo{valid: valid, base: visiblePhys(t.get(index))}
			}
			t.setWith(index, entry{phys: phys, owner: id}, pi)
		})
	}
	return t
}

// ownMapOfLocked is n's own map, or one built from its table with the
// valid sectors of its partly written blocks. REQUIRES: mapMu.
func ownMapOfLocked(n *node) *ownMap {
	if n.own != nil {
		return n.own
	}
	m := buildOwnMap(func(fn func(index, phys uint64)) { ownEachLocked(n, fn) })
	n.table.eachPartial(func(index uint64, e entry, pi partialInfo) {
		if e.owner == n.rec.ID {
			m.setValid(index, pi.valid)
		}
	})
	return m
}

// ownOnlyLocked drops n's table, keeping its own entries: a node being
// merged away changes only those, so that what it shows stays its
// parent's view wherever an entry has gone. REQUIRES: mapMu held exclusively.
func ownOnlyLocked(n *node) {
	if n.own == nil {
		n.own = ownMapOfLocked(n)
	}
	n.table = nil
}

// pinViewLocked gives n a resolved table for as long as it is pinned.
// REQUIRES: mapMu held exclusively.
func (p *Pool) pinViewLocked(n *node) {
	if n.table == nil {
		n.table = p.buildTableLocked(n)
	}
	n.views++
}

// unpinViewLocked ends a pin; compaction drops the table once none is left.
// REQUIRES: mapMu held exclusively.
func (p *Pool) unpinViewLocked(n *node) {
	n.views--
	switch {
	case n.views > 0 || isHeadLocked(n):
	case n.own != nil:
		n.table = nil // the own map is current: nothing to extract
	default:
		p.toCompact = append(p.toCompact, n)
	}
}

// compactable reports a frozen node whose table no one needs.
// REQUIRES: mapMu.
func compactable(n *node) bool {
	return n.table != nil && n.views == 0 && !isHeadLocked(n) && !n.removed
}

// compactFrozen drops the tables of frozen nodes no one pins, keeping
// their own entries. The entries are collected under the shared lock (a
// frozen node's table changes only under the exclusive one, which bumps
// its edits) and installed under the exclusive lock only if nothing
// changed meanwhile, so guest I/O never waits for a large table's walk.
//
// Only the nodes frozen since the last pass are looked at (toCompact): a
// walk of every node on every snapshot cost milliseconds a snapshot on a
// pool of 100,000 nodes.
func (p *Pool) compactFrozen() {
	p.mapMu.Lock()
	todo := p.toCompact
	p.toCompact = nil
	p.mapMu.Unlock()
	for _, n := range todo {
		p.mapMu.RLock()
		if !compactable(n) {
			p.mapMu.RUnlock()
			continue
		}
		edits, own := n.edits, n.own
		if own == nil {
			own = ownMapOfLocked(n)
		}
		p.mapMu.RUnlock()
		p.mapMu.Lock()
		switch {
		case compactable(n) && n.edits == edits:
			n.own, n.table = own, nil
		case compactable(n):
			p.toCompact = append(p.toCompact, n) // changed meanwhile: next pass
		}
		p.mapMu.Unlock()
	}
}
