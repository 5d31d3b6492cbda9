package rowengine

import (
	"slices"
	"testing"
	"time"
)

// TestAllocNear checks the placement rules and that placing a block high
// never hides the free blocks below it from alloc.
func TestAllocNear(t *testing.T) {
	a := newAllocator(0, 0, 0)
	got := func(prefer uint64, wanted bool, slot uint64) uint64 {
		t.Helper()
		phys, _, err := a.allocNear(prefer, wanted, slot, 16, true)
		if err != nil {
			t.Fatal(err)
		}
		return phys
	}
	if p := got(0, false, 3); p != 3 { // grows to slot 3 of the first group
		t.Fatalf("first block at slot 3: got %d", p)
	}
	if p := got(4, true, 4); p != 4 { // the preferred neighbour
		t.Fatalf("preferred 4: got %d", p)
	}
	if p := got(4, true, 4); p != 20 { // taken: slot 4 of the next group
		t.Fatalf("preferred 4 again: got %d", p)
	}
	if p := got(0, false, 0); p != 0 { // slot 0 of the first group is free
		t.Fatalf("slot 0: got %d", p)
	}
	for _, want := range []uint64{1, 2, 5, 6} { // what placement skipped is still found
		if p, err := a.alloc(); err != nil || p != want {
			t.Fatalf("alloc: got %d, %v; want %d", p, err, want)
		}
	}
	a.release([]uint64{3})
	if p := got(100, true, 3); p != 3 { // preferred beyond the file: slot 3 again
		t.Fatalf("slot 3 after release: got %d", p)
	}

	full := newAllocator(0, 8, 0) // capacity 8 blocks: placement may not grow past it
	for i := range uint64(8) {
		if _, _, err := full.allocNear(0, false, 15, 16, false); err != nil {
			t.Fatalf("block %d of 8: %v", i, err)
		}
	}
	if _, _, err := full.allocNear(0, false, 15, 16, false); err == nil {
		t.Fatal("a ninth block in a pool of 8")
	}
}

// TestWarmBlocks: freed blocks stay warm up to the bound, the oldest
// pushed out first; only whole-block allocations take them, preferred one
// first, then the lowest; cooling by age hands back the rest; and the
// counts stay right throughout.
func TestWarmBlocks(t *testing.T) {
	a := newAllocator(0, 0, 4)
	for range 10 {
		if _, err := a.alloc(); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Unix(1000, 0)
	if cool := a.retire([]uint64{7, 2, 5}, t0); len(cool) != 0 {
		t.Fatalf("3 frees with room for 4 cooled %v", cool)
	}
	// Two more: the oldest warm block (7, first of the first batch) goes.
	if cool := a.retire([]uint64{8, 9}, t0.Add(time.Second)); !slices.Equal(cool, []uint64{7}) {
		t.Fatalf("pushed out %v, want [7]", cool)
	}
	if used := a.usedCountNow(); used != 5 || a.warmBlocks() != 4 {
		t.Fatalf("used %d, warm %d; want 5 and 4", used, a.warmBlocks())
	}
	if !a.isUsed(7) || a.isWarm(7) {
		t.Fatal("a cooling block must stay out of reach until it is released")
	}
	a.releaseCooled([]uint64{7})
	// A partial write gets a cold block: the one just released.
	if phys, warm, _ := a.allocNear(0, false, 0, 1, false); phys != 7 || warm {
		t.Fatalf("partial write got %d (warm %v), want cold 7", phys, warm)
	}
	// A whole one gets the preferred warm block, then the lowest.
	if phys, warm, _ := a.allocNear(8, true, 0, 1, true); phys != 8 || !warm {
		t.Fatalf("whole write preferring 8 got %d (warm %v)", phys, warm)
	}
	if phys, warm, _ := a.allocNear(3, true, 0, 1, true); phys != 2 || !warm {
		t.Fatalf("whole write got %d (warm %v), want warm 2", phys, warm)
	}
	// Cooling by age takes what is still warm from the first batch (5).
	if cool := a.coolBefore(t0.Add(time.Second)); !slices.Equal(cool, []uint64{5}) {
		t.Fatalf("cooled %v, want [5]", cool)
	}
	a.releaseCooled([]uint64{5})
	if cool := a.coolAll(); !slices.Equal(cool, []uint64{9}) {
		t.Fatalf("cooled %v, want [9]", cool)
	}
	a.releaseCooled([]uint64{9})
	if used := a.usedCountNow(); used != 8 || a.warmBlocks() != 0 {
		t.Fatalf("used %d, warm %d; want 8 and 0", used, a.warmBlocks())
	}
	for _, phys := range []uint64{5, 9} {
		if a.isUsed(phys) {
			t.Fatalf("block %d still used after release", phys)
		}
	}
	if phys, warm, _ := a.allocNear(0, false, 0, 1, true); phys != 5 || warm {
		t.Fatalf("with nothing warm got %d (warm %v), want cold 5", phys, warm)
	}
}

// TestWarmBatchesStayBounded: blocks freed and reused over and over do not
// grow the record of when blocks turned warm.
func TestWarmBatchesStayBounded(t *testing.T) {
	a := newAllocator(0, 0, 16)
	for range 16 {
		a.alloc()
	}
	now := time.Unix(0, 0)
	for i := range 10000 {
		phys := uint64(i % 16)
		a.retire([]uint64{phys}, now)
		if got, warm, _ := a.allocNear(phys, true, 0, 1, true); got != phys || !warm {
			t.Fatalf("round %d: got %d (warm %v), want warm %d", i, got, warm, phys)
		}
	}
	if a.warmQueued > 2*16+64 {
		t.Fatalf("%d batch entries kept for 0 warm blocks", a.warmQueued)
	}
}

func (a *allocator) usedCountNow() uint64 {
	used, _ := a.stats()
	return used
}
