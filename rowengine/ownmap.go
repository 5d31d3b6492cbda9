package rowengine

import (
	"maps"
	"slices"

	"github.com/rowfs/rowfs/blockmap"
)

// ownMap is a frozen node's own map entries, all it keeps in memory once
// compacted (frozen.go): about 8 bytes an entry plus a little per 256-block
// range it touches, where a resolved table costs 16 bytes for every block
// of the volume. Entries are grouped by table page (index >> pageShift);
// each group is a slice sorted by the index's low byte, each element
// packing phys << 8 | low byte.
type ownMap struct {
	groups map[uint64][]uint64
	count  int
}

// ownZero packs blockmap.ZeroBlock, which does not fit in 56 bits; no data
// file has that many blocks.
const ownZero = 1<<56 - 1

func newOwnMap() *ownMap { return &ownMap{groups: map[uint64][]uint64{}} }

func packOwn(low, phys uint64) uint64 {
	if phys == blockmap.ZeroBlock {
		phys = ownZero
	}
	return phys<<pageShift | low
}

func unpackOwn(v uint64) (low, phys uint64) {
	low, phys = v&(entriesPerPage-1), v>>pageShift
	if phys == ownZero {
		phys = blockmap.ZeroBlock
	}
	return low, phys
}

// find returns the position of low in group g and whether it is there.
func find(g []uint64, low uint64) (int, bool) {
	return slices.BinarySearchFunc(g, low, func(v, low uint64) int { return cmpUint(v&(entriesPerPage-1), low) })
}

func (m *ownMap) get(index uint64) (uint64, bool) {
	g := m.groups[index>>pageShift]
	i, ok := find(g, index&(entriesPerPage-1))
	if !ok {
		return 0, false
	}
	_, phys := unpackOwn(g[i])
	return phys, true
}

func (m *ownMap) set(index, phys uint64) {
	key, low := index>>pageShift, index&(entriesPerPage-1)
	g := m.groups[key]
	i, ok := find(g, low)
	if ok {
		g[i] = packOwn(low, phys)
		return
	}
	m.groups[key] = slices.Insert(g, i, packOwn(low, phys))
	m.count++
}

func (m *ownMap) del(index uint64) {
	key := index >> pageShift
	g := m.groups[key]
	i, ok := find(g, index&(entriesPerPage-1))
	if !ok {
		return
	}
	if g = slices.Delete(g, i, i+1); len(g) == 0 {
		delete(m.groups, key)
	} else {
		m.groups[key] = g
	}
	m.count--
}

func (m *ownMap) len() int { return m.count }

// each calls fn for every entry in index order.
func (m *ownMap) each(fn func(index, phys uint64)) {
	for _, key := range slices.Sorted(maps.Keys(m.groups)) {
		for _, v := range m.groups[key] {
			low, phys := unpackOwn(v)
			fn(key<<pageShift|low, phys)
		}
	}
}
