package rowengine

import (
	"maps"
	"slices"
)

// ownMap is a frozen node's own map entries, all it keeps in memory once
// compacted (frozen.go). Keeping a snapshot must cost about its entries
// and no more, so they sit in two flat sorted slices, 12 bytes an entry
// (a volume has at most 2^32 blocks: 16 TiB of 4 KiB blocks), where a
// resolved table costs 16 bytes for every block of the volume and a map
// of small per-page slices cost ~80 (measured: bench section keep).
// Changes (merges move entries in and out) go to a small pending map,
// folded into the slices once it holds a sixteenth of them, so a change
// costs O(1) amortised and the map stays a small share of the memory.
type ownMap struct {
	index []uint32 // sorted
	phys  []uint64 // phys[i] is index[i]'s
	// valid[i] is index[i]'s valid sectors when its block is partly
	// written (sectors.go), 0 when whole; nil while no entry is partial,
	// so that only nodes with partly written blocks pay its 4 bytes an
	// entry.
	valid []uint32
	// pending overrides the slices: a physical block, or ownDeleted.
	pending map[uint32]pendingEntry
	count   int
}

type pendingEntry struct {
	phys  uint64
	valid uint32
}

// ownDeleted marks a pending delete; no data file has that many blocks,
// and it is not blockmap.ZeroBlock (^0), which an entry may map.
const ownDeleted = ^uint64(0) - 1

// buildOwnMap makes an ownMap from entries each gives in index order. It
// walks them twice, to count and then to fill slices of exactly their
// size: growing them by append would leave a quarter or more unused, and
// a snapshot of a full volume has millions of entries.
func buildOwnMap(each func(fn func(index, phys uint64))) *ownMap {
	n := 0
	each(func(uint64, uint64) { n++ })
	m := &ownMap{index: make([]uint32, 0, n), phys: make([]uint64, 0, n)}
	each(func(index, phys uint64) {
		if len(m.index) < n { // the callers hold mapMu over both walks: a guard only
			m.index = append(m.index, uint32(index))
			m.phys = append(m.phys, phys)
		}
	})
	m.count = len(m.index)
	return m
}

func (m *ownMap) base(index uint32) (int, bool) { return slices.BinarySearch(m.index, index) }

func (m *ownMap) get(index uint64) (uint64, bool) {
	if pe, ok := m.pending[uint32(index)]; ok {
		return pe.phys, pe.phys != ownDeleted
	}
	if i, ok := m.base(uint32(index)); ok {
		return m.phys[i], true
	}
	return 0, false
}

// validAt is index's valid sectors; 0 for a whole block or none.
func (m *ownMap) validAt(index uint64) uint32 {
	if pe, ok := m.pending[uint32(index)]; ok {
		return pe.valid
	}
	if i, ok := m.base(uint32(index)); ok && m.valid != nil {
		return m.valid[i]
	}
	return 0
}

// setValid records the valid sectors (0: the whole block) of index's
// entry, which must exist.
func (m *ownMap) setValid(index uint64, valid uint32) {
	if pe, ok := m.pending[uint32(index)]; ok {
		if pe.phys != ownDeleted {
			pe.valid = valid
			m.pending[uint32(index)] = pe
		}
		return
	}
	i, ok := m.base(uint32(index))
	switch {
	case !ok:
	case m.valid != nil:
		m.valid[i] = valid
	case valid != 0:
		m.valid = make([]uint32, len(m.index))
		m.valid[i] = valid
	}
}

// set maps index to a whole block; setValid then marks it partly written.
func (m *ownMap) set(index, phys uint64) {
	if _, ok := m.get(index); !ok {
		m.count++
	}
	if i, ok := m.base(uint32(index)); ok {
		m.phys[i] = phys // in place: no pending entry needed
		if m.valid != nil {
			m.valid[i] = 0
		}
		delete(m.pending, uint32(index))
		return
	}
	m.change(uint32(index), pendingEntry{phys: phys})
}

func (m *ownMap) del(index uint64) {
	if _, ok := m.get(index); !ok {
		return
	}
	m.count--
	if _, ok := m.base(uint32(index)); ok {
		m.change(uint32(index), pendingEntry{phys: ownDeleted})
	} else {
		delete(m.pending, uint32(index))
	}
}

func (m *ownMap) change(index uint32, pe pendingEntry) {
	if m.pending == nil {
		m.pending = map[uint32]pendingEntry{}
	}
	m.pending[index] = pe
	if len(m.pending) > max(64, len(m.index)/16) {
		m.fold()
	}
}

// fold writes the pending changes into new slices of exactly the size needed.
func (m *ownMap) fold() {
	index, phys := make([]uint32, 0, m.count), make([]uint64, 0, m.count)
	var valid []uint32
	m.merged(func(i uint32, pe pendingEntry) {
		if pe.valid != 0 && valid == nil {
			valid = make([]uint32, len(index), m.count)
		}
		index, phys = append(index, i), append(phys, pe.phys)
		if valid != nil {
			valid = append(valid, pe.valid)
		}
	})
	m.index, m.phys, m.valid, m.pending = index, phys, valid, nil
}

// merged calls fn for every entry, slices and pending, in index order.
func (m *ownMap) merged(fn func(index uint32, pe pendingEntry)) {
	keys := slices.Sorted(maps.Keys(m.pending))
	i, k := 0, 0
	for i < len(m.index) || k < len(keys) {
		switch {
		case k == len(keys) || i < len(m.index) && m.index[i] < keys[k]:
			pe := pendingEntry{phys: m.phys[i]}
			if m.valid != nil {
				pe.valid = m.valid[i]
			}
			fn(m.index[i], pe)
			i++
		default:
			if i < len(m.index) && m.index[i] == keys[k] {
				i++ // overridden
			}
			if pe := m.pending[keys[k]]; pe.phys != ownDeleted {
				fn(keys[k], pe)
			}
			k++
		}
	}
}

func (m *ownMap) len() int { return m.count }

// each calls fn for every entry in index order.
func (m *ownMap) each(fn func(index, phys uint64)) {
	m.merged(func(index uint32, pe pendingEntry) { fn(uint64(index), pe.phys) })
}
