package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	runtimemetrics "runtime/metrics"
	"strings"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

// parseMemoryLimit reads memory_limit: "off" (the default) or a size. Zero
// means off.
//
// The limit is opt-in because Go's collector runs without pause once the
// live heap reaches it, and rowfsd's live heap grows with concurrency (a
// request buffer of up to 1 MiB per request in flight), not only with the
// pool: a default limit measured on a fill cut concurrent reads to a third.
func parseMemoryLimit(s string) (int64, error) {
	if s == "" || strings.EqualFold(s, "off") {
		return 0, nil
	}
	n, err := api.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("memory limit %q: want off or a size like 256M: %w", s, err)
	}
	if n < 64<<20 || n > math.MaxInt64 {
		return 0, fmt.Errorf("memory limit %q: at least 64M, or the collector would run without pause", s)
	}
	return int64(n), nil
}

// defaultGCPercent is the collector's GOGC when the environment sets none:
// the heap may grow to 1.5× its live size between collections, not Go's 2×.
// rowfsd allocates little per request (8 s of 4 KiB random reads at 57k
// IOPS ran 8 collections at 100 and 15 at 50, each a few milliseconds of
// one core), so the collector's time stays under 1% while the headroom,
// most of the resident memory above the live heap, shrinks by half.
const defaultGCPercent = 50

// applyGCPercent sets defaultGCPercent unless GOGC is in the environment
// (then the runtime has already applied it).
func applyGCPercent(log *slog.Logger) {
	if env := os.Getenv("GOGC"); env != "" {
		log.Info("collector percent from GOGC", "value", env)
		return
	}
	debug.SetGCPercent(defaultGCPercent)
}

// applyMemoryLimit sets Go's soft memory limit. GOMEMLIMIT in the
// environment wins: the runtime has already applied it.
func applyMemoryLimit(limit int64, log *slog.Logger) {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		log.Info("memory limit from GOMEMLIMIT", "value", env)
		return
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("soft memory limit", "bytes", limit)
	}
}

// Memory trimming: the heap's pages beyond what the collector will use
// go back to the OS once a burst of allocation is over, not half a minute
// later.
//
// A 16 GiB fill or a snapshot round (Badger flushes a memtable: two 10 MiB
// arenas and a table builder live at once) lifts the heap to three times
// its resting size for a moment. Go's background scavenger then returns the
// surplus at about 1% of a CPU: 2 s after such a round rowfsd held 99 MiB
// anonymous, 30 s later 29 MiB, with a 25 MiB live heap throughout
// (issue 15). Two rules return it sooner:
//
//   - surplus: the heap holds trimMinSurplus more than the collector's
//     goal, so it will not grow into those pages before the next collection;
//   - quiet: no collection ran for trimQuietTicks after one did, then for
//     twice as long, and so on. A burst that was still live at the last
//     collection set a goal that hides its own surplus, and with little
//     allocating no collection comes to find it dead; only a collection
//     can tell, and a trim may come while the burst still lives, so the
//     trimmer tries again later, less and less often while all stays quiet
//     (an idle daemon collects a few times a minute, then about never).
//
// Under steady load the heap stays within its goal and collections keep
// coming, so neither rule fires: pages about to be reused would only be
// faulted back in.
const (
	// trimInterval is how often the trimmer looks.
	trimInterval = time.Second
	// trimMinSurplus is the memory beyond the heap goal worth a collection
	// to return: below it the scavenger's pace is fine.
	trimMinSurplus = 16 << 20
	// trimQuietTicks is how many looks without a collection make a quiet
	// stretch, and trimQuietMax the longest wait between its trims.
	trimQuietTicks = 3
	trimQuietMax   = 300
)

// memoryTrimmer reads the heap's size, goal and collections from
// runtime/metrics, and remembers the quiet stretch it is in.
type memoryTrimmer struct {
	log     *slog.Logger
	samples []runtimemetrics.Sample
	// cycles is the collection count at the last look (less the trims'
	// own), quiet the looks since it changed, nextQuiet the look of this
	// stretch's next trim.
	cycles    uint64
	quiet     int
	nextQuiet int
}

// Indexes into memoryTrimmer.samples.
const (
	sampleCycles = iota
	sampleGoal
	sampleBacked // this and the rest: heap memory backed by pages
)

func newMemoryTrimmer(log *slog.Logger) *memoryTrimmer {
	t := &memoryTrimmer{log: log, samples: []runtimemetrics.Sample{
		sampleCycles: {Name: "/gc/cycles/total:gc-cycles"},
		sampleGoal:   {Name: "/gc/heap/goal:bytes"},
		sampleBacked: {Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}}
	t.cycles, _ = t.read()
	t.nextQuiet = trimQuietTicks
	return t
}

// read is the collection count and the heap memory still backed by pages
// beyond the collector's goal: what the heap holds and will not grow into
// before the next collection.
func (t *memoryTrimmer) read() (cycles uint64, surplus int64) {
	runtimemetrics.Read(t.samples)
	var backed int64
	for _, s := range t.samples[sampleBacked:] {
		backed += int64(s.Value.Uint64())
	}
	return t.samples[sampleCycles].Value.Uint64(), backed - int64(t.samples[sampleGoal].Value.Uint64())
}

// step applies the two rules and reports whether it trimmed
// (debug.FreeOSMemory: a collection, then every free page released).
func (t *memoryTrimmer) step() bool {
	cycles, surplus := t.read()
	if cycles != t.cycles {
		t.cycles, t.quiet, t.nextQuiet = cycles, 0, trimQuietTicks
	} else {
		t.quiet++
	}
	rule := ""
	switch {
	case surplus >= trimMinSurplus:
		rule = "surplus"
	case t.quiet >= t.nextQuiet:
		rule = "quiet"
		t.nextQuiet = min(2*t.nextQuiet, t.quiet+trimQuietMax)
	default:
		return false
	}
	debug.FreeOSMemory()
	t.cycles, _ = t.read() // the trim's own collection ends no stretch
	t.log.Debug("returned the heap's free pages to the OS", "rule", rule, "surplus_bytes", surplus)
	return true
}

// run steps every trimInterval until ctx ends.
func (t *memoryTrimmer) run(ctx context.Context) {
	tick := time.NewTicker(trimInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.step()
		}
	}
}
