package rowengine

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rowfs/rowfs/blockmap"
)

// TestOwnMapAgainstMap: from a built map, random sets and deletes (enough
// to fold many times) agree with a Go map, and each walks the entries in
// index order.
func TestOwnMapAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[uint64]uint64{}
	m := buildOwnMap(func(fn func(index, phys uint64)) { // a compacted node's start
		for i := uint64(0); i < 3000; i += 3 {
			fn(i, i+7)
			want[i] = i + 7
		}
	})
	for range 200000 {
		index := rng.Uint64N(5000)
		switch rng.IntN(4) {
		case 0:
			m.del(index)
			delete(want, index)
		default:
			phys := rng.Uint64N(1 << 40)
			if rng.IntN(10) == 0 {
				phys = blockmap.ZeroBlock
			}
			m.set(index, phys)
			want[index] = phys
		}
	}
	if m.len() != len(want) {
		t.Fatalf("len %d, want %d", m.len(), len(want))
	}
	for index, phys := range want {
		if got, ok := m.get(index); !ok || got != phys {
			t.Fatalf("get(%d) = %d %v, want %d", index, got, ok, phys)
		}
	}
	if _, ok := m.get(5001); ok {
		t.Fatal("get of a missing index found it")
	}
	var order []uint64
	m.each(func(index, phys uint64) {
		order = append(order, index)
		if want[index] != phys {
			t.Fatalf("each: %d → %d, want %d", index, phys, want[index])
		}
	})
	if !slices.Equal(order, slices.Sorted(maps.Keys(want))) {
		t.Fatal("each is not in index order or misses entries")
	}
}
