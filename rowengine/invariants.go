package rowengine

import (
	"fmt"

	"github.com/rowfs/rowfs/blockmap"
)

// violatef records a broken invariant. It is reached only when invariantsOn
// (the invariants build tag): library code does not panic, and the tests
// fail on what it recorded.
func (p *Pool) violatef(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.violationsMu.Lock()
	p.violations = append(p.violations, msg)
	p.violationsMu.Unlock()
	p.log.Error("invariant violated", "what", msg)
}

// Violations lists the invariants found broken since Open (always none
// without the invariants build tag).
func (p *Pool) Violations() []string {
	p.violationsMu.Lock()
	defer p.violationsMu.Unlock()
	return append([]string(nil), p.violations...)
}

// checkCountersLocked: counters about to drop (owned blocks by -blocks,
// unwritten sectors by -unwritten) hold at least that, in the node and in
// its volume. REQUIRES: mapMu (exclusive).
func (p *Pool) checkCountersLocked(n *node, blocks, unwritten int64) {
	check := func(what string, nodeValue uint64, volumeValue func(*volume) uint64, delta int64) {
		if delta >= 0 {
			return
		}
		if nodeValue < uint64(-delta) {
			p.violatef("node %s has %d %s and would drop by %d", nodeRef(n), nodeValue, what, -delta)
		}
		if n.vol != nil && volumeValue(n.vol) < uint64(-delta) {
			p.violatef("volume %q has %d %s and would drop by %d", n.vol.rec.Name, volumeValue(n.vol), what, -delta)
		}
	}
	check("owned blocks", n.owned, func(v *volume) uint64 { return v.owned }, blocks)
	check("unwritten sectors", n.unwritten, func(v *volume) uint64 { return v.unwritten }, unwritten)
}

// checkChangeLocked: a queued map change says what the node's table does.
// A mapping must be in the table, owned by the node; a delete from a head
// must leave the head owning nothing there. (A node being merged away
// keeps its stale table: only its entries' moves are checked, on the
// child's side.) REQUIRES: mapMu (exclusive).
func (p *Pool) checkChangeLocked(c blockmap.MapChange) {
	n := p.nodes[c.Key.Node]
	if n == nil || n.table == nil && n.own == nil {
		p.violatef("map change for node %d, which has no map in memory", c.Key.Node)
		return
	}
	phys, owned := ownGetLocked(n, c.Key.Index)
	switch {
	case !c.Delete && (!owned || phys != c.Phys):
		p.violatef("node %s block %d: change maps physical %d, memory says %d (own: %v)", nodeRef(n), c.Key.Index, c.Phys, phys, owned)
	case !c.Delete && ownValidLocked(n, c.Key.Index) != c.Valid:
		p.violatef("node %s block %d: change marks valid sectors %#x, memory says %#x", nodeRef(n), c.Key.Index, c.Valid, ownValidLocked(n, c.Key.Index))
	case c.Delete && isHeadLocked(n) && owned:
		p.violatef("head %s block %d: change deletes it, its table still has it owned (physical %d)", nodeRef(n), c.Key.Index, phys)
	}
}
