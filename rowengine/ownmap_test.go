package rowengine

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rowfs/rowfs/blockmap"
)

// TestOwnMapAgainstMap: from a built map, random sets, deletes and valid
// masks (enough to fold many times) agree with Go maps, and each walks
// the entries in index order.
func TestOwnMapAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[uint64]uint64{}
	m := buildOwnMap(func(fn func(index, phys uint64)) { // a compacted node's start
		for i := uint64(0); i < 3000; i += 3 {
			fn(i, i+7)
			want[i] = i + 7
		}
	})
	wantValid := map[uint64]uint32{}
	for range 200000 {
		index := rng.Uint64N(5000)
		switch rng.IntN(5) {
		case 0:
			m.del(index)
			delete(want, index)
			delete(wantValid, index)
		case 1: // a partly written block's mask widens, or it becomes whole
			if _, ok := want[index]; ok {
				v := uint32(rng.IntN(3)) * rng.Uint32()
				m.setValid(index, v)
				wantValid[index] = v
			}
		default:
			phys := rng.Uint64N(1 << 40)
			if rng.IntN(10) == 0 {
				phys = blockmap.ZeroBlock
			}
			m.set(index, phys)
			want[index] = phys
			wantValid[index] = 0
			if rng.IntN(3) == 0 {
				v := rng.Uint32() | 1
				m.setValid(index, v)
				wantValid[index] = v
			}
		}
	}
	for index := range uint64(5000) {
		if got := m.validAt(index); got != wantValid[index] {
			t.Fatalf("validAt(%d) = %#x, want %#x", index, got, wantValid[index])
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
