package rowengine

import (
	"slices"
	"testing"
)

func TestMergeRuns(t *testing.T) {
	got := mergeRuns([]blockRun{{9, 1}, {0, 2}}, []blockRun{{2, 1}, {5, 3}, {6, 1}, {20, 1}})
	want := []blockRun{{0, 3}, {5, 3}, {9, 1}, {20, 1}}
	if !slices.Equal(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
}

// TestDirtyRuns: repeats and neighbours coalesce, a full record compacts
// before it gives up, and past the bound the next flush is whole; take
// hands over and empties, restore gives back.
func TestDirtyRuns(t *testing.T) {
	var d dirtyRuns
	d.addBytes(0, 4096, 65536)
	d.addBytes(100, 10, 65536)      // the same block
	d.addBytes(65536, 65537, 65536) // blocks 1 and 2, after block 0
	d.addBytes(10*65536, 0, 65536)  // nothing
	runs, whole, gen := d.take()
	if want := []blockRun{{0, 3}}; !slices.Equal(runs, want) || whole || gen != 1 {
		t.Fatalf("took %v whole=%v gen %d, want %v, false, 1", runs, whole, gen, want)
	}
	if runs, _, _ := d.take(); len(runs) != 0 {
		t.Fatalf("a second take got %v", runs)
	}
	for i := range uint64(maxDirtyRuns + 10) { // the same 10 blocks over and over
		d.add(i%10*2, 1)
	}
	if runs, whole, _ := d.take(); whole || len(runs) > 20 || len(mergeRuns(runs, nil)) != 10 {
		t.Fatalf("repeated blocks: took %d runs whole=%v, want the 10 blocks, compacted", len(runs), whole)
	}
	for i := range uint64(maxDirtyRuns + 1) {
		d.add(i*2, 1)
	}
	runs, whole, _ = d.take()
	if !whole || runs != nil {
		t.Fatalf("past the bound: took %d runs whole=%v, want a whole flush", len(runs), whole)
	}
	d.add(7, 1)
	d.restore([]blockRun{{3, 2}}, false)
	if runs, whole, _ := d.take(); whole || !slices.Equal(runs, []blockRun{{3, 2}, {7, 1}}) {
		t.Fatalf("after restore took %v whole=%v", runs, whole)
	}
}
