package rowengine

import (
	"math/bits"

	"github.com/rowfs/rowfs/blockmap"
)

// Sub-block validity: the first write after a snapshot writes what the
// guest wrote.
//
// A block is cut into sectors (at most 32, at least 4 KiB each: 16 of
// 4 KiB in a 64 KiB block; a 4 KiB block has one and never uses any of
// this). A write smaller than a block into a block the head does not own
// no longer copies the block: it writes only the sectors it touches (a
// sector it covers in part is merged with the old content) to a new
// block, and the head's entry records which sectors are valid. The others
// read from the block the parent's view had there, the entry's base, or
// zeros. Later writes fill more sectors in place; once all are valid the
// entry is a whole block again.
//
// Bound: a partial entry's base is always a whole block (or zeros), so a
// read is still one table lookup and at most two preads per block. A
// write into a partial block inherited from a snapshot (whose base may
// not be whole) therefore writes a whole merged block, as before; so does
// one over the head's own zero marker (the new entry replaces the marker,
// and a base is the parent's view).
//
// The base is derived, never stored: it is the parent's view at that
// index, which only the parent's own entry decides. So whatever replaces
// the parent's view at an index must first fill the child's partial block
// from it (fillPartial): a merge of the parent into the child, and a
// flatten cutting a clone loose. Ownership moves keep the physical block,
// so they keep bases; a copy-up changes it, and rewriteSubtree re-points
// the bases of the descendants that read it.
//
// Durability: the sectors are written before their entry (or its wider
// mask) is queued, so a commit's data sync covers them, as for a whole
// redirect. A crash loses at most the mask change, never shows a sector
// that was not written. Invalid sectors of a partial block are never read
// (invariant 4 holds at sector granularity).

// maxSectors is the width of a valid mask.
const (
	maxSectors    = 32
	minSectorSize = 4096
)

// sectorGeometry is how many sectors a block of bs bytes has, and their size.
func sectorGeometry(bs uint64) (count, size uint64) {
	count = min(maxSectors, max(1, bs/minSectorSize))
	return count, bs / count
}

// wholeMask is the valid mask of a block of count sectors, all of them.
func wholeMask(count uint64) uint32 { return uint32(uint64(1)<<count - 1) }

// partialInfo is a partly written block's state in a table: which sectors
// its block holds, and the whole block (or blockmap.ZeroBlock for zeros)
// the others read from.
type partialInfo struct {
	valid uint32
	base  uint64
}

// visiblePhys is the block an entry reads from, or blockmap.ZeroBlock for
// zeros (unmapped or a zero marker).
func visiblePhys(e entry) uint64 {
	if !e.mapped() {
		return blockmap.ZeroBlock
	}
	return e.phys
}

// sectorMask is the mask of the sectors that [inner, inner+length) touches.
func (p *Pool) sectorMask(inner, length uint64) uint32 {
	first, last := inner/p.sectorSize, (inner+length-1)/p.sectorSize
	return uint32((uint64(1)<<(last+1) - 1) &^ (uint64(1)<<first - 1))
}

// sectorRuns calls fn for each run of sectors of mask, as byte offsets in
// the block, in order.
func (p *Pool) sectorRuns(mask uint32, fn func(off, length uint64) error) error {
	for mask != 0 {
		first := uint64(bits.TrailingZeros32(mask))
		n := uint64(bits.TrailingZeros32(^(mask >> first)))
		if err := fn(first*p.sectorSize, n*p.sectorSize); err != nil {
			return err
		}
		mask &^= uint32((uint64(1)<<n - 1) << first)
	}
	return nil
}

// readPartial reads [inner, inner+len(buf)) of a partly written block:
// valid sectors from phys, the others from the base or zeros.
func (p *Pool) readPartial(buf []byte, phys uint64, pi partialInfo, inner uint64) error {
	ss := p.sectorSize
	end := inner + uint64(len(buf))
	for pos := inner; pos < end; {
		s := pos / ss
		valid := pi.valid&(1<<s) != 0
		// Extend over the following sectors of the same source.
		runEnd := (s + 1) * ss
		for runEnd < end && (pi.valid&(1<<(runEnd/ss)) != 0) == valid {
			runEnd += ss
		}
		runEnd = min(runEnd, end)
		src := pi.base
		if valid {
			src = phys
		}
		if err := p.readBlockAt(buf[pos-inner:runEnd-inner], src, pos); err != nil {
			return err
		}
		pos = runEnd
	}
	return nil
}

// readVisible reads [inner, inner+len(buf)) of what entry e (partly
// written as pi says, if pi.valid is not 0) shows. REQUIRES: mapMu,
// shared at least.
func (p *Pool) readVisible(buf []byte, e entry, pi partialInfo, inner uint64) error {
	if pi.valid != 0 {
		return p.readPartial(buf, e.phys, pi, inner)
	}
	return p.readBlockAt(buf, visiblePhys(e), inner)
}

// readBlockAt reads buf at offset inner of physical block phys; zeros for
// blockmap.ZeroBlock.
func (p *Pool) readBlockAt(buf []byte, phys, inner uint64) error {
	if phys == blockmap.ZeroBlock {
		clear(buf)
		return nil
	}
	return p.readData(buf, phys*p.blockSize+inner)
}

// ownValidLocked is n's own entry's valid sectors at index: 0 for a whole
// block or none. REQUIRES: mapMu.
func ownValidLocked(n *node, index uint64) uint32 {
	if n.own != nil {
		return n.own.validAt(index)
	}
	if e := n.table.get(index); e.owner == n.rec.ID {
		pi, _ := n.table.partialAt(index)
		return pi.valid
	}
	return 0
}

// partialOfLocked is the partial state of entry e at index, whatever table
// it is in (its owner's mask, its base from the owner's parent). Off the
// I/O path: it resolves the base up the chain. REQUIRES: mapMu.
func (p *Pool) partialOfLocked(e entry, index uint64) partialInfo {
	o := p.nodes[e.owner]
	if o == nil || !e.mapped() {
		return partialInfo{}
	}
	valid := ownValidLocked(o, index)
	if valid == 0 {
		return partialInfo{}
	}
	base := uint64(blockmap.ZeroBlock)
	if o.parent != nil {
		base = visiblePhys(resolveLocked(o.parent, index))
	}
	return partialInfo{valid: valid, base: base}
}

// writePartialOwned writes data at inner into block index of the head,
// which owns it partly written (e, pi). Sectors it makes valid that it
// covers only in part are merged with what they showed. It reports false
// if the entry changed before the mask could grow: a snapshot froze the
// block or a rollback freed it, and what it wrote there is never read as
// this write (sectors outside the block's mask, or a write in flight at
// the cut). The caller holds the block's stripe and inUse shared, not
// mapMu.
func (p *Pool) writePartialOwned(v *volume, head *node, index, inner uint64, data []byte, e entry, pi partialInfo) (bool, error) {
	bs := p.blockSize
	touched := p.sectorMask(inner, uint64(len(data)))
	if touched&^pi.valid == 0 {
		return true, p.writeInPlace(v, data, e.phys*bs+inner)
	}
	spanOff, span := p.sectorSpan(inner, uint64(len(data)))
	bufp := p.getBlockBuffer()
	defer blockBuffers.Put(bufp)
	buf := (*bufp)[:span]
	if spanOff != inner || span != uint64(len(data)) {
		if err := p.readPartial(buf, e.phys, pi, spanOff); err != nil {
			return false, err
		}
	}
	copy(buf[inner-spanOff:], data)
	if err := p.writeData(buf, e.phys*bs+spanOff); err != nil {
		return false, err
	}
	p.crashPoint(CrashSectors)
	p.mapMu.Lock()
	defer p.mapMu.Unlock()
	if err := p.checkVolumeLocked(v); err != nil {
		return false, err
	}
	// A snapshot since the lookup froze head (it may have no table now):
	// the sectors went to a block the new head does not own; resolve again.
	if v.head != head || head.table.get(index) != e {
		return false, nil
	}
	if now, _ := head.table.partialAt(index); now != pi {
		return false, nil
	}
	p.setValidLocked(head, index, e, pi.base, pi.valid|touched)
	return true, nil
}

// setValidLocked widens n's own partial entry at index to valid sectors,
// in memory and queued, as a whole block once every sector is valid.
// REQUIRES: mapMu held exclusively.
func (p *Pool) setValidLocked(n *node, index uint64, e entry, base uint64, valid uint32) {
	if valid == p.allValid {
		valid = 0
	}
	var pi partialInfo
	if valid != 0 {
		pi = partialInfo{valid: valid, base: base}
	}
	p.revalue(n, ownValidLocked(n, index), valid)
	p.rewriteSubtree(n, index, e, e, pi)
	p.queueChangeLocked(blockmap.MapChange{Key: blockmap.MapKey{Node: n.rec.ID, Index: index}, Phys: e.phys, Valid: valid})
}

// sectorSpan is the sector-aligned range covering [inner, inner+length).
func (p *Pool) sectorSpan(inner, length uint64) (off, n uint64) {
	ss := p.sectorSize
	off = inner / ss * ss
	return off, (inner+length+ss-1)/ss*ss - off
}

// fillPartial makes n's own partly written block at index whole, copying
// its invalid sectors from its base, before something changes what the
// base is (a merge of n's parent into n, a flatten cutting n loose). The
// copy is written before the whole entry is queued, and the base is freed
// only by a later change in the same or a later commit.
// REQUIRES: adminMu (no other merge or flatten changes n's parent).
func (p *Pool) fillPartial(n *node, index uint64) error {
	stripe := &p.stripes[index%uint64(len(p.stripes))]
	stripe.Lock()
	defer stripe.Unlock()
	bs := p.blockSize
	p.mapMu.RLock()
	phys, owned := ownGetLocked(n, index)
	valid := ownValidLocked(n, index)
	if !owned || valid == 0 || n.removed {
		p.mapMu.RUnlock()
		return nil
	}
	e := entry{phys: phys, owner: n.rec.ID}
	pi := p.partialOfLocked(e, index)
	bufp := p.getBlockBuffer()
	defer blockBuffers.Put(bufp)
	err := p.sectorRuns(p.allValid&^valid, func(off, length uint64) error {
		buf := (*bufp)[:length]
		if err := p.readBlockAt(buf, pi.base, off); err != nil {
			return err
		}
		return p.writeData(buf, phys*bs+off)
	})
	p.mapMu.RUnlock()
	if err != nil {
		return err
	}
	p.crashPoint(CrashSectorsFilled)
	p.mapMu.Lock()
	defer p.mapMu.Unlock()
	// Under the stripe and adminMu nothing else changes n's entry here
	// except a discard of a head, which drops it (then nothing to widen).
	if now, ok := ownGetLocked(n, index); !ok || now != phys || ownValidLocked(n, index) != valid {
		return nil
	}
	p.setValidLocked(n, index, e, pi.base, p.allValid)
	return nil
}
