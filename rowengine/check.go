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
	for _, n := range nodes {
		if _, ok := volByID[n.Volume]; !ok {
			rep.corrupt("node %d: volume %d does not exist", n.ID, n.Volume)
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
	for id, n := range p.nodes {
		if n.owned != recount[id] {
			rep.corrupt("node %d: counter says %d owned blocks, recount %d", id, n.owned, recount[id])
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
