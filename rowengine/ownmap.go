package rowengine

import (
	"maps"
	"slices"
)

// ownMap is a frozen node's own map entries, all it keeps in memory once
// compacted (frozen.go). Keeping a snapshot must cost about its entries
// and no more, so they sit in flat sorted slices: 8 bytes an entry (a
// volume has at most 2^32 blocks: 16 TiB of 4 KiB blocks; a data file of
// fewer than 2^32 blocks needs 4 bytes a physical block), and 2 more for
// a partly written one of at most 16 sectors, where a resolved table
// costs 16 bytes for every block of the volume and a map of small
// per-page slices cost ~80 (measured: bench section keep). Changes
// (merges move entries in and out) go to a small pending map, folded into
// the slices once it holds a sixteenth of them, so a change costs O(1)
// amortised and the map stays a small share of the memory.
type ownMap struct {
	index []uint32 // sorted
	// phys.at(i) is index[i]'s physical block.
	phys packed[uint32, uint64]
	// valid.at(i) is index[i]'s valid sectors when its block is partly
	// written (sectors.go), 0 when whole; empty while no entry is
	// partial, so that only nodes with partly written blocks pay for it.
	valid packed[uint16, uint32]
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
	m := &ownMap{index: make([]uint32, 0, n), phys: newPhysSlice(n)}
	each(func(index, phys uint64) {
		if len(m.index) < n { // the callers hold mapMu over both walks: a guard only
			m.index = append(m.index, uint32(index))
			m.phys.append(phys)
		}
	})
	m.count = len(m.index)
	return m
}

// newPhysSlice is an empty packed slice of physical blocks with room for
// n: blockmap.ZeroBlock (^0) keeps its meaning in 4 bytes.
func newPhysSlice(n int) packed[uint32, uint64] {
	return packed[uint32, uint64]{narrow: make([]uint32, 0, n), topIsTop: true}
}

// packed is a slice of W values held as the narrower N while every value
// fits, widened (all of it, once) when one does not. With topIsTop, W's
// largest value is held as N's largest, which no other value then takes.
type packed[N uint16 | uint32, W uint32 | uint64] struct {
	narrow   []N
	wide     []W // non-nil once widened
	topIsTop bool
}

func (s *packed[N, W]) len() int {
	if s.wide != nil {
		return len(s.wide)
	}
	return len(s.narrow)
}

func (s *packed[N, W]) at(i int) W {
	if s.wide != nil {
		return s.wide[i]
	}
	if v := s.narrow[i]; !s.topIsTop || v != ^N(0) {
		return W(v)
	}
	return ^W(0)
}

// fits reports whether v can be held narrow, and as what.
func (s *packed[N, W]) fits(v W) (N, bool) {
	switch {
	case s.topIsTop && v == ^W(0):
		return ^N(0), true
	case s.topIsTop:
		return N(v), v < W(^N(0))
	default:
		return N(v), v <= W(^N(0))
	}
}

func (s *packed[N, W]) set(i int, v W) {
	if s.wide == nil {
		if n, ok := s.fits(v); ok {
			s.narrow[i] = n
			return
		}
		s.widen()
	}
	s.wide[i] = v
}

func (s *packed[N, W]) append(v W) {
	if s.wide == nil {
		if n, ok := s.fits(v); ok {
			s.narrow = append(s.narrow, n)
			return
		}
		s.widen()
	}
	s.wide = append(s.wide, v)
}

func (s *packed[N, W]) widen() {
	wide := make([]W, len(s.narrow), cap(s.narrow))
	for i := range s.narrow {
		wide[i] = s.at(i)
	}
	s.wide, s.narrow = wide, nil
}

func (m *ownMap) base(index uint32) (int, bool) { return slices.BinarySearch(m.index, index) }

func (m *ownMap) get(index uint64) (uint64, bool) {
	if pe, ok := m.pending[uint32(index)]; ok {
		return pe.phys, pe.phys != ownDeleted
	}
	if i, ok := m.base(uint32(index)); ok {
		return m.phys.at(i), true
	}
	return 0, false
}

// validAt is index's valid sectors; 0 for a whole block or none.
func (m *ownMap) validAt(index uint64) uint32 {
	if pe, ok := m.pending[uint32(index)]; ok {
		return pe.valid
	}
	if i, ok := m.base(uint32(index)); ok && m.valid.len() > 0 {
		return m.valid.at(i)
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
	case m.valid.len() > 0:
		m.valid.set(i, valid)
	case valid != 0:
		m.valid = packed[uint16, uint32]{narrow: make([]uint16, len(m.index))}
		m.valid.set(i, valid)
	}
}

// set maps index to a whole block; setValid then marks it partly written.
func (m *ownMap) set(index, phys uint64) {
	if _, ok := m.get(index); !ok {
		m.count++
	}
	if i, ok := m.base(uint32(index)); ok {
		m.phys.set(i, phys) // in place: no pending entry needed
		if m.valid.len() > 0 {
			m.valid.set(i, 0)
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
	index, phys := make([]uint32, 0, m.count), newPhysSlice(m.count)
	var valid packed[uint16, uint32]
	m.merged(func(i uint32, pe pendingEntry) {
		if pe.valid != 0 && valid.len() == 0 {
			valid.narrow = make([]uint16, len(index), m.count)
		}
		index = append(index, i)
		phys.append(pe.phys)
		if valid.len() > 0 || valid.narrow != nil {
			valid.append(pe.valid)
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
			pe := pendingEntry{phys: m.phys.at(i)}
			if m.valid.len() > 0 {
				pe.valid = m.valid.at(i)
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
