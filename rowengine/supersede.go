package rowengine

import (
	"cmp"
	"slices"

	"github.com/rowfs/rowfs/blockmap"
)

// Superseded changes: a commit writes a key's last change of the batch.
//
// The first writes after a snapshot queue a change per guest write: the
// redirect of a block, then one per write that widens its valid sectors.
// Random 4 KiB writes on a fresh snapshot of a 1 GiB volume queued 2.2
// changes per key in each one-second batch, and Badger wrote every one (its
// write-ahead log, memtable, level-0 tables and their compaction), though
// only the last of them can be read back. Dropping an earlier change of a
// key that a later change of the same batch overwrites alters what a
// crash can leave in one way only: the key may still hold its durable
// value while changes queued after the dropped one have landed. That
// loses a write the guest never flushed (a flush commits everything
// before it, so no flush lies between two changes of one batch), as a
// crash may anyway. A block the dropped change pointed at is then mapped
// by nothing, as a crash before the commit leaves it, and Open frees it;
// a block it unmapped is still quarantined until the whole batch is
// durable, so the durable value it falls back to points at intact data.
//
// A change that belongs to a WithNext group is never dropped: the group
// lands whole or not at all, and what it moves must not lose its half.

// dropSuperseded returns changes without the ones a later change of the
// same key overwrites, in their order, reusing changes' array.
func dropSuperseded(changes []blockmap.MapChange) []blockmap.MapChange {
	if len(changes) < 2 {
		return changes
	}
	// The order of the batch by key, then by position: a key's changes
	// are neighbours, its last one last.
	order := make([]int32, len(changes))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		ka, kb := changes[a].Key, changes[b].Key
		if c := cmp.Compare(ka.Node, kb.Node); c != 0 {
			return c
		}
		if c := cmp.Compare(ka.Index, kb.Index); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	drop := make([]bool, len(changes))
	dropped := false
	for i := 0; i+1 < len(order); i++ {
		at := order[i]
		if changes[at].Key == changes[order[i+1]].Key && !inGroup(changes, int(at)) {
			drop[at], dropped = true, true
		}
	}
	if !dropped {
		return changes
	}
	kept := changes[:0]
	for i, c := range changes {
		if !drop[i] {
			kept = append(kept, c)
		}
	}
	return kept
}

// inGroup reports whether changes[i] must land with a neighbour.
func inGroup(changes []blockmap.MapChange, i int) bool {
	return changes[i].WithNext || (i > 0 && changes[i-1].WithNext)
}
