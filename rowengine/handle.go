package rowengine

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/blockmap"
)

// localHandle is an open local volume: its head, or a read-only snapshot.
type localHandle struct {
	pool     *Pool
	vol      *volume
	snap     *node // nil: the volume's head; else a read-only snapshot
	writable bool
}

// open opens the head for I/O. Open handles make DeleteVolume refuse
// (without force).
func (l localVolume) open(writable bool) (*Handle, error) {
	p, v := l.p, l.v
	p.mapMu.Lock()
	defer p.mapMu.Unlock()
	if v.deleted {
		return nil, fmt.Errorf("%w: volume %q", ErrNotFound, v.rec.Name)
	}
	v.opens++
	if writable {
		v.writers++
	}
	return newHandle(&localHandle{pool: p, vol: v, writable: writable}, writable), nil
}

// waitClosed waits up to Options.CloseGrace for v's handles (writers only,
// if writersOnly) to close, and returns how many remain.
func (p *Pool) waitClosed(v *volume, writersOnly bool) int {
	deadline := time.Now().Add(p.opts.CloseGrace)
	for {
		p.mapMu.RLock()
		n := v.opens
		if writersOnly {
			n = v.writers
		}
		p.mapMu.RUnlock()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *localHandle) close() {
	if h.snap != nil {
		h.pool.mapMu.Lock()
		h.pool.unpinViewLocked(h.snap)
		h.pool.mapMu.Unlock()
		return
	}
	h.pool.mapMu.Lock()
	h.vol.opens--
	if h.writable {
		h.vol.writers--
	}
	h.pool.mapMu.Unlock()
}

func (h *localHandle) size() uint64 {
	h.pool.mapMu.RLock()
	defer h.pool.mapMu.RUnlock()
	_, size := h.viewLocked()
	return size
}

// viewLocked returns the table and size the handle reads.
func (h *localHandle) viewLocked() (*table, uint64) {
	if h.snap != nil {
		return h.snap.table, h.snap.rec.Size
	}
	return h.vol.head.table, h.vol.rec.Size
}

func (h *localHandle) sync() error { return h.pool.flushVolume(h.vol) }

// checkGoneLocked reports a deleted volume or snapshot, or a closed pool. A
// deleted snapshot's blocks may be reused, so its reads must stop at once.
func (h *localHandle) checkGoneLocked() error {
	if h.snap != nil && (h.snap.removed || h.snap.rec.Hidden) {
		if h.pool.closed {
			return ErrClosed
		}
		return fmt.Errorf("%w: snapshot %q was deleted", ErrNotFound, h.snap.rec.Name)
	}
	return h.pool.checkVolumeLocked(h.vol)
}

func (p *Pool) checkVolumeLocked(v *volume) error {
	if p.closed {
		return ErrClosed
	}
	if v.deleted {
		return fmt.Errorf("%w: volume %q was deleted", ErrNotFound, v.rec.Name)
	}
	return nil
}

func (h *localHandle) readAt(buf []byte, off int64) (int, error) {
	p := h.pool
	p.inUse.RLock()
	defer p.inUse.RUnlock()
	var stack [8]readPiece
	pieces, n, err := h.resolveRead(uint64(len(buf)), off, stack[:0])
	if err != nil {
		return 0, err
	}
	if p.ioResolved != nil {
		p.ioResolved()
	}
	for _, pc := range pieces {
		dst := buf[pc.at : pc.at+pc.length]
		var err error
		switch {
		case pc.partial.valid != 0:
			err = p.readPartial(dst, pc.phys, pc.partial, pc.inner)
		case pc.phys == blockmap.ZeroBlock:
			clear(dst)
		default:
			err = p.readData(dst, pc.phys*p.blockSize+pc.inner)
		}
		if err != nil {
			return int(pc.at), err
		}
	}
	return int(n), nil
}

// readPiece is length bytes at offset at of a read's buffer: from offset
// inner of physical block phys on (runs of whole blocks contiguous in the
// data file are one piece), zeros (blockmap.ZeroBlock), or of a partly
// written block.
type readPiece struct {
	at, length, phys, inner uint64
	partial                 partialInfo
}

// resolveRead resolves a read of length bytes at off, clipped to the end
// of the volume, to pieces appended to pieces; n is the clipped length.
func (h *localHandle) resolveRead(length uint64, off int64, pieces []readPiece) ([]readPiece, uint64, error) {
	p := h.pool
	bs := p.blockSize
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	if err := h.checkGoneLocked(); err != nil {
		return nil, 0, err
	}
	if off < 0 {
		return nil, 0, fmt.Errorf("%w: negative offset", ErrInvalidArgument)
	}
	tbl, size := h.viewLocked()
	if uint64(off) >= size {
		return nil, 0, io.EOF
	}
	n := min(length, size-uint64(off))
	for done := uint64(0); done < n; {
		pos := uint64(off) + done
		inner := pos % bs
		chunk := min(bs-inner, n-done)
		e, pi, partial := tbl.lookup(pos / bs)
		pc := readPiece{at: done, length: chunk, phys: visiblePhys(e), inner: inner}
		if partial {
			pc.partial = pi
		}
		last := len(pieces) - 1
		switch {
		case last >= 0 && pc.partial.valid == 0 && pieces[last].partial.valid == 0 && pc.phys == blockmap.ZeroBlock && pieces[last].phys == blockmap.ZeroBlock:
			pieces[last].length += chunk
		case last >= 0 && pc.partial.valid == 0 && pieces[last].partial.valid == 0 && pc.phys != blockmap.ZeroBlock && pieces[last].phys != blockmap.ZeroBlock &&
			pieces[last].phys*bs+pieces[last].inner+pieces[last].length == pc.phys*bs+inner:
			pieces[last].length += chunk
		default:
			pieces = append(pieces, pc)
		}
		done += chunk
	}
	return pieces, n, nil
}

// readData reads from the data file; bytes past its end read as zeros.
func (p *Pool) readData(buf []byte, off uint64) error {
	n, err := p.data.ReadAt(buf, int64(off))
	if errors.Is(err, io.EOF) {
		clear(buf[n:])
		return nil
	}
	if err != nil {
		p.log.Error("read from pool data file failed", "offset", off, "length", len(buf), "err", err)
		return fmt.Errorf("%w: read pool data file at %d: %v", ErrIO, off, err)
	}
	return nil
}

func (p *Pool) writeData(buf []byte, off uint64) error {
	n, err := p.data.WriteAt(buf, int64(off))
	p.dataWritten.Add(uint64(n))
	return p.dataWriteError(err, off, len(buf))
}

// writeDataDurable writes as writeData does, with RWF_DSYNC: when it
// returns the bytes are on stable storage with what of the file's
// metadata reading them back needs, as after a raw file's O_DSYNC write.
// It reports false, having written nothing, where the kernel refuses the
// flag (said once in the log).
func (p *Pool) writeDataDurable(buf []byte, off uint64) (bool, error) {
	if p.dsyncRefused.Load() {
		return false, nil
	}
	for first := true; len(buf) > 0; first = false {
		n, err := unix.Pwritev2(int(p.data.Fd()), [][]byte{buf}, int64(off), unix.RWF_DSYNC)
		if first && (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
			p.log.Info("O_DSYNC writes are written and then flushed: the kernel refuses RWF_DSYNC", "err", err)
			p.dsyncRefused.Store(true)
			return false, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return true, p.dataWriteError(err, off, len(buf))
		}
		p.dataWritten.Add(uint64(n))
		buf, off = buf[n:], off+uint64(n)
	}
	return true, nil
}

// dataWriteError is what a failed write of length bytes at off of the data
// file returns, logged unless it is the host filesystem being full.
func (p *Pool) dataWriteError(err error, off uint64, length int) error {
	if err == nil {
		return nil
	}
	if isNoSpace(err) {
		return fmt.Errorf("%w: host filesystem of %s is full", ErrNoSpace, p.dir)
	}
	p.log.Error("write to pool data file failed", "offset", off, "length", length, "err", err)
	return fmt.Errorf("%w: write pool data file at %d: %v", ErrIO, off, err)
}

// writeAt writes to the head: in place where the head owns the block,
// otherwise redirected to a new block.
func (h *localHandle) writeAt(data []byte, off int64) (int, error) {
	if err := h.checkRange(off, uint64(len(data))); err != nil {
		return 0, err
	}
	if done, err := h.pool.writeOwned(h.vol, data, uint64(off), false); done || err != nil {
		if err != nil {
			return 0, err
		}
		return len(data), nil
	}
	bs := h.pool.blockSize
	for done := uint64(0); done < uint64(len(data)); {
		pos := uint64(off) + done
		inner := pos % bs
		chunk := min(bs-inner, uint64(len(data))-done)
		if err := h.pool.writeBlock(h.vol, pos/bs, inner, data[done:done+chunk]); err != nil {
			return int(done), err
		}
		done += chunk
	}
	return len(data), nil
}

// writeAtSync is an O_DSYNC write: durable when it returns. An overwrite
// the head owns by durable map entries, in one run of the data file, is
// one pwrite with RWF_DSYNC, as on a raw file, and needs no commit; any
// other write is written, then flushed.
func (h *localHandle) writeAtSync(data []byte, off int64) (int, error) {
	if err := h.checkRange(off, uint64(len(data))); err != nil {
		return 0, err
	}
	if done, err := h.pool.writeOwned(h.vol, data, uint64(off), true); done || err != nil {
		if err != nil {
			return 0, err
		}
		return len(data), nil
	}
	n, err := h.writeAt(data, off)
	if err != nil {
		return n, err
	}
	return n, h.sync()
}

func (h *localHandle) checkRange(off int64, length uint64) error {
	size := h.size()
	if off < 0 || uint64(off) > size || length > size-uint64(off) {
		return fmt.Errorf("%w: range %d+%d is outside volume %q of %d bytes", ErrInvalidArgument, off, length, h.vol.rec.Name, size)
	}
	return nil
}

// writeOwned is the fast path of an overwrite: if the head owns every block
// the write touches, it writes in place, one pwrite per physically
// contiguous run, resolved under the shared lock and written under inUse
// only. No stripe lock is needed: a block the head owns is never
// redirected, and what may happen to it meanwhile (frozen into a snapshot,
// unmapped) waits for inUse before it matters. It reports false, having
// written nothing, if any block needs a redirect.
//
// A durable write (writeAtSync) must be durable when it returns without a
// commit, so it also reports false unless every map entry of the head is
// durable (no change of its keys queued or in a commit) and the blocks
// are one run of the data file: one pwrite with RWF_DSYNC then does it.
// Such a write needs nothing of the volume's next flush.
func (p *Pool) writeOwned(v *volume, data []byte, off uint64, durable bool) (bool, error) {
	p.inUse.RLock()
	defer p.inUse.RUnlock()
	var stack [4]fileRun
	runs, ok, err := p.ownedRuns(v, off, uint64(len(data)), stack[:0], durable)
	if !ok || err != nil {
		return false, err
	}
	if p.ioResolved != nil {
		p.ioResolved()
	}
	if durable {
		return p.writeDataDurable(data, runs[0].file)
	}
	for _, r := range runs {
		if err := p.writeInPlace(v, data[r.at:r.at+r.length], r.file); err != nil {
			return false, err
		}
	}
	return true, nil
}

// writeInPlace writes data at offset off of the data file into a block v's
// head owns and records it for v's next flush.
func (p *Pool) writeInPlace(v *volume, data []byte, off uint64) error {
	if err := p.writeData(data, off); err != nil {
		return err
	}
	v.dirty.addBytes(off, uint64(len(data)), p.blockSize)
	return nil
}

// fileRun is length bytes at offset at of a request's buffer, contiguous in
// the data file from offset file.
type fileRun struct{ at, file, length uint64 }

// ownedRuns resolves [off, off+length) of v's head to runs of the data
// file, appended to runs, if the head owns every block of it whole. If
// durable, also only if the head's map entries are all durable and the
// range is one run of the data file.
func (p *Pool) ownedRuns(v *volume, off, length uint64, runs []fileRun, durable bool) ([]fileRun, bool, error) {
	bs := p.blockSize
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	if err := p.checkVolumeLocked(v); err != nil {
		return nil, false, err
	}
	head := v.head
	if durable && head.lastChange > p.durableSeq.Load() {
		return nil, false, nil
	}
	end := off + length
	for pos := off; pos < end; {
		e, _, partial := head.table.lookup(pos / bs)
		if e.owner != head.rec.ID || e.phys == blockmap.ZeroBlock || partial {
			return nil, false, nil
		}
		inner := pos % bs
		chunk := min(bs-inner, end-pos)
		fileOff := e.phys*bs + inner
		if last := len(runs) - 1; last >= 0 && runs[last].file+runs[last].length == fileOff {
			runs[last].length += chunk
		} else {
			runs = append(runs, fileRun{at: pos - off, file: fileOff, length: chunk})
		}
		pos += chunk
	}
	if durable && len(runs) != 1 {
		return nil, false, nil
	}
	return runs, true, nil
}

var blockBuffers sync.Pool

func (p *Pool) getBlockBuffer() *[]byte {
	if b, ok := blockBuffers.Get().(*[]byte); ok && uint64(len(*b)) == p.blockSize {
		return b
	}
	b := make([]byte, p.blockSize)
	return &b
}

// writeBlock writes data at offset inner of virtual block index of v's head.
func (p *Pool) writeBlock(v *volume, index, inner uint64, data []byte) error {
	stripe := &p.stripes[index%uint64(len(p.stripes))]
	stripe.Lock()
	defer stripe.Unlock()
	p.inUse.RLock()
	defer p.inUse.RUnlock()
	bs := p.blockSize
	for {
		p.mapMu.RLock()
		if err := p.checkVolumeLocked(v); err != nil {
			p.mapMu.RUnlock()
			return err
		}
		head := v.head
		e, pi, partial := head.table.lookup(index)
		ownedByHead := e.owner == head.rec.ID // (rec is rewritten at a snapshot)
		p.mapMu.RUnlock()
		if ownedByHead && e.phys != blockmap.ZeroBlock {
			if partial {
				done, err := p.writePartialOwned(v, head, index, inner, data, e, pi)
				if err != nil || done {
					return err
				}
				continue
			}
			return p.writeInPlace(v, data, e.phys*bs+inner)
		}
		// Redirect: the new block is written before any map points at it.
		// A write of part of a block over a whole one (or zeros) writes
		// only the sectors it touches (sectors.go); otherwise the block is
		// written whole, merged with the old content or zeros.
		block, at, newPI := data, uint64(0), partialInfo{}
		var bufp *[]byte
		touched := p.sectorMask(inner, uint64(len(data)))
		var err error
		switch {
		case uint64(len(data)) == bs:
		case !partial && touched != p.allValid && !ownedByHead:
			// (Over the head's own zero marker the block is written whole:
			// the new entry replaces the marker, and a base is always the
			// parent's view.)
			newPI = partialInfo{valid: touched, base: visiblePhys(e)}
			var span uint64
			at, span = p.sectorSpan(inner, uint64(len(data)))
			if at != inner || span != uint64(len(data)) {
				bufp = p.getBlockBuffer()
				block = (*bufp)[:span]
				if err = p.readVisible(block, e, pi, at); err == nil {
					copy(block[inner-at:], data)
				}
			}
		default:
			bufp = p.getBlockBuffer()
			block = *bufp
			if err = p.readVisible(block, e, pi, 0); err == nil {
				copy(block[inner:], data)
			}
		}
		if err != nil {
			if bufp != nil {
				blockBuffers.Put(bufp)
			}
			return err
		}

		done, err := p.redirect(v, head, index, e, block, at, newPI, true)
		if bufp != nil {
			blockBuffers.Put(bufp)
		}
		if err != nil || done {
			return err
		}
		// The head changed under us (a snapshot), or the block did (a
		// merge handed it to the head): resolve again.
	}
}

// redirect writes block at offset at of a newly allocated physical block
// and maps it in n (v's head if mustBeHead, else any live node: flatten
// copies into snapshots), partly written as pi says. It reports false,
// having changed nothing, if n's entry is no longer seen, so the caller
// resolves again.
func (p *Pool) redirect(v *volume, n *node, index uint64, seen entry, block []byte, at uint64, pi partialInfo, mustBeHead bool) (bool, error) {
	if err := p.space.take(p.blockSize); err != nil {
		return false, err
	}
	prefer, wanted := p.placement(n, index)
	phys, err := p.alloc.allocNear(prefer, wanted, index%p.placementGroup, p.placementGroup)
	if err != nil {
		return false, err
	}
	p.crashPoint(CrashAlloc)
	if err := p.writeData(block, phys*p.blockSize+at); err != nil {
		// Never mapped; what a failed write left is punched, so a partly
		// written block that reuses it later has holes, not stale sectors.
		p.reuse([]uint64{phys})
		return false, err
	}
	p.crashPoint(CrashRedirect)
	p.mapMu.Lock()
	defer p.mapMu.Unlock()
	if err := p.checkVolumeLocked(v); err != nil || n.removed || mustBeHead && v.head != n || n.table.get(index) != seen {
		p.reuse([]uint64{phys}) // never mapped: free at once
		return false, err
	}
	p.rewriteSubtree(n, index, seen, entry{phys: phys, owner: n.rec.ID}, pi)
	p.addOwned(n, 1, pi.valid)
	p.queueChangeLocked(blockmap.MapChange{Key: blockmap.MapKey{Node: n.rec.ID, Index: index}, Phys: phys, Valid: pi.valid})
	return true, nil
}

// placement is where block index of n would best go: right after its left
// neighbour's block, or right before its right one, when n owns them.
func (p *Pool) placement(n *node, index uint64) (uint64, bool) {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	owns := func(e entry) bool { return e.owner == n.rec.ID && e.phys != blockmap.ZeroBlock }
	if index > 0 {
		if e := n.table.get(index - 1); owns(e) {
			return e.phys + 1, true
		}
	}
	if e := n.table.get(index + 1); owns(e) && e.phys > 0 {
		return e.phys - 1, true
	}
	return 0, false
}

// zeroRange makes a range read as zeros (punch hole, write zeroes,
// discard): whole blocks are unmapped and their space freed; partial
// blocks are written with zeros.
func (h *localHandle) zeroRange(off int64, length uint64) error {
	if err := h.checkRange(off, length); err != nil {
		return err
	}
	return h.pool.zeroRange(h.vol, uint64(off), length, false)
}

// zeroRange: beyondEnd says the range is past the (new) end of the volume,
// as when shrinking, where the size check of writeBlock does not apply.
func (p *Pool) zeroRange(v *volume, off, length uint64, beyondEnd bool) error {
	bs := p.blockSize
	end := off + length
	for pos := off; pos < end; {
		index, inner := pos/bs, pos%bs
		chunk := min(bs-inner, end-pos)
		if chunk == bs || beyondEnd && inner == 0 {
			if err := p.unmapBlock(v, index); err != nil {
				return err
			}
		} else {
			zbp := p.getBlockBuffer()
			zb := *zbp
			clear(zb[:chunk])
			err := p.writeBlock(v, index, inner, zb[:chunk])
			blockBuffers.Put(zbp)
			if err != nil {
				return err
			}
		}
		pos += chunk
	}
	return nil
}

// unmapBlock makes one block of the head read as zeros. A block the head
// owned is quarantined until the commit that makes the unmapping durable,
// which then punches it out of the data file and frees it.
func (p *Pool) unmapBlock(v *volume, index uint64) error {
	stripe := &p.stripes[index%uint64(len(p.stripes))]
	stripe.Lock()
	defer stripe.Unlock()
	p.mapMu.Lock()
	defer p.mapMu.Unlock()
	if err := p.checkVolumeLocked(v); err != nil {
		return err
	}
	head := v.head
	e, pi, _ := head.table.lookup(index)
	if e.owner == head.rec.ID && e.phys != blockmap.ZeroBlock {
		p.addOwned(head, -1, pi.valid)
		p.quarantine = append(p.quarantine, e.phys)
	}
	key := blockmap.MapKey{Node: head.rec.ID, Index: index}
	var inherited entry
	if head.parent != nil {
		inherited = resolveLocked(head.parent, index)
	}
	switch {
	case inherited.mapped() && inherited.phys != blockmap.ZeroBlock:
		// An ancestor maps this block: hide it with a zero marker.
		if e.owner != head.rec.ID || e.phys != blockmap.ZeroBlock {
			head.table.set(index, entry{phys: blockmap.ZeroBlock, owner: head.rec.ID})
			p.queueChangeLocked(blockmap.MapChange{Key: key, Phys: blockmap.ZeroBlock})
		}
	case e.owner == head.rec.ID:
		// Drop the head's entry: it reads what it inherits, nothing or an
		// ancestor's zero marker. The table must resolve to exactly that,
		// not to "unmapped", or a later merge of the ancestor would
		// change what the head reads.
		head.table.setWith(index, inherited, p.partialOfLocked(inherited, index))
		p.queueChangeLocked(blockmap.MapChange{Key: key, Delete: true})
	}
	p.crashPoint(CrashUnmap)
	return nil
}

func (h *localHandle) seekData(off uint64) (uint64, bool) {
	return h.seek(off, func(e entry) bool { return e.mapped() && e.phys != blockmap.ZeroBlock })
}

func (h *localHandle) seekHole(off uint64) (uint64, bool) {
	size := h.size()
	if off >= size {
		return 0, false
	}
	pos, ok := h.seek(off, func(e entry) bool { return !e.mapped() || e.phys == blockmap.ZeroBlock })
	if !ok {
		return size, true
	}
	return pos, true
}

func (h *localHandle) seek(off uint64, want func(entry) bool) (uint64, bool) {
	p := h.pool
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	tbl, size := h.viewLocked()
	if off >= size || h.checkGoneLocked() != nil {
		return 0, false
	}
	bs := p.blockSize
	index, ok := tbl.next(off/bs, (size+bs-1)/bs, want)
	if !ok {
		return 0, false
	}
	return max(off, index*bs), true
}
