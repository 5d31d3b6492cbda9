package rowengine_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/crashtest"
)

var (
	crashSeeds = flag.Int("crash.seeds", 10, "workload seeds of the crash-point test")
	crashSteps = flag.Int("crash.steps", 150, "workload steps per crash-point run")
)

// Environment of the child process that runs the workload and dies.
const (
	envCrashDir   = "ROWFS_CRASH_DIR"
	envCrashSeed  = "ROWFS_CRASH_SEED"
	envCrashSteps = "ROWFS_CRASH_STEPS"
	envCrashPoint = "ROWFS_CRASH_POINT" // empty: run to the end, counting hits
	envCrashHit   = "ROWFS_CRASH_HIT"
)

// crashOptions are the pool options of the crash tests: blocks of four
// sectors, so sector writes are partial-block redirects, and a short
// commit interval, so background commits interleave with everything.
func crashOptions(log *slog.Logger) rowengine.Options {
	return rowengine.Options{BlockSize: 4 * crashtest.SectorSize, CommitInterval: 20e6, Logger: log, MetadataReserve: 1 << 20}
}

// TestCrashChild is the child process of TestCrashPoints; it does nothing
// in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashPoints")
	}
	seed, _ := strconv.ParseUint(os.Getenv(envCrashSeed), 10, 64)
	steps, _ := strconv.Atoi(os.Getenv(envCrashSteps))
	point := os.Getenv(envCrashPoint)
	hit, _ := strconv.Atoi(os.Getenv(envCrashHit))
	hits := map[string]int{}
	var mu sync.Mutex
	opts := crashOptions(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	opts.CrashHook = func(p string) {
		mu.Lock()
		defer mu.Unlock()
		hits[p]++
		if p == point && hits[p] == hit {
			// As kill -9: no deferred function, no flush, no close.
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	pool, err := rowengine.Open(filepath.Join(dir, "pool"), opts)
	if err != nil {
		t.Fatal(err)
	}
	w := &crashtest.Workload{T: crashtest.Engine{P: pool}, M: crashtest.NewModel(), Rnd: rand.New(rand.NewPCG(seed, 7)),
		BeforeOp: func(m *crashtest.Model) error { return m.Save(filepath.Join(dir, "model.json")) }}
	for range steps {
		if _, err := w.Step(); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range pool.Jobs() {
		if _, err := pool.WaitJob(context.Background(), j.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	b, _ := json.Marshal(hits)
	if err := os.WriteFile(filepath.Join(dir, "hits.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

type crashRun struct {
	seed  uint64
	point string
	hit   int
}

func (c crashRun) String() string { return fmt.Sprintf("seed %d, %s hit %d", c.seed, c.point, c.hit) }

// runChild runs the workload in a child process; killed reports that it
// died at the crash point (SIGKILL) rather than finishing.
func runChild(t *testing.T, dir string, c crashRun) (killed bool, out []byte) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashSeed+"="+strconv.FormatUint(c.seed, 10),
		envCrashSteps+"="+strconv.Itoa(*crashSteps), envCrashPoint+"="+c.point, envCrashHit+"="+strconv.Itoa(c.hit))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true, out
		}
	}
	if err != nil {
		t.Fatalf("%s: child failed: %v\n%s", c, err, out)
	}
	return false, out
}

// TestCrashPoints kills a workload at every crash point, at several hit
// counts and seeds, then opens the pool and checks it: the pool opens,
// interrupted jobs finish, the checker is clean, and the volumes and
// snapshots hold what the durability promise says (crashtest.Verify).
func TestCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("crash-point runs take about a minute")
	}
	base := fastTempDir(t)
	var runs []crashRun
	for s := range *crashSeeds {
		seed := uint64(1000 + s)
		dir := filepath.Join(base, fmt.Sprintf("dry%d", seed))
		if _, out := runChild(t, dir, crashRun{seed: seed}); false {
			t.Log(string(out))
		}
		b, err := os.ReadFile(filepath.Join(dir, "hits.json"))
		if err != nil {
			t.Fatalf("seed %d: dry run left no hit counts: %v", seed, err)
		}
		var hits map[string]int
		if err := json.Unmarshal(b, &hits); err != nil {
			t.Fatal(err)
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
				runs = append(runs, crashRun{seed: seed, point: p, hit: h})
			}
		}
		os.RemoveAll(dir)
	}

	var mu sync.Mutex
	states := map[string]int{}
	var failures []string
	work := make(chan crashRun)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				dir := filepath.Join(base, strings.NewReplacer("/", "_", " ", "_", ",", "").Replace(c.String()))
				killed, out := runChild(t, dir, c)
				if !killed {
					os.RemoveAll(dir)
					continue // the point was not reached this time (timing)
				}
				err := recoverAndVerify(dir)
				mu.Lock()
				states[c.point]++
				if err != nil {
					failures = append(failures, fmt.Sprintf("%s: %v\nchild output:\n%s", c, err, tail(out, 20)))
				}
				mu.Unlock()
				if err == nil {
					os.RemoveAll(dir)
				}
			}
		}()
	}
	for _, c := range runs {
		work <- c
	}
	close(work)
	wg.Wait()

	total := 0
	var lines []string
	for _, p := range rowengine.CrashPoints {
		total += states[p]
		lines = append(lines, fmt.Sprintf("%s=%d", p, states[p]))
		if states[p] < 3 {
			t.Errorf("crash point %s: %d crash states, want at least 3", p, states[p])
		}
	}
	t.Logf("crash states: %d in all (%s)", total, strings.Join(lines, " "))
	fmt.Printf("crash-point test: %d crash states over %d seeds, %d points\n", total, *crashSeeds, len(rowengine.CrashPoints))
	if total < 500 {
		t.Errorf("%d crash states, want at least 500", total)
	}
	for _, f := range failures {
		t.Error(f)
	}
}

// recoverAndVerify opens a crashed pool as the daemon would and checks it.
func recoverAndVerify(dir string) error {
	m, err := crashtest.LoadModel(filepath.Join(dir, "model.json"))
	if err != nil {
		return fmt.Errorf("the child saved no model: %w", err)
	}
	var logBuf strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logBuf, mu: &logMu}, nil))
	pool, err := rowengine.Open(filepath.Join(dir, "pool"), crashOptions(log))
	if err != nil {
		return fmt.Errorf("open after crash: %w", err)
	}
	defer pool.Close()
	for _, j := range pool.Jobs() {
		if _, err := pool.WaitJob(context.Background(), j.ID); err != nil {
			return fmt.Errorf("resumed job: %w", err)
		}
	}
	rep, err := pool.Check()
	if err != nil || !rep.Clean() {
		return fmt.Errorf("checker after crash: %v; corruptions %q; leaks %q", err, rep.Corruptions, rep.Leaks)
	}
	if m.Inflight != nil && m.Inflight.Kind == "flatten" {
		m.Inflight = nil // a flatten changes no content
	}
	if _, err := crashtest.Verify(crashtest.Engine{P: pool}, m); err != nil {
		return fmt.Errorf("after crash (op in flight: %v): %w", m.Inflight, err)
	}
	return nil
}

type lockedWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
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
