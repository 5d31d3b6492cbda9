package crashtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/rowfs/rowfs/rowengine"
)

// A crash run happens in a child process (the test binary run again), so
// that dying at a crash point is a real SIGKILL. These variables carry the
// run to it.
const (
	envDir   = "ROWFS_CRASH_DIR"  // model.json, hits.json and (by default) the pool
	envPool  = "ROWFS_CRASH_POOL" // the pool directory, if not DIR/pool
	envSeed  = "ROWFS_CRASH_SEED"
	envSteps = "ROWFS_CRASH_STEPS"
	envPoint = "ROWFS_CRASH_POINT" // empty: run to the end, counting hits
	envHit   = "ROWFS_CRASH_HIT"
	envChurn = "ROWFS_CRASH_CHURN" // set: the two-volume churn, resumed from DIR/verified.json
)

// Run is one crash run.
type Run struct {
	Dir   string // model.json and hits.json go here
	Pool  string // default Dir/pool
	Seed  uint64
	Steps int
	Point string // crash point; empty runs to the end
	Hit   int    // die at this hit of Point
	Churn bool
}

func (r Run) String() string { return fmt.Sprintf("seed %d, %s hit %d", r.Seed, r.Point, r.Hit) }

func (r Run) pool() string {
	if r.Pool != "" {
		return r.Pool
	}
	return filepath.Join(r.Dir, "pool")
}

// Options are the pool options of crash runs: blocks of four sectors, so
// sector writes are partial-block redirects, and a short commit interval,
// so background commits interleave with everything.
func Options(log *slog.Logger) rowengine.Options {
	return rowengine.Options{BlockSize: 4 * SectorSize, CommitInterval: 20e6, Logger: log, MetadataReserve: 1 << 20}
}

// Start runs r in a child process: testBinary -test.run=childTest, where
// childTest calls ChildMain. killed reports death by SIGKILL at the crash
// point rather than the end of the run.
func Start(testBinary, childTest string, r Run) (killed bool, out []byte, err error) {
	cmd := exec.Command(testBinary, "-test.run=^"+childTest+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), envDir+"="+r.Dir, envPool+"="+r.pool(), envSeed+"="+strconv.FormatUint(r.Seed, 10),
		envSteps+"="+strconv.Itoa(r.Steps), envPoint+"="+r.Point, envHit+"="+strconv.Itoa(r.Hit))
	if r.Churn {
		cmd.Env = append(cmd.Env, envChurn+"=1")
	}
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true, out, nil
		}
	}
	if err != nil {
		return false, out, fmt.Errorf("%s: child failed: %v\n%s", r, err, out)
	}
	return false, out, nil
}

// IsChild reports whether this process is a crash-run child.
func IsChild() bool { return os.Getenv(envDir) != "" }

// ChildMain is the child's whole life: open the pool, run the workload,
// die at the crash point. It returns only on an error or at the end of
// the run (then hits.json holds every point's hit count).
func ChildMain() error {
	r := Run{Dir: os.Getenv(envDir), Pool: os.Getenv(envPool), Point: os.Getenv(envPoint), Churn: os.Getenv(envChurn) != ""}
	r.Seed, _ = strconv.ParseUint(os.Getenv(envSeed), 10, 64)
	r.Steps, _ = strconv.Atoi(os.Getenv(envSteps))
	r.Hit, _ = strconv.Atoi(os.Getenv(envHit))
	hits := map[string]int{}
	var mu sync.Mutex
	saveHits := func() error {
		b, _ := json.Marshal(hits)
		return os.WriteFile(filepath.Join(r.Dir, "hits.json"), b, 0o600)
	}
	opts := Options(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	opts.CrashHook = func(p string) {
		mu.Lock()
		defer mu.Unlock()
		hits[p]++
		if p == r.Point && hits[p] == r.Hit {
			_ = saveHits()
			// As kill -9: no deferred function, no flush, no close.
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	pool, err := rowengine.Open(r.pool(), opts)
	if err != nil {
		return err
	}
	w := &Workload{T: Engine{P: pool}, M: NewModel(), Rnd: rand.New(rand.NewPCG(r.Seed, 7)), Cfg: Config{Churn: r.Churn},
		BeforeOp: func(m *Model) error { return m.Save(filepath.Join(r.Dir, "model.json")) }}
	if m, err := LoadModel(filepath.Join(r.Dir, "verified.json")); err == nil && r.Churn {
		w.M = m
	}
	for range r.Steps {
		if _, err := w.Step(); err != nil {
			return err
		}
	}
	if err := waitJobs(pool); err != nil {
		return err
	}
	if err := pool.Close(); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return saveHits()
}

// Hits reads the hit counts a child left in dir.
func Hits(dir string) (map[string]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "hits.json"))
	if err != nil {
		return nil, err
	}
	var hits map[string]int
	err = json.Unmarshal(b, &hits)
	return hits, err
}

func waitJobs(pool *rowengine.Pool) error {
	for _, j := range pool.Jobs() {
		// A job listed a moment ago may be finished and pruned: not found is fine.
		if _, err := pool.WaitJob(context.Background(), j.ID); err != nil && !errors.Is(err, rowengine.ErrNotFound) {
			return fmt.Errorf("job %d (%s %s): %w", j.ID, j.Kind, j.Target, err)
		}
	}
	return nil
}

// Recover opens a crashed pool as the daemon would, lets resumed jobs
// finish, runs the checker, and checks the contents against the model the
// child saved in dir. It returns the model of what it found.
func Recover(dir, pool string) (*Model, error) {
	m, err := LoadModel(filepath.Join(dir, "model.json"))
	if err != nil {
		return nil, fmt.Errorf("the child saved no model: %w", err)
	}
	log := &lockedWriter{}
	got, err := recoverPool(pool, m, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		// What Open did (resumed jobs, punched blocks) explains most failures.
		return nil, fmt.Errorf("%w\nrecovery log:\n%s", err, log.String())
	}
	return got, nil
}

func recoverPool(pool string, m *Model, log *slog.Logger) (*Model, error) {
	p, err := rowengine.Open(pool, Options(log))
	if err != nil {
		return nil, fmt.Errorf("open after crash: %w", err)
	}
	defer p.Close()
	if err := waitJobs(p); err != nil {
		return nil, fmt.Errorf("resumed %w", err)
	}
	rep, err := p.Check()
	if err != nil || !rep.Clean() {
		return nil, fmt.Errorf("checker after crash: %v; corruptions %q; leaks %q", err, rep.Corruptions, rep.Leaks)
	}
	if m.Inflight != nil && m.Inflight.Kind == "flatten" {
		m.Inflight = nil // a flatten changes no content
	}
	got, err := Verify(Engine{P: p}, m)
	if err != nil {
		return nil, fmt.Errorf("after crash (op in flight: %v): %w", m.Inflight, err)
	}
	return got, nil
}

// lockedWriter collects a log written from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
