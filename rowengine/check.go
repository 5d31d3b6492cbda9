package rowengine

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/blockmap"
)

// CheckReport is the checker's verdict, split as qemu-img check splits
// it. Leaks waste space but lose nothing; corruptions mean the metadata
// contradicts itself or the data it points at.
type CheckReport struct {
	Volumes      int
	Nodes        int
	MappedBlocks uint64
	FileBlocks   uint64
	Leaks        []string
	Corruptions  []string
	// Repaired lists what a repair changed; Lost, the data it gave up
	// (each entry names the volume or snapshot and the blocks).
	Repaired []string
	Lost     []string
}

// Clean reports no leaks and no corruptions.
func (r CheckReport) Clean() bool { return len(r.Leaks) == 0 && len(r.Corruptions) == 0 }

// RepairMode says what a check may change.
type RepairMode int

const (
	// RepairNone only reports.
	RepairNone RepairMode = iota
	// RepairLeaks frees leaked space and finishes deleted snapshots whose
	// merge was left undone; it loses nothing.
	RepairLeaks
	// RepairAll also rewrites contradictory metadata (offline only): the
	// report's Lost says which data that gives up.
	RepairAll
)

// ParseRepairMode reads "", "leaks" or "all".
func ParseRepairMode(s string) (RepairMode, error) {
	switch s {
	case "", "none":
		return RepairNone, nil
	case "leaks":
		return RepairLeaks, nil
	case "all":
		return RepairAll, nil
	}
	return RepairNone, fmt.Errorf("%w: repair mode %q: want leaks or all", ErrInvalidArgument, s)
}

// finding is one problem the inspection found, with what repairs it.
type finding struct {
	corruption bool
	msg        string
	lost       string              // data a repair gives up, if any
	fix        func(r *metaRepair) // nil: nothing to rewrite
}

// metaRepair collects the metadata rewrites of an offline repair, applied
// in one transaction.
type metaRepair struct {
	nodes   map[uint64]blockmap.NodeRecord
	maps    []blockmap.MapChange
	newHead []string // volumes that need a new head node
}

// durableMeta is what the inspection reads: every record, and the map
// entries streamed.
type durableMeta struct {
	volumes []blockmap.VolumeRecord
	nodes   []blockmap.NodeRecord
	scan    func(fn func(k blockmap.MapKey, phys uint64, valid uint32) error) error
	// allValid is the valid mask of a whole block of the pool.
	allValid uint32
}

func readDurableMeta(store *blockmap.Store) (durableMeta, error) {
	vols, err := store.Volumes()
	if err != nil {
		return durableMeta{}, err
	}
	nodes, err := store.Nodes()
	if err != nil {
		return durableMeta{}, err
	}
	rec, err := store.Pool()
	if err != nil {
		return durableMeta{}, err
	}
	sectors, _ := sectorGeometry(uint64(rec.BlockSize))
	return durableMeta{volumes: vols, nodes: nodes, scan: store.ScanMappings, allValid: wholeMask(sectors)}, nil
}

// inspection is the result of checking durable metadata against DESIGN
// invariants 1 and 3 and the tree's shape.
type inspection struct {
	findings []finding
	owner    map[uint64]uint64            // phys → owning node
	entries  map[uint64]map[uint64]uint64 // node → index → phys
	valid    map[blockmap.MapKey]uint32   // partly written blocks' valid sectors
	byID     map[uint64]blockmap.NodeRecord
	children map[uint64]int
	mapped   uint64
}

// inspect checks the durable metadata. fileBlocks is the data file's size
// in blocks: entries past it point at data that was never written.
func inspect(m durableMeta, fileBlocks uint64) (*inspection, error) {
	in := &inspection{owner: map[uint64]uint64{}, entries: map[uint64]map[uint64]uint64{},
		valid: map[blockmap.MapKey]uint32{}, byID: map[uint64]blockmap.NodeRecord{}, children: map[uint64]int{}}
	add := func(f finding) { in.findings = append(in.findings, f) }
	for _, n := range m.nodes {
		in.byID[n.ID] = n
		in.children[n.Parent]++
	}
	volByID := map[uint64]blockmap.VolumeRecord{}
	heads := map[uint64]string{}
	for _, v := range m.volumes {
		volByID[v.ID] = v
		head, ok := in.byID[v.Head]
		other, shared := heads[v.Head]
		heads[v.Head] = v.Name
		switch {
		case !ok || head.Volume != v.ID || shared:
			why := "does not exist"
			if shared {
				why = "is also the head of " + other
			} else if ok {
				why = fmt.Sprintf("belongs to volume %d", head.Volume)
			}
			name := v.Name
			add(finding{corruption: true, msg: fmt.Sprintf("volume %q: head node %d %s", v.Name, v.Head, why),
				lost: fmt.Sprintf("volume %q: writes since its newest snapshot (it gets a new head there)", v.Name),
				fix:  func(r *metaRepair) { r.newHead = append(r.newHead, name) }})
		case head.Hidden:
			rec := head
			rec.Hidden = false
			add(finding{corruption: true, msg: fmt.Sprintf("volume %q: head node %d is marked deleted", v.Name, v.Head),
				fix: func(r *metaRepair) { r.nodes[rec.ID] = rec }})
		}
	}
	for _, n := range m.nodes {
		if _, ok := volByID[n.Volume]; !ok && !n.Hidden {
			rec := n
			rec.Hidden = true
			add(finding{corruption: true, msg: fmt.Sprintf("node %d: volume %d does not exist and the node is not marked deleted", n.ID, n.Volume),
				fix: func(r *metaRepair) { r.nodes[rec.ID] = rec }})
		}
		if n.Parent == n.ID {
			in.badParent(n, "is its own parent")
			continue
		}
		seen := map[uint64]bool{n.ID: true}
		for cur := n; cur.Parent != 0; {
			parent, ok := in.byID[cur.Parent]
			if !ok {
				if cur.ID == n.ID {
					in.badParent(n, fmt.Sprintf("parent %d does not exist", n.Parent))
				}
				break
			}
			if seen[parent.ID] {
				if parent.ID == n.ID {
					in.badParent(n, "lies on a cycle of parents")
				}
				break
			}
			seen[parent.ID] = true
			cur = parent
		}
	}
	orphans := map[uint64][]blockmap.MapChange{}
	err := m.scan(func(k blockmap.MapKey, phys uint64, valid uint32) error {
		key := k
		if _, ok := in.byID[k.Node]; !ok {
			orphans[k.Node] = append(orphans[k.Node], blockmap.MapChange{Key: key, Delete: true})
			return nil
		}
		if in.entries[k.Node] == nil {
			in.entries[k.Node] = map[uint64]uint64{}
		}
		in.entries[k.Node][k.Index] = phys
		zero := func(r *metaRepair) {
			r.maps = append(r.maps, blockmap.MapChange{Key: key, Phys: blockmap.ZeroBlock})
		}
		if valid != 0 {
			in.valid[k] = valid
			if valid&^m.allValid != 0 || phys == blockmap.ZeroBlock {
				add(finding{corruption: true, msg: fmt.Sprintf("map entry %d/%d: valid sectors %#x on block %d do not fit a block of %d sectors", k.Node, k.Index, valid, int64(phys), bits.Len32(m.allValid)),
					lost: fmt.Sprintf("%s block %d (reads as zeros)", in.nodeRef(k.Node), k.Index), fix: zero})
				return nil
			}
		}
		if phys == blockmap.ZeroBlock {
			return nil
		}
		if phys >= fileBlocks {
			add(finding{corruption: true, msg: fmt.Sprintf("map entry %d/%d points at block %d, past the data file (%d blocks)", k.Node, k.Index, phys, fileBlocks),
				lost: fmt.Sprintf("%s block %d (reads as zeros)", in.nodeRef(k.Node), k.Index), fix: zero})
			return nil
		}
		if prev, dup := in.owner[phys]; dup {
			add(finding{corruption: true, msg: fmt.Sprintf("physical block %d is owned by node %d and node %d", phys, prev, k.Node),
				lost: fmt.Sprintf("%s block %d (reads as zeros; node %d keeps the data)", in.nodeRef(k.Node), k.Index, prev), fix: zero})
			return nil
		}
		in.owner[phys] = k.Node
		in.mapped++
		return nil
	})
	if err != nil {
		return nil, err
	}
	in.checkPartialBases(add)
	for _, id := range slices.Sorted(maps.Keys(orphans)) {
		drop := orphans[id]
		add(finding{msg: fmt.Sprintf("node %d does not exist but keeps %d map entries", id, len(drop)),
			fix: func(r *metaRepair) { r.maps = append(r.maps, drop...) }})
	}
	return in, nil
}

// checkPartialBases checks the bound on partly written blocks: the block
// their other sectors read from (the parent's view) is a whole one, so a
// read never needs more than two.
func (in *inspection) checkPartialBases(add func(finding)) {
	for _, k := range slices.SortedFunc(maps.Keys(in.valid), func(a, b blockmap.MapKey) int {
		return cmp.Or(cmpUint(a.Node, b.Node), cmpUint(a.Index, b.Index))
	}) {
		seen := map[uint64]bool{}
		for id := in.byID[k.Node].Parent; id != 0 && !seen[id]; id = in.byID[id].Parent {
			seen[id] = true
			if _, ok := in.entries[id][k.Index]; !ok {
				continue
			}
			if in.valid[blockmap.MapKey{Node: id, Index: k.Index}] != 0 {
				key := k
				add(finding{corruption: true, msg: fmt.Sprintf("map entry %d/%d: partly written over node %d's partly written block", k.Node, k.Index, id),
					lost: fmt.Sprintf("%s block %d: the sectors it did not write", in.nodeRef(k.Node), k.Index),
					fix: func(r *metaRepair) {
						r.maps = append(r.maps, blockmap.MapChange{Key: key, Phys: in.entries[key.Node][key.Index]})
					}})
			}
			break
		}
	}
}

// badParent records a node whose parent link is broken; the repair makes
// it a root, so it reads only its own blocks.
func (in *inspection) badParent(n blockmap.NodeRecord, why string) {
	rec := n
	rec.Parent = 0
	in.findings = append(in.findings, finding{corruption: true, msg: fmt.Sprintf("node %d: %s", n.ID, why),
		lost: fmt.Sprintf("%s: every block it inherited (it now reads only its own)", in.nodeRef(n.ID)),
		fix:  func(r *metaRepair) { r.nodes[rec.ID] = rec }})
}

func (in *inspection) nodeRef(id uint64) string {
	n, ok := in.byID[id]
	switch {
	case !ok:
		return fmt.Sprintf("node %d", id)
	case n.Name == "":
		return fmt.Sprintf("node %d (head of volume %d)", id, n.Volume)
	}
	return fmt.Sprintf("node %d (snapshot %q of volume %d)", id, n.Name, n.Volume)
}

// unfinishedDeletes reports deleted nodes that could merge but have not,
// as leaks (a restart or repair finishes them).
func (in *inspection) unfinishedDeletes() {
	for _, n := range in.byID {
		if n.Hidden && in.children[n.ID] < 2 {
			in.findings = append(in.findings, finding{msg: fmt.Sprintf("deleted node %d (%d children) awaits its merge", n.ID, in.children[n.ID])})
		}
	}
}

// strayData finds blocks of the data file that hold data no map entry
// points at (a crash between writing a block and mapping it, or between
// unmapping one and punching it out), as one leak.
func (in *inspection) strayData(data *os.File, blockSize uint64, inUse func(phys uint64) bool) ([]uint64, error) {
	stray, err := strayBlocks(data, blockSize, func(phys uint64) bool {
		_, mapped := in.owner[phys]
		return mapped || inUse != nil && inUse(phys)
	})
	if err == nil && len(stray) > 0 {
		in.findings = append(in.findings, finding{msg: fmt.Sprintf("%d blocks (%d KiB) of the data file hold data no map entry points at",
			len(stray), uint64(len(stray))*blockSize>>10)})
	}
	return stray, err
}

// strayBlocks walks the data extents of the data file (SEEK_DATA and
// SEEK_HOLE) and returns the blocks in them that keep reports unused.
func strayBlocks(data *os.File, blockSize uint64, keep func(phys uint64) bool) ([]uint64, error) {
	st, err := data.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	var stray []uint64
	fd := int(data.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("seek data in pool data file: %w", err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("seek hole in pool data file: %w", err)
		}
		for phys := uint64(start) / blockSize; phys*blockSize < uint64(end); phys++ {
			if !keep(phys) {
				stray = append(stray, phys)
			}
		}
		off = end
	}
	if _, err := data.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return stray, nil
}

func (in *inspection) report(rep *CheckReport) {
	for _, f := range in.findings {
		if f.corruption {
			rep.Corruptions = append(rep.Corruptions, f.msg)
		} else {
			rep.Leaks = append(rep.Leaks, f.msg)
		}
	}
	rep.MappedBlocks = in.mapped
	rep.Nodes = len(in.byID)
	slices.Sort(rep.Leaks)
	slices.Sort(rep.Corruptions)
}

// Check verifies DESIGN invariants 1 and 3 and the tree's shape on the
// durable metadata, and that the in-memory tables and counters agree with
// it; with RepairLeaks it also frees what leaked. It quiesces writers
// that change maps while it runs (in-place overwrites go on).
func (p *Pool) Check() (CheckReport, error) { return p.CheckAndRepair(RepairNone) }

// CheckAndRepair is Check with repairs. A running pool repairs only leaks:
// corruptions need the pool closed (Fsck with RepairAll).
func (p *Pool) CheckAndRepair(mode RepairMode) (CheckReport, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if mode == RepairAll {
		return CheckReport{}, fmt.Errorf("%w: corruptions can be repaired only with the pool closed: stop rowfsd, then run rowctl fsck --pool %s --repair all",
			ErrBusy, p.dir)
	}
	rep, stray, err := p.runCheck()
	if err != nil || mode == RepairNone || rep.Clean() {
		return rep, err
	}
	if len(rep.Corruptions) > 0 {
		return rep, fmt.Errorf("%w: the pool has corruptions; repair them offline (rowctl fsck --pool %s --repair all) before its leaks", ErrCorrupt, p.dir)
	}
	if len(stray) > 0 {
		p.punchHoles(stray)
		rep.Repaired = append(rep.Repaired, fmt.Sprintf("punched %d stray blocks out of the data file", len(stray)))
	}
	if work, _ := pendingWork(p.reapPlan()); work {
		if err := p.reapAll(func(uint64) {}); err != nil {
			return rep, err
		}
		rep.Repaired = append(rep.Repaired, "finished the merges of deleted snapshots")
	}
	after, _, err := p.runCheck()
	after.Repaired = rep.Repaired
	return after, err
}

// runCheck runs the check. REQUIRES: adminMu. It returns the data
// blocks that hold stray data, for a repair to punch.
func (p *Pool) runCheck() (CheckReport, []uint64, error) {
	for i := range p.stripes {
		p.stripes[i].Lock()
	}
	defer func() {
		for i := range p.stripes {
			p.stripes[i].Unlock()
		}
	}()
	if err := p.commit(); err != nil {
		return CheckReport{}, nil, err
	}
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.mapMu.Lock() // exclusive: a consistent cut of memory and metadata
	defer p.mapMu.Unlock()

	var rep CheckReport
	meta, err := readDurableMeta(p.store)
	if err != nil {
		return rep, nil, err
	}
	_, limit := p.alloc.stats()
	rep.FileBlocks = limit
	in, err := inspect(meta, limit)
	if err != nil {
		return rep, nil, err
	}
	busy := p.jobRunning()
	if busy {
		// A running job's half-done work (entries of removed nodes, blocks
		// it has yet to free) is not a leak.
		in.findings = slices.DeleteFunc(in.findings, func(f finding) bool { return !f.corruption })
	} else {
		in.unfinishedDeletes()
	}
	stray, err := in.strayData(p.data, p.blockSize, p.alloc.isUsed)
	if err != nil {
		return rep, nil, err
	}
	for _, f := range p.compareMemory(meta, in, busy) {
		in.findings = append(in.findings, finding{corruption: true, msg: f})
	}
	in.report(&rep)
	rep.Volumes = len(meta.volumes)
	return rep, stray, nil
}

func (p *Pool) jobRunning() bool {
	p.jobsMu.Lock()
	defer p.jobsMu.Unlock()
	for _, j := range p.jobs {
		// External jobs read and write volumes as any client does.
		if j.rec.State == JobRunning && j.rec.Kind != JobBackup && j.rec.Kind != JobRestore {
			return true
		}
	}
	return false
}

// compareMemory checks the in-memory tree, tables, counters and allocator
// against the durable metadata. Caller holds mapMu exclusively.
func (p *Pool) compareMemory(meta durableMeta, in *inspection, busy bool) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, v := range meta.volumes {
		if mem := p.volumes[v.Name]; mem == nil || mem.head.rec.ID != v.Head || mem.rec.Size != v.Size {
			bad("volume %q: in-memory state differs from metadata", v.Name)
		}
	}
	if len(p.volumes) != len(meta.volumes) {
		bad("%d volumes in memory, %d in metadata", len(p.volumes), len(meta.volumes))
	}
	if len(p.nodes) != len(meta.nodes) {
		bad("%d nodes in memory, %d in metadata", len(p.nodes), len(meta.nodes))
	}
	for _, n := range meta.nodes {
		mem := p.nodes[n.ID]
		if mem == nil {
			bad("node %d: in metadata, not in memory", n.ID)
		} else if mem.rec != n || (mem.parent == nil) != (n.Parent == 0) || mem.parent != nil && mem.parent.rec.ID != n.Parent {
			bad("node %d: in-memory record or parent differs from metadata", n.ID)
		}
	}
	recount, unwritten := map[uint64]uint64{}, map[uint64]uint64{}
	for phys, id := range in.owner {
		recount[id]++
		if !p.alloc.isUsed(phys) {
			bad("physical block %d is mapped but the allocator has it free", phys)
		}
	}
	for k, valid := range in.valid {
		if in.entries[k.Node][k.Index] != blockmap.ZeroBlock {
			unwritten[k.Node] += p.unwrittenSectors(valid)
		}
	}
	volOwned, volUnwritten := map[*volume]uint64{}, map[*volume]uint64{}
	volNodes := map[*volume]int{}
	for id, n := range p.nodes {
		if n.vol != nil {
			volOwned[n.vol] += recount[id]
			volUnwritten[n.vol] += unwritten[id]
			volNodes[n.vol]++
			if n.vol.nodes[id] != n {
				bad("node %d: missing from the node index of volume %q", id, n.vol.rec.Name)
			}
		}
		for _, c := range n.children {
			if c.parent != n {
				bad("node %d: child %d points at another parent", id, c.rec.ID)
			}
		}
		if n.owned != recount[id] {
			bad("node %d: counter says %d owned blocks, recount %d", id, n.owned, recount[id])
		}
		if n.unwritten != unwritten[id] {
			bad("node %d: counter says %d unwritten sectors in its partly written blocks, recount %d", id, n.unwritten, unwritten[id])
		}
		if n.table == nil && n.own == nil || isHeadLocked(n) && n.table == nil {
			bad("node %d: neither a resolved table nor its own entries in memory", id)
			continue
		}
		if n.table != nil {
			if msg := p.checkResolutionLocked(n, in.entries[id], in.valid); msg != "" {
				bad("node %d: %s", id, msg)
			}
		}
		own := map[uint64]uint64{}
		ownEachLocked(n, func(index, phys uint64) {
			own[index] = phys
			if mem, durable := ownValidLocked(n, index), in.valid[blockmap.MapKey{Node: id, Index: index}]; mem != durable {
				bad("node %d block %d: valid sectors %#x in memory, %#x in metadata", id, index, mem, durable)
			}
		})
		if !mapsEqual(own, in.entries[id]) {
			bad("node %d: in-memory map (%d entries) differs from metadata (%d entries)", id, len(own), len(in.entries[id]))
		}
		if n.table != nil && n.own != nil {
			tableOwn := map[uint64]uint64{}
			n.table.each(^uint64(0), func(index uint64, e entry) {
				if e.owner == id {
					tableOwn[index] = e.phys
				}
			})
			if !mapsEqual(own, tableOwn) {
				bad("node %d: its table and its own entries disagree", id)
			}
		}
	}
	for _, v := range p.volumes {
		if len(v.nodes) != volNodes[v] {
			bad("volume %q: node index holds %d nodes, %d belong to it", v.rec.Name, len(v.nodes), volNodes[v])
		}
		if v.owned != volOwned[v] {
			bad("volume %q: counter says %d owned blocks, recount %d", v.rec.Name, v.owned, volOwned[v])
		}
		if v.unwritten != volUnwritten[v] {
			bad("volume %q: counter says %d unwritten sectors, recount %d", v.rec.Name, v.unwritten, volUnwritten[v])
		}
	}
	if used, _ := p.alloc.stats(); used != uint64(len(in.owner)) && !busy {
		// With writers quiesced and everything committed, a used block
		// that no entry maps has leaked from the allocator.
		bad("the allocator has %d blocks in use, the maps %d", used, len(in.owner))
	}
	return out
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

// checkResolutionLocked verifies that n's table resolves every block to
// n's own entry where it has one and to its parent's view elsewhere (the
// parent's table, or one built from the own entries above it).
// REQUIRES: mapMu.
func (p *Pool) checkResolutionLocked(n *node, own map[uint64]uint64, valid map[blockmap.MapKey]uint32) string {
	var parent *table
	pages := len(n.table.pages)
	if n.parent != nil {
		parent = p.buildTableLocked(n.parent)
		pages = max(pages, len(parent.pages))
	}
	for pi := range pages {
		var mine, theirs *page
		if pi < len(n.table.pages) {
			mine = n.table.pages[pi]
		}
		if parent != nil && pi < len(parent.pages) {
			theirs = parent.pages[pi]
		}
		if mine == theirs && mine != nil {
			continue // shared, so no own entries in it
		}
		for k := range entriesPerPage {
			i := uint64(pi)<<pageShift + uint64(k)
			want, wantPI := entry{}, partialInfo{}
			var below entry
			if parent != nil {
				below = parent.get(i)
			}
			if phys, ok := own[i]; ok {
				want = entry{phys: phys, owner: n.rec.ID}
				if v := valid[blockmap.MapKey{Node: n.rec.ID, Index: i}]; v != 0 {
					wantPI = partialInfo{valid: v, base: visiblePhys(below)}
				}
			} else if parent != nil {
				want = below
				wantPI, _ = parent.partialAt(i)
			}
			if got := n.table.get(i); got != want {
				return fmt.Sprintf("block %d resolves to %d (owner %d), want %d (owner %d)", i, int64(got.phys), got.owner, int64(want.phys), want.owner)
			}
			if got, _ := n.table.partialAt(i); got != wantPI {
				return fmt.Sprintf("block %d has valid sectors %#x over block %d, want %#x over %d", i, got.valid, int64(got.base), wantPI.valid, int64(wantPI.base))
			}
		}
	}
	return ""
}
