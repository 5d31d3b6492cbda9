package rowengine_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/crashtest"
)

var (
	crashSeeds = flag.Int("crash.seeds", 10, "workload seeds of the crash-point test")
	crashSteps = flag.Int("crash.steps", 150, "workload steps per crash-point run")
)

// TestCrashChild is the child process of the crash tests; it does nothing
// in a normal run.
func TestCrashChild(t *testing.T) {
	if !crashtest.IsChild() {
		t.Skip("runs only as the child of the crash tests")
	}
	if err := crashtest.ChildMain(); err != nil {
		t.Fatal(err)
	}
}

func runChild(t *testing.T, r crashtest.Run) (killed bool, out []byte) {
	t.Helper()
	killed, out, err := crashtest.Start(os.Args[0], "TestCrashChild", r)
	if err != nil {
		t.Fatal(err)
	}
	return killed, out
}

// TestCrashPoints kills a workload at every crash point, at several hit
// counts and seeds, then opens the pool and checks it: the pool opens,
// interrupted jobs finish, the checker is clean, and the volumes and
// snapshots hold what the durability promise says (crashtest.Verify).
func TestCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("crash-point runs take about 30 s")
	}
	base := fastTempDir(t)
	var runs []crashtest.Run
	for s := range *crashSeeds {
		seed := uint64(1000 + s)
		dir := filepath.Join(base, fmt.Sprintf("dry%d", seed))
		runChild(t, crashtest.Run{Dir: dir, Seed: seed, Steps: *crashSteps})
		hits, err := crashtest.Hits(dir)
		if err != nil {
			t.Fatalf("seed %d: dry run left no hit counts: %v", seed, err)
		}
		rnd := rand.New(rand.NewPCG(seed, 1))
		for _, p := range rowengine.CrashPoints {
			n := hits[p]
			if n == 0 {
				continue
			}
			picks := []int{1, n, (n + 1) / 2, 1 + rnd.IntN(n)}
			slices.Sort(picks)
			for _, h := range slices.Compact(picks) {
				runs = append(runs, crashtest.Run{Seed: seed, Steps: *crashSteps, Point: p, Hit: h})
			}
		}
		os.RemoveAll(dir)
	}

	var mu sync.Mutex
	states := map[string]int{}
	var failures []string
	work := make(chan crashtest.Run)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				r.Dir = filepath.Join(base, strings.NewReplacer(" ", "_", ",", "").Replace(r.String()))
				killed, out := runChild(t, r)
				if !killed {
					os.RemoveAll(r.Dir)
					continue // the point was not reached this time (timing)
				}
				_, err := crashtest.Recover(r.Dir, filepath.Join(r.Dir, "pool"))
				mu.Lock()
				states[r.Point]++
				if err != nil {
					failures = append(failures, fmt.Sprintf("%s: %v\nchild output:\n%s", r, err, tail(out, 20)))
				}
				mu.Unlock()
				if err == nil {
					os.RemoveAll(r.Dir)
				}
			}
		}()
	}
	for _, r := range runs {
		work <- r
	}
	close(work)
	wg.Wait()

	total, fewest := 0, 1<<30
	var lines []string
	for _, p := range rowengine.CrashPoints {
		total += states[p]
		fewest = min(fewest, states[p])
		lines = append(lines, fmt.Sprintf("%s=%d", p, states[p]))
		if states[p] < 3 {
			t.Errorf("crash point %s: %d crash states, want at least 3", p, states[p])
		}
	}
	t.Logf("crash states: %d in all (%s)", total, strings.Join(lines, " "))
	crashtest.Report("crash-point test: %d crash states over %d seeds, %d points (each point %d or more)", total, *crashSeeds, len(rowengine.CrashPoints), fewest)
	if total < 500 {
		t.Errorf("%d crash states, want at least 500", total)
	}
	for _, f := range failures {
		t.Error(f)
	}
}

// TestBlockReuse churns two volumes (writes, discards, snapshot deletes)
// so that blocks are freed and reused over and over, killing the process
// between a free and the reuse (free.punched, commit.synced) and just
// after a reuse (alloc), until 10,000 blocks have been allocated. After
// each crash a read must return only the volume's own data or zeros:
// never the other volume's, nor a deleted snapshot's (crashtest.Verify
// allows only tags the model wrote to that sector).
func TestBlockReuse(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 10 s")
	}
	dir := fastTempDir(t)
	points := []string{rowengine.CrashFreePunched, rowengine.CrashCommitSynced, rowengine.CrashAlloc}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	allocs, frees, crashes := 0, 0, 0
	for round := 0; allocs < 10000; round++ {
		if round > 200 {
			t.Fatalf("only %d allocations after %d rounds", allocs, round)
		}
		r := crashtest.Run{Dir: dir, Seed: uint64(round), Steps: 600, Churn: true,
			Point: points[round%len(points)], Hit: 20 + rnd.IntN(300)}
		os.Remove(filepath.Join(dir, "hits.json"))
		killed, out := runChild(t, r)
		hits, _ := crashtest.Hits(dir)
		allocs += hits[rowengine.CrashAlloc]
		frees += hits[rowengine.CrashFreePunched]
		if killed {
			crashes++
		}
		verified, err := crashtest.Recover(dir, filepath.Join(dir, "pool"))
		if err != nil {
			t.Fatalf("round %d (%s): %v\nchild output:\n%s", round, r, err, tail(out, 20))
		}
		if err := verified.Save(filepath.Join(dir, "verified.json")); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d blocks allocated, %d free batches, %d crashes between free and reuse", allocs, frees, crashes)
	crashtest.Report("block reuse test: %d allocations, %d free batches, %d crashes", allocs, frees, crashes)
}

func tail(b []byte, lines int) string {
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

func fastTempDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "rowfs-crash-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}
