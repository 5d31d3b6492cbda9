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
	"time"

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
	envCrashChurn = "ROWFS_CRASH_CHURN" // set: the two-volume churn, resumed from model.json
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
			b, _ := json.Marshal(hits)
			_ = os.WriteFile(filepath.Join(dir, "hits.json"), b, 0o600)
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
	if os.Getenv(envCrashChurn) != "" {
		w.Cfg.Churn = true
		if m, err := crashtest.LoadModel(filepath.Join(dir, "verified.json")); err == nil {
			w.M = m
		}
	}
	for range steps {
		if _, err := w.Step(); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range pool.Jobs() {
		if _, err := pool.WaitJob(context.Background(), j.ID); err != nil && !errors.Is(err, rowengine.ErrNotFound) {
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
func runChild(t *testing.T, dir string, c crashRun, env ...string) (killed bool, out []byte) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashSeed+"="+strconv.FormatUint(c.seed, 10),
		envCrashSteps+"="+strconv.Itoa(*crashSteps), envCrashPoint+"="+c.point, envCrashHit+"="+strconv.Itoa(c.hit))
	cmd.Env = append(cmd.Env, env...)
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
	_, err = openAndVerify(dir, m)
	return err
}

// openAndVerify opens the pool, lets resumed jobs finish, runs the checker
// and checks the contents against m; it returns the model of what it found.
func openAndVerify(dir string, m *crashtest.Model) (*crashtest.Model, error) {
	var logBuf strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logBuf, mu: &logMu}, nil))
	pool, err := rowengine.Open(filepath.Join(dir, "pool"), crashOptions(log))
	if err != nil {
		return nil, fmt.Errorf("open after crash: %w", err)
	}
	defer pool.Close()
	for _, j := range pool.Jobs() {
		if _, err := pool.WaitJob(context.Background(), j.ID); err != nil && !errors.Is(err, rowengine.ErrNotFound) {
			return nil, fmt.Errorf("resumed job: %w", err)
		}
	}
	rep, err := pool.Check()
	if err != nil || !rep.Clean() {
		return nil, fmt.Errorf("checker after crash: %v; corruptions %q; leaks %q", err, rep.Corruptions, rep.Leaks)
	}
	if m.Inflight != nil && m.Inflight.Kind == "flatten" {
		m.Inflight = nil // a flatten changes no content
	}
	got, err := crashtest.Verify(crashtest.Engine{P: pool}, m)
	if err != nil {
		return nil, fmt.Errorf("after crash (op in flight: %v): %w", m.Inflight, err)
	}
	return got, nil
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

// TestBlockReuse churns two volumes (writes, discards, snapshot deletes)
// so that blocks are freed and reused over and over, killing the process
// between a free and the reuse (free.punched, commit.synced) and just
// after a reuse (alloc), until 10,000 blocks have been allocated. After
// each crash a read must return only the volume's own data or zeros:
// never the other volume's, nor a deleted snapshot's (crashtest.Verify
// allows only tags the model wrote to that sector).
func TestBlockReuse(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 20 s")
	}
	dir := fastTempDir(t)
	points := []string{rowengine.CrashFreePunched, rowengine.CrashCommitSynced, rowengine.CrashAlloc}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	allocs, frees, crashes := 0, 0, 0
	for round := 0; allocs < 10000; round++ {
		if round > 200 {
			t.Fatalf("only %d allocations after %d rounds", allocs, round)
		}
		c := crashRun{seed: uint64(round), point: points[round%len(points)], hit: 20 + rnd.IntN(300)}
		os.Remove(filepath.Join(dir, "hits.json"))
		killed, out := runChild(t, dir, c, envCrashChurn+"=1", envCrashSteps+"=600")
		var hits map[string]int
		if b, err := os.ReadFile(filepath.Join(dir, "hits.json")); err == nil {
			_ = json.Unmarshal(b, &hits)
		}
		allocs += hits[rowengine.CrashAlloc]
		frees += hits[rowengine.CrashFreePunched]
		if killed {
			crashes++
		}
		m, err := crashtest.LoadModel(filepath.Join(dir, "model.json"))
		if err != nil {
			t.Fatal(err)
		}
		verified, err := openAndVerify(dir, m)
		if err != nil {
			t.Fatalf("round %d (%s): %v\nchild output:\n%s", round, c, err, tail(out, 20))
		}
		if err := verified.Save(filepath.Join(dir, "verified.json")); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d blocks allocated, %d free batches, %d crashes between free and reuse", allocs, frees, crashes)
	fmt.Printf("block reuse test: %d allocations, %d free batches, %d crashes\n", allocs, frees, crashes)
}
