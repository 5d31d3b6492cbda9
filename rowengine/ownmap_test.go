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
	// narrow: physical blocks below 2^32 and masks of 16 sectors, held in
	// 4 and 2 bytes; widened: large values arrive from half-way on.
	for _, c := range []struct {
		name         string
		physLimit    uint64
		maskLimit    uint32
		wide         bool
		widenHalfway bool
	}{
		{"narrow", 1<<32 - 2, 1<<16 - 1, false, false},
		{"widened", 1<<32 - 2, 1<<16 - 1, true, true},
		{"wide", 1 << 40, ^uint32(0), true, false},
	} {
		t.Run(c.name, func(t *testing.T) { testOwnMapAgainstMap(t, c.physLimit, c.maskLimit, c.widenHalfway, c.wide) })
	}
}

func testOwnMapAgainstMap(t *testing.T, physLimit uint64, maskLimit uint32, widenHalfway, wantWide bool) {
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[uint64]uint64{}
	m := buildOwnMap(func(fn func(index, phys uint64)) { // a compacted node's start
		for i := uint64(0); i < 3000; i += 3 {
			fn(i, i+7)
			want[i] = i + 7
		}
	})
	wantValid := map[uint64]uint32{}
	const steps = 200000
	for step := range steps {
		index := rng.Uint64N(5000)
		physLimit, maskLimit := physLimit, maskLimit
		if widenHalfway && step >= steps/2 {
			physLimit, maskLimit = 1<<40, ^uint32(0)
		}
		switch rng.IntN(5) {
		case 0:
			m.del(index)
			delete(want, index)
			delete(wantValid, index)
		case 1: // a partly written block's mask widens, or it becomes whole
			if _, ok := want[index]; ok {
				v := uint32(rng.Uint64N(uint64(maskLimit) + 1))
				if rng.IntN(3) == 0 {
					v = 0 // whole again
				}
				m.setValid(index, v)
				wantValid[index] = v
			}
		default:
			phys := physLimit - rng.Uint64N(min(physLimit, 1<<20))
			if rng.IntN(10) == 0 {
				phys = blockmap.ZeroBlock
			}
			m.set(index, phys)
			want[index] = phys
			wantValid[index] = 0
			if rng.IntN(3) == 0 {
				v := uint32(rng.Uint64N(uint64(maskLimit))) | 1
				m.setValid(index, v)
				wantValid[index] = v
			}
		}
	}
	m.fold()
	if wide := m.phys.wide != nil || m.valid.wide != nil; wide != wantWide {
		t.Errorf("the slices are wide (physical blocks %v, masks %v), want %v", m.phys.wide != nil, m.valid.wide != nil, wantWide)
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

// TestPackedPhysBlocks: blockmap.ZeroBlock keeps its meaning in 4 bytes;
// the one 32-bit value that stands for it, as a real block, widens.
func TestPackedPhysBlocks(t *testing.T) {
	s := newPhysSlice(3)
	for _, v := range []uint64{0, blockmap.ZeroBlock, 1<<32 - 2} {
		s.append(v)
	}
	if s.wide != nil || s.at(1) != blockmap.ZeroBlock || s.at(2) != 1<<32-2 {
		t.Fatalf("narrow: wide %v, %d %d", s.wide != nil, s.at(1), s.at(2))
	}
	s.set(0, 1<<32-1)
	if s.wide == nil || s.at(0) != 1<<32-1 || s.at(1) != blockmap.ZeroBlock || s.at(2) != 1<<32-2 {
		t.Fatalf("widened: wide %v, %d %d %d", s.wide != nil, s.at(0), s.at(1), s.at(2))
	}
}
