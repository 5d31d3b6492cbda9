package rowengine

import (
	"fmt"
	"slices"

	"github.com/rowfs/rowfs/blockmap"
)

// CheckReport is the checker's verdict. Leaks waste space but lose nothing;
// corruptions mean metadata contradicts itself or the data it points at.
type CheckReport struct {
	Volumes      int
	Nodes        int
	MappedBlocks uint64
	FileBlocks   uint64
	Leaks        []string
	Corruptions  []string
}

// Clean reports no leaks and no corruptions.
func (r CheckReport) Clean() bool { return len(r.Leaks) == 0 && len(r.Corruptions) == 0 }

func (r *CheckReport) corrupt(format string, args ...any) {
	r.Corruptions = append(r.Corruptions, fmt.Sprintf(format, args...))
}

// Check verifies DESIGN invariants 1 and 3 and the tree's shape on the
// durable metadata, and that the in-memory tables and counters agree with
// it. It commits first and holds writers off while it runs.
func (p *Pool) Check() (CheckReport, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if err := p.commit(); err != nil {
		return CheckReport{}, err
	}
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.mapMu.Lock() // exclusive: a consistent cut of memory and metadata
	defer p.mapMu.Unlock()

	var rep CheckReport
	vols, err := p.store.Volumes()
	if err != nil {
		return rep, err
	}
	nodes, err := p.store.Nodes()
	if err != nil {
		return rep, err
	}
	rep.Volumes, rep.Nodes = len(vols), len(nodes)
	nodeByID := map[uint64]blockmap.NodeRecord{}
	for _, n := range nodes {
		nodeByID[n.ID] = n
	}
	volByID := map[uint64]blockmap.VolumeRecord{}
	for _, v := range vols {
		volByID[v.ID] = v
		head, ok := nodeByID[v.Head]
		switch {
		case !ok:
			rep.corrupt("volume %q: head node %d does not exist", v.Name, v.Head)
		case head.Volume != v.ID:
			rep.corrupt("volume %q: head node %d belongs to volume %d", v.Name, v.Head, head.Volume)
		}
		if mem := p.volumes[v.Name]; mem == nil || mem.head.rec.ID != v.Head || mem.rec.Size != v.Size {
			rep.corrupt("volume %q: in-memory state differs from metadata", v.Name)
		}
	}
	if len(p.volumes) != len(vols) {
		rep.corrupt("%d volumes in memory, %d in metadata", len(p.volumes), len(vols))
	}
	children := map[uint64]int{}
	for _, n := range nodes {
		children[n.Parent]++
	}
	jobRunning := false
	p.jobsMu.Lock()
	for _, j := range p.jobs {
		jobRunning = jobRunning || j.rec.State == JobRunning
	}
	p.jobsMu.Unlock()
	for _, n := range nodes {
		if _, ok := volByID[n.Volume]; !ok && !n.Hidden {
			rep.corrupt("node %d: volume %d does not exist and the node is not hidden", n.ID, n.Volume)
		}
		if n.Hidden && children[n.ID] < 2 && !jobRunning {
			rep.Leaks = append(rep.Leaks, fmt.Sprintf("deleted node %d (%d children) awaits its merge; the next delete or restart finishes it", n.ID, children[n.ID]))
		}
		if mem := p.nodes[n.ID]; mem == nil {
			rep.corrupt("node %d: in metadata, not in memory", n.ID)
		} else if mem.rec != n || (mem.parent == nil) != (n.Parent == 0) || mem.parent != nil && mem.parent.rec.ID != n.Parent {
			rep.corrupt("node %d: in-memory record or parent differs from metadata", n.ID)
		}
		seen := map[uint64]bool{n.ID: true}
		for cur := n; cur.Parent != 0; {
			parent, ok := nodeByID[cur.Parent]
			if !ok {
				rep.corrupt("node %d: parent %d does not exist", cur.ID, cur.Parent)
				break
			}
			if seen[parent.ID] {
				rep.corrupt("node %d: parent chain has a cycle at %d", n.ID, parent.ID)
				break
			}
			seen[parent.ID] = true
			cur = parent
		}
	}

	// Invariant 1: every block free or owned once. Invariant 3: counters.
	owner := map[uint64]uint64{}
	recount := map[uint64]uint64{}
	durable := map[uint64]map[uint64]uint64{} // node → index → phys
	_, limit := p.alloc.stats()
	rep.FileBlocks = limit
	err = p.store.ScanMappings(func(k blockmap.MapKey, phys uint64) error {
		if _, ok := nodeByID[k.Node]; !ok {
			rep.corrupt("map entry %d/%d: node does not exist", k.Node, k.Index)
			return nil
		}
		if durable[k.Node] == nil {
			durable[k.Node] = map[uint64]uint64{}
		}
		durable[k.Node][k.Index] = phys
		if phys == blockmap.ZeroBlock {
			return nil
		}
		rep.MappedBlocks++
		recount[k.Node]++
		if prev, dup := owner[phys]; dup {
			rep.corrupt("physical block %d is owned by node %d and node %d", phys, prev, k.Node)
		}
		owner[phys] = k.Node
		if phys >= limit {
			rep.corrupt("map entry %d/%d points at block %d, past the data file (%d blocks)", k.Node, k.Index, phys, limit)
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	if len(p.nodes) != len(nodes) {
		rep.corrupt("%d nodes in memory, %d in metadata", len(p.nodes), len(nodes))
	}
	volOwned := map[*volume]uint64{}
	for id, n := range p.nodes {
		if n.vol != nil {
			volOwned[n.vol] += recount[id]
		}
		for _, c := range n.children {
			if c.parent != n {
				rep.corrupt("node %d: child %d points at parent %v", id, c.rec.ID, c.parent)
			}
		}
		if n.owned != recount[id] {
			rep.corrupt("node %d: counter says %d owned blocks, recount %d", id, n.owned, recount[id])
		}
		if msg := checkResolution(n, durable[id]); msg != "" {
			rep.corrupt("node %d: %s", id, msg)
		}
		own := map[uint64]uint64{}
		n.table.each(^uint64(0), func(index uint64, e entry) {
			if e.owner == id {
				own[index] = e.phys
			}
		})
		if !mapsEqual(own, durable[id]) {
			rep.corrupt("node %d: in-memory map (%d entries) differs from metadata (%d entries)", id, len(own), len(durable[id]))
		}
	}
	for _, v := range p.volumes {
		if v.owned != volOwned[v] {
			rep.corrupt("volume %q: counter says %d owned blocks, recount %d", v.rec.Name, v.owned, volOwned[v])
		}
	}
	for phys := uint64(0); phys < limit; phys++ {
		_, mapped := owner[phys]
		used := p.alloc.isUsed(phys)
		switch {
		case mapped && !used:
			rep.corrupt("physical block %d is mapped but the allocator has it free", phys)
		case used && !mapped:
			rep.Leaks = append(rep.Leaks, fmt.Sprintf("physical block %d is allocated but mapped by no node", phys))
		}
	}
	slices.Sort(rep.Leaks)
	return rep, nil
}

func mapsEqual(a, b map[uint64]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkResolution verifies that n's table resolves every block to n's own
// entry where it has one and to its parent's resolution elsewhere.
func checkResolution(n *node, own map[uint64]uint64) string {
	pages := len(n.table.pages)
	if n.parent != nil {
		pages = max(pages, len(n.parent.table.pages))
	}
	for pi := range pages {
		var mine, theirs *page
		if pi < len(n.table.pages) {
			mine = n.table.pages[pi]
		}
		if n.parent != nil && pi < len(n.parent.table.pages) {
			theirs = n.parent.table.pages[pi]
		}
		if mine == theirs && mine != nil {
			continue // shared, so no own entries in it
		}
		for k := range entriesPerPage {
			i := uint64(pi)<<pageShift + uint64(k)
			want := entry{}
			if phys, ok := own[i]; ok {
				want = entry{phys: phys, owner: n.rec.ID}
			} else if n.parent != nil {
				want = n.parent.table.get(i)
			}
			if got := n.table.get(i); got != want {
				return fmt.Sprintf("block %d resolves to %d (owner %d), want %d (owner %d)", i, int64(got.phys), got.owner, int64(want.phys), want.owner)
			}
		}
	}
	return ""
}
