package rowengine

import (
	"fmt"
	"slices"

	"github.com/rowfs/rowfs/blockmap"
)

// mergeBatch bounds how many map entries one merge step moves while it
// holds the map lock, so guest I/O waits at most one step.
const mergeBatch = 4096

// rewriteSubtree replaces old with repl at index in root's view (its
// table and, if compacted, its own entries) and in every descendant table
// that still inherits old there; pi is repl's partial state (sectors.go;
// zero for a whole block). Descendants that shared root's page now share
// its new one; those with their own page are set individually. A
// descendant's partly written block whose base was old's block (a copy-up
// gives root a copy of it) reads its other sectors from repl's.
// Caller holds mapMu exclusively.
func (p *Pool) rewriteSubtree(root *node, index uint64, old, repl entry, pi partialInfo) {
	root.edits++
	if root.own != nil {
		switch {
		case repl.owner == root.rec.ID:
			root.own.set(index, repl.phys)
			root.own.setValid(index, pi.valid)
		case old.owner == root.rec.ID:
			root.own.del(index)
		}
	}
	pageIndex := index >> pageShift
	var oldPage, newPage *page
	if root.table != nil {
		if pageIndex < uint64(len(root.table.pages)) {
			oldPage = root.table.pages[pageIndex]
		}
		root.table.setWith(index, repl, pi)
		if pageIndex < uint64(len(root.table.pages)) {
			newPage = root.table.pages[pageIndex]
		}
	}
	oldBase, newBase := visiblePhys(old), visiblePhys(repl)
	var walk func(n *node)
	walk = func(n *node) {
		for _, d := range n.children {
			if t := d.table; t != nil {
				switch {
				case oldPage != nil && pageIndex < uint64(len(t.pages)) && t.pages[pageIndex] == oldPage:
					t.pages[pageIndex] = newPage
					d.edits++
				case t.get(index) == old:
					t.setWith(index, repl, pi)
					d.edits++
				case oldBase != newBase:
					if dpi, ok := t.partialAt(index); ok && dpi.base == oldBase {
						t.setWith(index, t.get(index), partialInfo{valid: dpi.valid, base: newBase})
						d.edits++
					}
				}
			}
			walk(d)
		}
	}
	walk(root)
}

// detachLocked removes leaf nodes from memory: their pending map changes
// are dropped and the blocks they owned returned, to be released once the
// caller's transaction deleting their records is durable (see purge).
// Caller holds commitMu, so no batch holding their entries is in flight,
// and mapMu exclusively.
func (p *Pool) detachLocked(victims ...*node) (freed []uint64) {
	gone := map[uint64]bool{}
	for _, n := range victims {
		gone[n.rec.ID] = true
		n.removed = true
		delete(p.nodes, n.rec.ID)
		if n.vol != nil {
			delete(n.vol.nodes, n.rec.ID)
		}
		if n.parent != nil {
			n.parent.children = slices.DeleteFunc(n.parent.children, func(c *node) bool { return c == n })
		}
		ownEachLocked(n, func(_, phys uint64) {
			if phys != blockmap.ZeroBlock {
				freed = append(freed, phys)
			}
		})
		p.addOwned(n, -int64(n.owned), 0)
		p.addUnwritten(n, -int64(n.unwritten))
	}
	kept := p.pending[:0]
	for _, c := range p.pending {
		if !gone[c.Key.Node] {
			kept = append(kept, c)
		}
	}
	p.pending = kept
	return freed
}

// purge finishes removing nodes whose records are deleted: their map
// entries go, and once that is durable their blocks are reused. A crash
// before the end leaves entries of missing nodes, which Open removes.
func (p *Pool) purge(ids []uint64, freed []uint64) error {
	for _, id := range ids {
		if err := p.store.DeleteNodeMappings(id); err != nil {
			return err
		}
	}
	p.crashPoint(CrashPurge)
	if err := p.store.Sync(); err != nil {
		return err
	}
	p.reuseFreed(freed)
	return nil
}

// removeLeaf deletes a node without children and frees what it owns.
// REQUIRES: adminMu.
func (p *Pool) removeLeaf(n *node) error {
	p.commitMu.Lock()
	p.mapMu.Lock()
	if len(n.children) > 0 {
		p.mapMu.Unlock()
		p.commitMu.Unlock()
		return fmt.Errorf("%w: node %d has children", ErrBusy, n.rec.ID)
	}
	err := p.store.Update(func(tx *blockmap.Txn) error { return tx.DeleteNode(n.rec.ID) })
	var freed []uint64
	if err == nil {
		freed = p.detachLocked(n)
	}
	p.mapMu.Unlock()
	p.commitMu.Unlock()
	if err != nil {
		return fmt.Errorf("remove node %d: %w", n.rec.ID, err)
	}
	return p.purge([]uint64{n.rec.ID}, freed)
}

// merge folds hidden node s into its only child c. Blocks c still sees
// through s change owner (the map entry moves; no data is copied); blocks c
// has overwritten are freed. Each step is committed before the next, and
// moving an entry from s to c never changes what c reads, so a crash at
// any point leaves a pool whose next Open resumes the merge.
// REQUIRES: adminMu.
func (p *Pool) merge(s, c *node, progress func(blocks uint64)) error {
	// s is deleted: nothing but this merge changes its entries, so they
	// are collected once and moved in batches. Each one moved or dropped
	// leaves s's own entries at once, so that s shows its parent's view
	// there: what c inherits if it discards that block, and the base of
	// what c then writes partly.
	type ownEntry struct{ index, phys uint64 }
	var todo []ownEntry
	p.mapMu.Lock()
	ownOnlyLocked(s)
	ownEachLocked(s, func(index, phys uint64) { todo = append(todo, ownEntry{index, phys}) })
	p.mapMu.Unlock()
	for len(todo) > 0 {
		if err := p.ctx.Err(); err != nil {
			return errInterrupted
		}
		batch := todo[:min(mergeBatch, len(todo))]
		todo = todo[len(batch):]
		// c's partly written blocks over s's read their other sectors
		// from s's: they are made whole before s's go.
		for _, o := range batch {
			if p.ownsPartial(c, o.index) {
				if err := p.fillPartial(c, o.index); err != nil {
					return err
				}
			}
		}
		p.mapMu.Lock()
		var moved uint64
		for _, o := range batch {
			i, e := o.index, entry{phys: o.phys, owner: s.rec.ID}
			if _, owned := ownGetLocked(c, i); owned && ownValidLocked(c, i) != 0 {
				todo = append(todo, o) // written partly since the fill: fill again
				continue
			}
			drop := blockmap.MapChange{Key: blockmap.MapKey{Node: s.rec.ID, Index: i}, Delete: true}
			valid := ownValidLocked(s, i)
			if e.phys != blockmap.ZeroBlock {
				p.addOwned(s, -1, valid)
				moved++
			}
			if resolveLocked(c, i) == e {
				// The move is one atomic pair: a crash between its halves
				// would leave the block with two owners or with none. A
				// partly written block keeps its mask, and its base: c
				// takes s's parent.
				pi := p.partialOfLocked(e, i)
				s.own.del(i)
				p.rewriteSubtree(c, i, e, entry{phys: e.phys, owner: c.rec.ID}, pi)
				p.queueChangeLocked(blockmap.MapChange{Key: blockmap.MapKey{Node: c.rec.ID, Index: i}, Phys: e.phys, Valid: pi.valid, WithNext: true})
				p.queueChangeLocked(drop)
				if e.phys != blockmap.ZeroBlock {
					p.addOwned(c, 1, valid)
				}
				continue
			}
			s.own.del(i)
			p.queueChangeLocked(drop)
			if e.phys != blockmap.ZeroBlock {
				p.quarantine = append(p.quarantine, e.phys)
			}
		}
		p.mapMu.Unlock()
		if err := p.commit(); err != nil {
			return err
		}
		p.crashPoint(CrashMergeStep)
		progress(moved)
	}

	// Every entry of s has moved or gone: c takes s's place in the tree.
	p.commitMu.Lock()
	p.mapMu.Lock()
	crec := c.rec
	crec.Parent = s.rec.Parent
	err := p.store.Update(func(tx *blockmap.Txn) error {
		if err := tx.PutNode(crec); err != nil {
			return err
		}
		return tx.DeleteNode(s.rec.ID)
	})
	if err == nil {
		parent := s.parent
		c.rec = crec
		// s owns nothing now (its entries were moved or freed above).
		p.detachLocked(s)
		c.parent = parent
		if parent != nil {
			parent.children = append(parent.children, c)
		}
	}
	p.mapMu.Unlock()
	p.commitMu.Unlock()
	if err != nil {
		return fmt.Errorf("merge node %d into %d: %w", s.rec.ID, c.rec.ID, err)
	}
	p.crashPoint(CrashMergeReparent)
	return p.purge([]uint64{s.rec.ID}, nil)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ownsPartial reports whether n's own entry at index is partly written.
func (p *Pool) ownsPartial(n *node, index uint64) bool {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	_, owned := ownGetLocked(n, index)
	return owned && ownValidLocked(n, index) != 0
}

// subtree returns n and its descendants, parents before children.
func subtree(n *node) []*node {
	out := []*node{n}
	for i := 0; i < len(out); i++ {
		out = append(out, out[i].children...)
	}
	return out
}

// freeableOnMerge is what merging s into its descendant c would free: the
// blocks c no longer sees, and the sectors the merge fills first in c's
// partly written blocks that read the rest from s's blocks or zero
// markers. REQUIRES: mapMu.
func (p *Pool) freeableOnMerge(s, c *node) mergeFrees {
	var f mergeFrees
	ownEachLocked(s, func(i, phys uint64) {
		sees := resolveLocked(c, i)
		if sees == (entry{phys: phys, owner: s.rec.ID}) {
			return
		}
		if pi := p.partialOfLocked(sees, i); pi.valid != 0 && pi.base == phys {
			f.filled += p.unwrittenSectors(pi.valid) * p.sectorSize
		}
		if phys != blockmap.ZeroBlock {
			f.blocks++
			f.bytes += p.ownedBytes(1, p.unwrittenSectors(ownValidLocked(s, i)))
		}
	})
	return f
}
