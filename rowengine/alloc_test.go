package rowengine

import "testing"

// TestAllocNear checks the placement rules and that placing a block high
// never hides the free blocks below it from alloc.
func TestAllocNear(t *testing.T) {
	a := newAllocator(0, 0)
	got := func(prefer uint64, wanted bool, slot uint64) uint64 {
		t.Helper()
		phys, err := a.allocNear(prefer, wanted, slot, 16)
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

	full := newAllocator(0, 8) // capacity 8 blocks: placement may not grow past it
	for i := range uint64(8) {
		if _, err := full.allocNear(0, false, 15, 16); err != nil {
			t.Fatalf("block %d of 8: %v", i, err)
		}
	}
	if _, err := full.allocNear(0, false, 15, 16); err == nil {
		t.Fatal("a ninth block in a pool of 8")
	}
}
