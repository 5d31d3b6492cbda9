package rowengine

import "maps"

// entriesPerPage balances sparse volumes (a page is allocated per touched
// range) against pointer overhead: 256 entries × 16 bytes = one 4 KiB page.
const (
	pageShift      = 8
	entriesPerPage = 1 << pageShift
)

// entry is one resolved mapping: which physical block holds a virtual block,
// and which node owns that physical block. owner == 0 means unmapped (zeros).
type entry struct {
	phys  uint64
	owner uint64
}

func (e entry) mapped() bool { return e.owner != 0 }

type page struct {
	gen     uint64
	entries [entriesPerPage]entry
	// partial describes the entries of the page whose blocks are partly
	// written (sectors.go), by index in the page; nil while there are
	// none, so a page of whole blocks costs nothing more.
	partial map[uint8]partialInfo
}

// table is a node's fully resolved block map: its own entries over its
// ancestors'. Reading any block is two slice indexes, whatever the depth of
// the chain. A child table shares its parent's pages and copies a page the
// first time it writes to it (pages whose gen differs from the table's).
type table struct {
	gen   uint64
	pages []*page
}

func newTable(gen uint64) *table { return &table{gen: gen} }

// child returns a table that reads as t and copies pages on write; t must
// not be written afterwards.
func (t *table) child(gen uint64) *table {
	pages := make([]*page, len(t.pages))
	copy(pages, t.pages)
	return &table{gen: gen, pages: pages}
}

func (t *table) get(index uint64) entry {
	p := index >> pageShift
	if p >= uint64(len(t.pages)) || t.pages[p] == nil {
		return entry{}
	}
	return t.pages[p].entries[index&(entriesPerPage-1)]
}

// lookup is index's entry and, if its block is partly written, its
// partial state: get and partialAt in one page lookup, for the I/O path.
func (t *table) lookup(index uint64) (entry, partialInfo, bool) {
	p := index >> pageShift
	if p >= uint64(len(t.pages)) || t.pages[p] == nil {
		return entry{}, partialInfo{}, false
	}
	pg, k := t.pages[p], index&(entriesPerPage-1)
	if pg.partial == nil {
		return pg.entries[k], partialInfo{}, false
	}
	pi, ok := pg.partial[uint8(k)]
	return pg.entries[k], pi, ok
}

// partialAt is the partial-block state of index's entry, if its block is
// partly written.
func (t *table) partialAt(index uint64) (partialInfo, bool) {
	_, pi, ok := t.lookup(index)
	return pi, ok
}

// set sets index to a whole block (or unmapped).
func (t *table) set(index uint64, e entry) { t.setWith(index, e, partialInfo{}) }

// setWith sets index to e, partly written as pi says (pi.valid == 0: whole).
func (t *table) setWith(index uint64, e entry, pi partialInfo) {
	p := index >> pageShift
	if p >= uint64(len(t.pages)) {
		if !e.mapped() {
			return
		}
		grown := make([]*page, p+1, max(p+1, uint64(2*len(t.pages))))
		copy(grown, t.pages)
		t.pages = grown
	}
	pg := t.pages[p]
	switch {
	case pg == nil:
		if !e.mapped() {
			return
		}
		pg = &page{gen: t.gen}
		t.pages[p] = pg
	case pg.gen != t.gen:
		cp := *pg
		cp.gen = t.gen
		cp.partial = maps.Clone(pg.partial)
		pg = &cp
		t.pages[p] = pg
	}
	k := index & (entriesPerPage - 1)
	pg.entries[k] = e
	switch {
	case pi.valid != 0 && e.mapped():
		if pg.partial == nil {
			pg.partial = map[uint8]partialInfo{}
		}
		pg.partial[uint8(k)] = pi
	case pg.partial != nil:
		delete(pg.partial, uint8(k))
		if len(pg.partial) == 0 {
			pg.partial = nil
		}
	}
}

// next returns the first index ≥ from whose entry satisfies want, skipping
// absent pages, or ok=false if there is none below limit.
func (t *table) next(from, limit uint64, want func(entry) bool) (uint64, bool) {
	for i := from; i < limit; {
		p := i >> pageShift
		if p >= uint64(len(t.pages)) {
			if want(entry{}) {
				return i, true
			}
			return 0, false
		}
		pg := t.pages[p]
		if pg == nil {
			if want(entry{}) {
				return i, true
			}
			i = (p + 1) << pageShift
			continue
		}
		if want(pg.entries[i&(entriesPerPage-1)]) {
			return i, true
		}
		i++
	}
	return 0, false
}

// each calls fn for every mapped entry below limit, in index order.
func (t *table) each(limit uint64, fn func(index uint64, e entry)) {
	for p, pg := range t.pages {
		if pg == nil {
			continue
		}
		base := uint64(p) << pageShift
		for i, e := range pg.entries {
			if idx := base + uint64(i); idx < limit && e.mapped() {
				fn(idx, e)
			}
		}
	}
}

// eachPartial calls fn for every partly written entry (in no order).
func (t *table) eachPartial(fn func(index uint64, e entry, pi partialInfo)) {
	for p, pg := range t.pages {
		if pg == nil {
			continue
		}
		for k, pi := range pg.partial {
			fn(uint64(p)<<pageShift+uint64(k), pg.entries[k], pi)
		}
	}
}
