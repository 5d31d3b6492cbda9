package rowengine

import (
	"math/bits"
	"slices"
	"time"
)

// Warm free blocks.
//
// A block whose unmapping is durable used to be punched out of the data
// file at once. The next redirect then wrote into a hole: the host
// filesystem allocates an extent, and the kernel a page-cache page for
// every 4 KiB, where an overwrite of a cached, allocated block only
// copies. On a VM host that returns free memory to its hypervisor (free
// page reporting) each new page is also a host page fault: there the
// first writes after a rollback or a snapshot delete ran at a tenth of
// the speed of the same writes in place (docs/benchmarks.md).
//
// So the allocator keeps up to Options.WarmFreeBytes of freed blocks
// allocated, pages and all, and hands them to whole-block redirects
// first. A partial redirect never gets one: its unwritten sectors must
// stay holes, so that the pool's stored bytes are what the host stores.
// A block warm for longer than Options.WarmFreeAge, one pushed out by
// newer frees, and every warm block at Close, is punched and released as
// before. A crash leaves warm blocks as unmapped data, which Open punches
// like any other stray block; nothing durable refers to them.

// warmBatch is blocks that turned warm together. Entries reused since stay
// in the slice (their warm bit is clear) until the batch goes.
type warmBatch struct {
	at     time.Time
	blocks []uint64
}

// retire takes blocks whose unmapping is durable, as warm blocks, and
// returns those it does not keep (the oldest warm ones first, when there
// are more than warmMax), which the caller punches and then hands to
// releaseCooled.
func (a *allocator) retire(blocks []uint64, now time.Time) (cool []uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.usedCount -= uint64(len(blocks))
	if a.warmMax == 0 {
		return blocks
	}
	for _, phys := range blocks {
		a.warm[phys/64] |= 1 << (phys % 64)
		a.warmHint = min(a.warmHint, phys)
	}
	a.warmCount += uint64(len(blocks))
	a.warmBatches = append(a.warmBatches, warmBatch{at: now, blocks: slices.Clone(blocks)})
	a.warmQueued += len(blocks)
	cool = a.coolLocked(func(warmBatch) bool { return a.warmCount > a.warmMax })
	if a.warmQueued > 2*int(a.warmMax)+64 {
		a.compactWarmLocked()
	}
	return cool
}

// coolBefore takes out of reach of reuse the blocks that turned warm
// before cutoff, for the caller to punch and then releaseCooled.
func (a *allocator) coolBefore(cutoff time.Time) []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.coolLocked(func(b warmBatch) bool { return b.at.Before(cutoff) })
}

// coolAll is coolBefore for every warm block.
func (a *allocator) coolAll() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.coolLocked(func(warmBatch) bool { return true })
}

// coolLocked cools warm blocks, oldest first, while more(the oldest batch)
// holds. A cooled block stays marked used and is counted nowhere until
// releaseCooled. REQUIRES: a.mu.
func (a *allocator) coolLocked(more func(warmBatch) bool) (cool []uint64) {
	for len(a.warmBatches) > 0 && more(a.warmBatches[0]) {
		b := &a.warmBatches[0]
		phys := b.blocks[0]
		b.blocks = b.blocks[1:]
		a.warmQueued--
		if len(b.blocks) == 0 {
			a.warmBatches[0] = warmBatch{}
			a.warmBatches = a.warmBatches[1:]
		}
		if a.warm[phys/64]&(1<<(phys%64)) != 0 {
			a.warm[phys/64] &^= 1 << (phys % 64)
			a.warmCount--
			cool = append(cool, phys)
		}
	}
	return cool
}

// compactWarmLocked drops batch entries of blocks reused since, so that
// churn cannot grow the batches past twice the warm blocks. REQUIRES: a.mu.
func (a *allocator) compactWarmLocked() {
	kept := a.warmBatches[:0]
	a.warmQueued = 0
	for _, b := range a.warmBatches {
		var blocks []uint64
		for _, phys := range b.blocks {
			if a.warm[phys/64]&(1<<(phys%64)) != 0 {
				blocks = append(blocks, phys)
			}
		}
		if len(blocks) > 0 {
			kept = append(kept, warmBatch{at: b.at, blocks: blocks})
			a.warmQueued += len(blocks)
		}
	}
	clear(a.warmBatches[len(kept):])
	a.warmBatches = kept
}

// takeWarmLocked hands out prefer if it is warm, else the lowest warm
// block, so that blocks freed in order are reused in order. REQUIRES: a.mu.
func (a *allocator) takeWarmLocked(prefer uint64, wanted bool) (uint64, bool) {
	if a.warmCount == 0 {
		return 0, false
	}
	phys, found := prefer, wanted && prefer < a.limit && a.warm[prefer/64]&(1<<(prefer%64)) != 0
	for w := a.warmHint / 64; !found && w < uint64(len(a.warm)); w++ {
		if a.warm[w] != 0 {
			phys, found = w*64+uint64(bits.TrailingZeros64(a.warm[w])), true
			a.warmHint = phys
		}
	}
	if !found {
		return 0, false // unreachable while warmCount counts the bits
	}
	a.warm[phys/64] &^= 1 << (phys % 64)
	a.warmCount--
	a.usedCount++
	return phys, true
}

// releaseCooled frees cooled blocks once they are punched.
func (a *allocator) releaseCooled(blocks []uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, phys := range blocks {
		a.used[phys/64] &^= 1 << (phys % 64)
		a.hint = min(a.hint, phys)
	}
}

func (a *allocator) isWarm(phys uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return phys < uint64(len(a.warm))*64 && a.warm[phys/64]&(1<<(phys%64)) != 0
}

func (a *allocator) warmBlocks() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.warmCount
}

// reuse hands blocks whose unmapping is durable back to the allocator:
// warm, or punched out of the data file first. Punching only here and in
// coolWarm, before release, is what keeps a hole from landing on a block
// that was already reused.
func (p *Pool) reuse(blocks []uint64) {
	if len(blocks) == 0 {
		return
	}
	p.punchAndRelease(p.alloc.retire(blocks, p.opts.Now()))
}

// coolWarm punches out the blocks warm for longer than WarmFreeAge. It
// holds commitMu, as commits do when they reuse blocks, so that the
// checker's walk of the data file never sees a block punched and released
// between finding its data and asking whether it is in use.
func (p *Pool) coolWarm() {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.punchAndRelease(p.alloc.coolBefore(p.opts.Now().Add(-p.opts.WarmFreeAge)))
}

func (p *Pool) punchAndRelease(cooled []uint64) {
	if len(cooled) == 0 {
		return
	}
	p.punchHoles(cooled)
	p.crashPoint(CrashFreePunched)
	p.alloc.releaseCooled(cooled)
}

// warmMax is Options.WarmFreeBytes in blocks.
func (p *Pool) warmMax() uint64 {
	if p.opts.WarmFreeBytes < 0 {
		return 0
	}
	return uint64(p.opts.WarmFreeBytes) / p.blockSize
}
