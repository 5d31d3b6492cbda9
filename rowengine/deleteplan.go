package rowengine

import (
	"fmt"
	"slices"
	"strings"
)

// The delete planner: one pure function decides what finishing deleted
// (hidden) nodes does. The dry run of a delete shows its plan, the job's
// totals are the plan's, and the job executes the plan; a resumed job
// derives it again from the durable tree, which is the state the
// interrupted plan left. The rule, in one place: a deleted node without
// children is removed and frees what it owns; one with a single child is
// merged into it (what the child still reads moves to it, the rest is
// freed); one that several children read stays, hidden, until they go.

// planTree is what the planner reads of the snapshot forest.
type planTree struct {
	nodes map[uint64]*planNode
	// freeable(s, c) is what of s c does not read: what a merge of s into
	// c frees. c is a descendant of s.
	freeable func(s, c uint64) mergeFrees
}

// mergeFrees is what merging a node into its child frees: blocks, the
// bytes they take on disk, and the bytes of the child's partly written
// blocks over them that the merge fills first (written, not freed).
type mergeFrees struct {
	blocks, bytes, filled uint64
}

// planNode is one node of a planTree.
type planNode struct {
	id, parent uint64 // parent 0: a root
	ref        string // VOL@SNAP, for messages
	hidden     bool   // deleted, or to be deleted by the plan being made
	owned      uint64 // blocks
	ownedBytes uint64 // what they take on disk (partly written blocks less)
	children   []uint64
}

// StepKind is what a step of a delete plan does to a node.
type StepKind string

const (
	// StepRemove removes a deleted node without children; its blocks are freed.
	StepRemove StepKind = "remove"
	// StepMerge folds a deleted node into its only child: blocks the child
	// reads change owner (no data is copied), the others are freed.
	StepMerge StepKind = "merge"
	// StepKeep leaves a deleted node that several children read, hidden.
	StepKeep StepKind = "keep"
)

// DeleteStep is one step of a delete plan, in the order it runs.
type DeleteStep struct {
	Kind StepKind
	Node uint64
	// Into is the child a merge folds the node into.
	Into uint64
	// Ref names the node (VOL@SNAP); IntoRef the child; Readers, for a
	// kept node, the children that still read it.
	Ref, IntoRef string
	Readers      []string
	// FreedBlocks go back to the pool; MovedBlocks change owner.
	FreedBlocks, MovedBlocks uint64
	// FreedBytes and MovedBytes are what those take on disk (a partly
	// written block only its sectors); FilledBytes, what a merge writes
	// first into the child's partly written blocks that read from them.
	FreedBytes, MovedBytes, FilledBytes uint64
}

func (s DeleteStep) String() string {
	switch s.Kind {
	case StepRemove:
		return fmt.Sprintf("remove %s: frees %d blocks", s.Ref, s.FreedBlocks)
	case StepMerge:
		return fmt.Sprintf("merge %s into %s: frees %d blocks, moves %d", s.Ref, s.IntoRef, s.FreedBlocks, s.MovedBlocks)
	default:
		return fmt.Sprintf("keep %s hidden: still read by %s", s.Ref, strings.Join(s.Readers, ", "))
	}
}

// planReap returns the steps that finish every deleted node of t that can
// be finished, as executing them in order would find the tree: a removal
// can leave its parent a leaf or with one child, and a merge hands the
// child its parent's place. It passes over the deleted nodes, children
// before parents, until a pass changes nothing; the deleted nodes left
// are kept, each once, with the children that still read them.
func planReap(t planTree) []DeleteStep {
	parent := map[uint64]uint64{}
	children := map[uint64][]uint64{}
	var hidden []uint64
	for id, n := range t.nodes {
		parent[id] = n.parent
		children[id] = slices.Clone(n.children)
		if n.hidden {
			hidden = append(hidden, id)
		}
	}
	// Children have larger ids than their parents (merges keep it so).
	slices.SortFunc(hidden, func(a, b uint64) int { return cmpUint(b, a) })
	ref := func(id uint64) string { return t.nodes[id].ref }
	owned, ownedBytes := map[uint64]uint64{}, map[uint64]uint64{}
	for id, n := range t.nodes {
		owned[id], ownedBytes[id] = n.owned, n.ownedBytes
	}
	gone := map[uint64]bool{}
	var steps []DeleteStep
	for changed := true; changed; {
		changed = false
		for _, n := range hidden {
			if gone[n] || len(children[n]) > 1 {
				continue
			}
			gone[n], changed = true, true
			up := parent[n]
			if len(children[n]) == 0 {
				steps = append(steps, DeleteStep{Kind: StepRemove, Node: n, Ref: ref(n), FreedBlocks: owned[n], FreedBytes: ownedBytes[n]})
				children[up] = slices.DeleteFunc(children[up], func(c uint64) bool { return c == n })
				continue
			}
			c := children[n][0]
			// c's own freeable count is never needed after this: c is
			// visible, or kept (it had all its children when its turn
			// came, children going first), and a kept node's children do
			// not change later in the plan.
			f := t.freeable(n, c)
			freed, freedBytes := min(f.blocks, owned[n]), min(f.bytes, ownedBytes[n])
			steps = append(steps, DeleteStep{Kind: StepMerge, Node: n, Into: c, Ref: ref(n), IntoRef: ref(c),
				FreedBlocks: freed, MovedBlocks: owned[n] - freed,
				FreedBytes: freedBytes, MovedBytes: ownedBytes[n] - freedBytes, FilledBytes: f.filled})
			owned[c] += owned[n] - freed
			ownedBytes[c] += ownedBytes[n] - freedBytes + f.filled
			parent[c] = up
			if i := slices.Index(children[up], n); i >= 0 {
				children[up][i] = c
			}
		}
	}
	for _, n := range hidden {
		if gone[n] {
			continue
		}
		readers := make([]string, len(children[n]))
		for i, c := range children[n] {
			readers[i] = ref(c)
		}
		slices.Sort(readers)
		steps = append(steps, DeleteStep{Kind: StepKeep, Node: n, Ref: ref(n), Readers: readers})
	}
	return steps
}

// planTreeLocked describes the forest for the planner, with extra nodes
// counted as deleted (a delete's targets, before they are hidden).
// REQUIRES: mapMu (shared is enough); the freeable function it returns
// reads the tables, so the plan must be made under the same hold.
func (p *Pool) planTreeLocked(extra []*node) planTree {
	t := planTree{nodes: make(map[uint64]*planNode, len(p.nodes))}
	for id, n := range p.nodes {
		pn := &planNode{id: id, ref: p.describeNodeLocked(n), hidden: n.rec.Hidden, owned: n.owned, ownedBytes: p.ownedBytes(n.owned, n.unwritten)}
		if n.parent != nil {
			pn.parent = n.parent.rec.ID
		}
		for _, c := range n.children {
			pn.children = append(pn.children, c.rec.ID)
		}
		t.nodes[id] = pn
	}
	for _, n := range extra {
		t.nodes[n.rec.ID].hidden = true
	}
	t.freeable = func(s, c uint64) mergeFrees { return p.freeableOnMerge(p.nodes[s], p.nodes[c]) }
	return t
}

// describeNodeLocked names a node for a plan: "the head of volume X" or
// VOL@SNAP. REQUIRES: mapMu.
func (p *Pool) describeNodeLocked(n *node) string {
	if n.vol != nil && n.vol.head == n {
		return "the head of volume " + n.vol.rec.Name
	}
	return nodeRef(n)
}

// summarize turns the steps into what a delete reports: the bytes freed
// and moved, and the targets kept hidden (a kept node elsewhere in the
// forest is not this delete's news).
func summarize(steps []DeleteStep, targets []*node) DeletePlan {
	plan := DeletePlan{Steps: steps}
	isTarget := map[uint64]bool{}
	for _, n := range targets {
		isTarget[n.rec.ID] = true
		if n.rec.Name != "" && !n.rec.Hidden && !(n.vol != nil && n.vol.head == n) {
			plan.Deleted = append(plan.Deleted, n.rec.Name)
		}
	}
	for _, s := range steps {
		plan.FreedBytes += s.FreedBytes
		plan.MovedBytes += s.MovedBytes
		plan.FilledBytes += s.FilledBytes
		if s.Kind == StepKeep && isTarget[s.Node] {
			plan.KeptHidden = append(plan.KeptHidden, fmt.Sprintf("%s: still read by %s", s.Ref, strings.Join(s.Readers, ", ")))
		}
	}
	return plan
}

// planDeleteLocked is the plan of deleting targets: hiding them and
// finishing what that allows. REQUIRES: mapMu.
func (p *Pool) planDeleteLocked(targets []*node) DeletePlan {
	return summarize(planReap(p.planTreeLocked(targets)), targets)
}

// reapPlan is the plan of finishing what is deleted now: what a delete or
// rollback job executes, and what a resumed one derives again.
func (p *Pool) reapPlan() []DeleteStep {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	return planReap(p.planTreeLocked(nil))
}

// pending reports steps that change something (not only keeps).
func pendingWork(steps []DeleteStep) (work bool, blocks uint64) {
	for _, s := range steps {
		if s.Kind != StepKeep {
			work = true
			blocks += s.FreedBlocks + s.MovedBlocks
		}
	}
	return work, blocks
}

// reapAll executes the reap plan, step by step. Each step is the durable
// unit (a removal, or a merge whose own steps are committed), so a crash
// leaves a tree from which reapPlan derives the rest. REQUIRES: adminMu.
func (p *Pool) reapAll(progress func(blocks uint64)) error {
	for _, s := range p.reapPlan() {
		if err := p.execute(s, progress); err != nil {
			return err
		}
	}
	return nil
}

// execute runs one step on the tree the plan was made from (adminMu has
// kept it so since); it refuses a step whose node is not as planned.
func (p *Pool) execute(s DeleteStep, progress func(blocks uint64)) error {
	if s.Kind == StepKeep {
		return nil
	}
	p.mapMu.RLock()
	n, c := p.nodes[s.Node], p.nodes[s.Into]
	ok := n != nil && n.rec.Hidden
	if s.Kind == StepMerge {
		ok = ok && c != nil && len(n.children) == 1 && n.children[0] == c
	}
	p.mapMu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: delete plan step %q no longer matches the tree", ErrCorrupt, s)
	}
	if s.Kind == StepRemove {
		if err := p.removeLeaf(n); err != nil {
			return err
		}
		progress(s.FreedBlocks)
		return nil
	}
	return p.merge(n, c, func(blocks uint64) { progress(blocks) })
}
