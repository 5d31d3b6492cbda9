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
	// pending overrides the slices: a physical block, or ownDeleted.
	pending map[uint32]uint64
	count   int
	// valid holds the valid sectors of the entries whose blocks are partly
	// written (sectors.go); nil while there are none.
	valid map[uint32]uint32
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
	if phys, ok := m.pending[uint32(index)]; ok {
		return phys, phys != ownDeleted
	}
	if i, ok := m.base(uint32(index)); ok {
		return m.phys[i], true
	}
	return 0, false
}

// validAt is index's valid sectors; 0 for a whole block.
func (m *ownMap) validAt(index uint64) uint32 { return m.valid[uint32(index)] }

// setValid records index's valid sectors (0: the whole block).
func (m *ownMap) setValid(index uint64, valid uint32) {
	switch {
	case valid != 0:
		if m.valid == nil {
			m.valid = map[uint32]uint32{}
		}
		m.valid[uint32(index)] = valid
	case m.valid != nil:
		delete(m.valid, uint32(index))
		if len(m.valid) == 0 {
			m.valid = nil
		}
	}
}

// set maps index to a whole block; setValid then marks it partly written.
func (m *ownMap) set(index, phys uint64) {
	m.setValid(index, 0)
	if _, ok := m.get(index); !ok {
		m.count++
	}
	if i, ok := m.base(uint32(index)); ok {
		m.phys[i] = phys // in place: no pending entry needed
		delete(m.pending, uint32(index))
		return
	}
	m.change(uint32(index), phys)
}

func (m *ownMap) del(index uint64) {
	m.setValid(index, 0)
	if _, ok := m.get(index); !ok {
		return
	}
	m.count--
	if _, ok := m.base(uint32(index)); ok {
		m.change(uint32(index), ownDeleted)
	} else {
		delete(m.pending, uint32(index))
	}
}

func (m *ownMap) change(index uint32, phys uint64) {
	if m.pending == nil {
		m.pending = map[uint32]uint64{}
	}
	m.pending[index] = phys
	if len(m.pending) > max(64, len(m.index)/16) {
		m.fold()
	}
}

// fold writes the pending changes into new slices of exactly the size needed.
func (m *ownMap) fold() {
	index, phys := make([]uint32, 0, m.count), make([]uint64, 0, m.count)
	m.merged(func(i uint32, p uint64) {
		index, phys = append(index, i), append(phys, p)
	})
	m.index, m.phys, m.pending = index, phys, nil
}

// merged calls fn for every entry, slices and pending, in index order.
func (m *ownMap) merged(fn func(index uint32, phys uint64)) {
	keys := slices.Sorted(maps.Keys(m.pending))
	i, k := 0, 0
	for i < len(m.index) || k < len(keys) {
		switch {
		case k == len(keys) || i < len(m.index) && m.index[i] < keys[k]:
			fn(m.index[i], m.phys[i])
			i++
		default:
			if i < len(m.index) && m.index[i] == keys[k] {
				i++ // overridden
			}
			if p := m.pending[keys[k]]; p != ownDeleted {
				fn(keys[k], p)
			}
			k++
		}
	}
}

func (m *ownMap) len() int { return m.count }

// each calls fn for every entry in index order.
func (m *ownMap) each(fn func(index, phys uint64)) {
	m.merged(func(index uint32, phys uint64) { fn(uint64(index), phys) })
}
