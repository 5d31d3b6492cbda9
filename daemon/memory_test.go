package daemon

import (
	"log/slog"
	"runtime"
	"testing"
)

// sink keeps the test's allocations from being optimised away.
var sink [][]byte

func TestMemoryTrimmerReturnsTheSurplusOfABurst(t *testing.T) {
	tr := newMemoryTrimmer(slog.New(slog.DiscardHandler))
	runtime.GC()
	if tr.step() {
		t.Logf("trimmed what earlier tests left")
	}
	if got := tr.surplus(); got >= trimMinSurplus {
		t.Fatalf("surplus %d after a trim, want under %d", got, trimMinSurplus)
	}
	if tr.step() {
		t.Fatal("trimmed with no surplus")
	}
	// A burst: 64 MiB live, then garbage; after a collection the goal is
	// small again and the 64 MiB is surplus.
	sink = make([][]byte, 64)
	for i := range sink {
		sink[i] = make([]byte, 1<<20)
		sink[i][0] = 1
	}
	runtime.GC()
	sink = nil
	runtime.GC()
	if got := tr.surplus(); got < 32<<20 {
		t.Fatalf("surplus %d after a 64 MiB burst, want at least 32 MiB", got)
	}
	if !tr.step() {
		t.Fatal("did not trim the surplus of a burst")
	}
	if got := tr.surplus(); got >= trimMinSurplus {
		t.Fatalf("surplus %d after the trim, want under %d", got, trimMinSurplus)
	}
}
