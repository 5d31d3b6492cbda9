package rowengine

import (
	"fmt"
	"math/bits"
	"sync"
)

// allocator hands out physical blocks of the pool data file. Its state is
// not persisted: Open rebuilds it from the block maps (every mapped block is
// used, everything else is free), so it cannot disagree with them after a
// crash.
type allocator struct {
	mu sync.Mutex
	// used has one bit per physical block below limit.
	used []uint64
	// limit is the number of blocks the data file may hold; it grows on
	// demand up to maxBlocks.
	limit     uint64
	maxBlocks uint64 // 0: no limit but the host filesystem
	usedCount uint64
	hint      uint64 // no free block below hint
}

func newAllocator(fileBlocks, maxBlocks uint64) *allocator {
	a := &allocator{maxBlocks: maxBlocks}
	a.grow(fileBlocks)
	return a
}

func (a *allocator) grow(n uint64) {
	if n <= a.limit {
		return
	}
	words := (n + 63) / 64
	switch {
	case uint64(len(a.used)) >= words:
	case uint64(cap(a.used)) >= words:
		// Reslicing, not reallocating: the file grows 64 blocks at a time
		// while it fills, and copying the bitmap each time was 130 MB of
		// garbage for a 16 GiB fill.
		a.used = a.used[:words]
	default:
		grown := make([]uint64, words, max(words, uint64(2*cap(a.used))))
		copy(grown, a.used)
		a.used = grown
	}
	a.limit = n
}

// markUsed records a block found in a map at open. It reports false if the
// block was already marked (two owners: corruption).
func (a *allocator) markUsed(phys uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.grow(phys + 1)
	w, b := phys/64, phys%64
	if a.used[w]&(1<<b) != 0 {
		return false
	}
	a.used[w] |= 1 << b
	a.usedCount++
	return true
}

// alloc returns the lowest free block, extending the file if needed.
func (a *allocator) alloc() (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for w := a.hint / 64; w < uint64(len(a.used)); w++ {
		if a.used[w] == ^uint64(0) {
			continue
		}
		phys := w*64 + uint64(bits.TrailingZeros64(^a.used[w]))
		if phys >= a.limit {
			break
		}
		a.take(phys)
		a.hint = phys + 1 // the lowest free block: all below are used
		return phys, nil
	}
	phys := a.limit
	if a.maxBlocks != 0 && phys >= a.maxBlocks {
		return 0, fmt.Errorf("%w: pool capacity of %d blocks reached", ErrNoSpace, a.maxBlocks)
	}
	a.grow(phys + 1)
	a.take(phys)
	return phys, nil
}

// allocNear is alloc with a placement wish, so that data written in order
// lies in order in the data file and reads of it coalesce into one pread.
// It returns prefer if wanted and free. Otherwise it looks for the lowest
// free block at slot of its group of group blocks (group divides 64), so
// the neighbours written next can follow it even while other writers
// allocate. Otherwise it falls back to the lowest free block.
func (a *allocator) allocNear(prefer uint64, wanted bool, slot, group uint64) (uint64, error) {
	a.mu.Lock()
	if wanted && prefer == a.limit && (a.maxBlocks == 0 || prefer < a.maxBlocks) {
		a.grow(prefer + 1) // a neighbour at the end of the file
	}
	if wanted && prefer < a.limit && a.used[prefer/64]&(1<<(prefer%64)) == 0 {
		a.take(prefer)
		a.mu.Unlock()
		return prefer, nil
	}
	if group > 1 {
		var mask uint64
		for bit := slot % group; bit < 64; bit += group {
			mask |= 1 << bit
		}
		for w := a.hint / 64; w < uint64(len(a.used)); w++ {
			if free := ^a.used[w] & mask; free != 0 {
				if phys := w*64 + uint64(bits.TrailingZeros64(free)); phys < a.limit {
					a.take(phys)
					a.mu.Unlock()
					return phys, nil
				}
				break
			}
		}
		// Grow to the next block at that slot; the ones skipped stay free.
		if phys := (a.limit+group-1)/group*group + slot%group; a.maxBlocks == 0 || phys < a.maxBlocks {
			a.grow(phys + 1)
			a.take(phys)
			a.mu.Unlock()
			return phys, nil
		}
	}
	a.mu.Unlock()
	return a.alloc()
}

func (a *allocator) take(phys uint64) {
	a.used[phys/64] |= 1 << (phys % 64)
	a.usedCount++
	if phys == a.hint {
		a.hint++
	}
}

// release frees blocks whose unmapping is durable.
func (a *allocator) release(blocks []uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, phys := range blocks {
		a.used[phys/64] &^= 1 << (phys % 64)
		a.usedCount--
		a.hint = min(a.hint, phys)
	}
}

func (a *allocator) stats() (used, limit uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.usedCount, a.limit
}

func (a *allocator) isUsed(phys uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return phys < a.limit && a.used[phys/64]&(1<<(phys%64)) != 0
}
