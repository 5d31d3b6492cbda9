package daemon

import (
	"log/slog"
	"runtime"
	"slices"
	"testing"
)

// sink keeps the test's allocations from being optimised away.
var sink [][]byte

// burst allocates n MiB and keeps it live until the returned func drops it.
func burst(n int) (drop func()) {
	sink = make([][]byte, n)
	for i := range sink {
		sink[i] = make([]byte, 1<<20)
		sink[i][0] = 1
	}
	return func() { sink = nil }
}

func surplusOf(tr *memoryTrimmer) int64 { _, s := tr.read(); return s }

// A collection by another goroutine between two steps of these tests
// changes what the trimmer sees; each test tries again then.
const trimAttempts = 5

func TestMemoryTrimmerSurplusRule(t *testing.T) {
	tr := newMemoryTrimmer(slog.New(slog.DiscardHandler))
	for range trimAttempts {
		drop := burst(64)
		runtime.GC() // 64 MiB live: the goal rises
		drop()
		runtime.GC() // now garbage: the goal falls, the pages stay
		if got := surplusOf(tr); got < 32<<20 {
			t.Fatalf("surplus %d after a 64 MiB burst, want at least 32 MiB", got)
		}
		if !tr.step() {
			t.Fatal("did not trim the surplus of a burst")
		}
		if got := surplusOf(tr); got >= trimMinSurplus {
			t.Fatalf("surplus %d after the trim, want under %d", got, trimMinSurplus)
		}
		if !tr.step() {
			return // nothing left over the goal, and the quiet stretch is young
		}
	}
	t.Fatal("never settled after a trim")
}

func TestMemoryTrimmerQuietRule(t *testing.T) {
	tr := newMemoryTrimmer(slog.New(slog.DiscardHandler))
	for range trimAttempts {
		drop := burst(64)
		runtime.GC() // the burst is live at this collection: its goal hides its pages
		drop()
		if tr.step() {
			continue // a surplus from before; the next attempt starts clean
		}
		// A stretch is trimmed at looks 3, 6, 12, ...: the first trim
		// returns the dead burst, the later ones whatever died since.
		trims := []int{}
		for look := 1; look <= 4*trimQuietTicks; look++ {
			if tr.step() {
				trims = append(trims, look)
			}
			if look == trimQuietTicks {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if idle := m.HeapIdle - m.HeapReleased; len(trims) == 1 && idle >= trimMinSurplus {
					t.Fatalf("%d bytes of idle heap still backed after the quiet trim", idle)
				}
			}
		}
		want := []int{trimQuietTicks, 2 * trimQuietTicks, 4 * trimQuietTicks}
		if !slices.Equal(trims, want) {
			t.Logf("trimmed a quiet stretch at looks %v, want %v (or another collection restarted it)", trims, want)
			continue
		}
		return
	}
	t.Fatalf("%d quiet stretches in a row were not trimmed as they should be", trimAttempts)
}
