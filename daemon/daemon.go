package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
	rowfs "github.com/rowfs/rowfs/fs"
	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/rbd"
)

// Run serves the configured pool until ctx is cancelled, then shuts down
// cleanly: control socket, mount, pool (which commits all metadata).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.EnsureDefaults()
	opts, err := cfg.engineOptions(log)
	if err != nil {
		return err
	}
	if spec := os.Getenv(CrashEnv); spec != "" {
		if opts.CrashHook, err = crashHook(spec, log); err != nil {
			return err
		}
	}
	mountDir, err := filepath.Abs(cfg.Mount)
	if err != nil {
		return err
	}
	poolDir, err := filepath.Abs(cfg.Pool)
	if err != nil {
		return err
	}
	// Before the pool is opened (or created): a mount point that is not
	// ours to take is refused with nothing touched.
	mountPoint, err := inspectMountPoint(mountDir, poolDir)
	if err != nil {
		return err
	}
	// So is a socket group that does not exist or a socket a live daemon
	// serves: a config error leaves no new pool behind.
	socketGID := -1
	if cfg.SocketGroup != "" {
		if socketGID, err = lookupGroup(cfg.SocketGroup); err != nil {
			return fmt.Errorf("control socket group %q: %w", cfg.SocketGroup, err)
		}
	}
	if err := refuseLiveSocket(cfg.Socket); err != nil {
		return err
	}
	timeout, _ := cfg.cephTimeout() // validated by engineOptions
	opts.RBD = rbd.New(rbd.Options{Conf: cfg.CephConf, ID: cfg.CephID, Timeout: timeout, Logger: log,
		StateFile: filepath.Join(cfg.Pool, "rbd-client")})
	if !rbd.BuiltIn {
		log.Info("RBD backend not built in: RBD volumes report an error (build with make for it)")
	}
	historyInterval, historyOpts, _ := cfg.history() // validated by engineOptions
	var met *metrics
	if cfg.Metrics != "" {
		// Created before the pool so the first commit is counted; the
		// collector reads the pool once it is set.
		met = newMetrics()
		opts.CommitObserver = met.observeCommit
	}
	pool, err := rowengine.Open(cfg.Pool, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := pool.Close(); err != nil {
			log.Error("closing pool", "err", err)
		}
	}()
	if err := cfg.applyPoolSettings(pool); err != nil {
		return err
	}

	if err := mountPoint.clearIfDead(log); err != nil {
		return err
	}
	if err := os.MkdirAll(mountDir, 0o755); err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	sched := newScheduler(pool, time.Now, log)
	backupCfg, _ := cfg.backupSettings() // validated by engineOptions
	srv := &server{pool: pool, dir: mountDir, log: log, sched: sched, historyInterval: historyInterval, historyOpts: historyOpts,
		backups: newBackups(pool, backupCfg, log)}
	sched.backups = srv.backups
	fsOpts := rowfs.Options{
		Engine: pool, Describer: srv, AllowOther: *cfg.AllowOther, Logger: log, Debug: cfg.DebugFUSE,
		Source: mountSource(poolDir), AllowFileShrink: cfg.AllowFileShrink,
	}
	if met != nil {
		met.collect(pool)
		sched.ran = met.policyRan
		fsOpts.Meter = met
		srv.backups.done, srv.backups.seen = met.backupDone, met.backupSeen
	}
	mount, err := rowfs.MountPool(mountDir, fsOpts)
	if err != nil {
		return err
	}
	srv.mount = mount
	if met != nil {
		srv.mount = notifiers{mount, met}
	}
	srv.backups.resumeInterrupted()
	srv.backups.refreshAll()
	defer func() {
		logOpenVolumes(pool.Volumes(), mountDir, log)
		if err := mount.Unmount(); err != nil {
			log.Error("unmount", "mount", mountDir, "err", err)
		}
	}()

	ln, err := listenControl(cfg.Socket, socketGID)
	if err != nil {
		return err
	}
	policy := peerPolicy{uids: cfg.AllowedUIDs, gids: cfg.AllowedGIDs}
	if socketGID >= 0 {
		policy.gids = append(policy.gids, socketGID)
	}
	httpSrv := &http.Server{Handler: policy.checkPeer(srv.routes()), ReadHeaderTimeout: 10 * time.Second,
		ConnContext: peerCred, MaxHeaderBytes: 64 << 10}
	served := make(chan error, 1)
	go func() { served <- httpSrv.Serve(ln) }()
	schedCtx, stopSched := context.WithCancel(ctx)
	schedDone := make(chan struct{})
	go func() { sched.run(schedCtx); close(schedDone) }()
	defer func() { stopSched(); <-schedDone }()
	defer os.Remove(cfg.Socket)
	if historyInterval > 0 {
		sampler := &historySampler{pool: pool, now: time.Now, interval: historyInterval, opts: historyOpts, log: log}
		sampleCtx, stopSampling := context.WithCancel(ctx)
		sampleDone := make(chan struct{})
		go func() { sampler.run(sampleCtx); close(sampleDone) }()
		defer func() { stopSampling(); <-sampleDone }()
	}
	if met != nil {
		stopMetrics, err := serveMetrics(cfg.Metrics, cfg.MetricsAllowRemote, srv.webRoutes(met), log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}

	if cfg.Pprof != "" {
		stopPprof, err := servePprof(cfg.Pprof, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	memLimit, _ := parseMemoryLimit(cfg.MemoryLimit) // validated by engineOptions
	applyGCPercent(log)
	applyMemoryLimit(memLimit, log)
	trimCtx, stopTrimming := context.WithCancel(ctx)
	trimDone := make(chan struct{})
	go func() { newMemoryTrimmer(log).run(trimCtx); close(trimDone) }()
	defer func() { stopTrimming(); <-trimDone }()

	log.Info("rowfsd ready", "pool", cfg.Pool, "mount", mountDir, "socket", cfg.Socket, "block_size", pool.BlockSize(), "version", api.Version)
	notifyReady(log)
	if interval := watchdogInterval(); interval > 0 {
		wdCtx, stopWatchdog := context.WithCancel(ctx)
		wdDone := make(chan struct{})
		// Alive: the pool answers Info, which takes the allocator's and the
		// volume map's locks; an operation stuck holding one blocks the
		// ping, and systemd restarts the daemon.
		go func() {
			runWatchdog(wdCtx, interval, func() bool { _ = pool.Info(); return true }, log)
			close(wdDone)
		}()
		defer func() { stopWatchdog(); <-wdDone }()
		log.Info("systemd watchdog on", "interval", interval)
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-served:
		log.Error("control server stopped", "err", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = httpSrv.Shutdown(shutdownCtx)
	return nil
}

// refuseLiveSocket fails if a live daemon answers on the control socket
// path (one a dead daemon left is replaced by listenControl).
func refuseLiveSocket(path string) error {
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("control socket %s is in use by another rowfsd; choose another --socket", path)
	}
	return nil
}

// listenControl listens on the control socket with mode 0660, owned by
// gid unless it is -1. A socket file left by a dead daemon is replaced;
// one a live daemon answers on is not.
func listenControl(path string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if err := refuseLiveSocket(path); err != nil {
		return nil, err
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o117)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(path, os.Getuid(), gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control socket group %d: %w", gid, err)
		}
	}
	return ln, nil
}

// CrashEnv, set to POINT:N, arms the test-only crash switch: the daemon
// kills itself with SIGKILL at the Nth hit of engine crash point POINT
// (rowengine.CrashPoints), leaving whatever a real crash there would.
const CrashEnv = "ROWFSD_CRASH_AT"

func crashHook(spec string, log *slog.Logger) (func(string), error) {
	point, count, ok := strings.Cut(spec, ":")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 1 || !slices.Contains(rowengine.CrashPoints, point) {
		return nil, fmt.Errorf("%s=%q: want POINT:N with N ≥ 1 and POINT one of %s", CrashEnv, spec, strings.Join(rowengine.CrashPoints, ", "))
	}
	log.Warn("TEST-ONLY crash switch armed: this daemon will kill itself", "point", point, "hit", n)
	var mu sync.Mutex
	hits := 0
	return func(p string) {
		if p != point {
			return
		}
		mu.Lock()
		hits++
		fire := hits == n
		mu.Unlock()
		if fire {
			fmt.Fprintf(os.Stderr, "rowfsd: crash switch: SIGKILL at %s hit %d\n", point, n)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}, nil
}

func lookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// sdNotify sends state to the service manager (or a test) by the
// sd_notify protocol on NOTIFY_SOCKET; without one it does nothing.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// notifyReady tells the service manager that the mount and the control
// socket are up (READY=1).
func notifyReady(log *slog.Logger) {
	if err := sdNotify("READY=1\nSTATUS=serving\nMAINPID=" + strconv.Itoa(os.Getpid())); err != nil {
		log.Warn("sd_notify failed", "err", err)
	}
}

// watchdogInterval is how often to tell systemd the daemon lives: half of
// WatchdogSec (WATCHDOG_USEC), if the watchdog is on and meant for this
// process (WATCHDOG_PID, when set, names it); 0 if off.
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// runWatchdog sends WATCHDOG=1 every interval until ctx ends. A ping goes
// only while the control loop can answer: a wedged daemon stops pinging,
// and systemd restarts it (Restart=on-failure).
func runWatchdog(ctx context.Context, interval time.Duration, alive func() bool, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if alive() {
			if err := sdNotify("WATCHDOG=1"); err != nil {
				log.Warn("sd_notify WATCHDOG=1 failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// servePprof serves net/http/pprof on a loopback address until stopped.
// It also turns on the mutex and block profiles (off by default in Go),
// because what slows a FUSE server under load is as often a wait as a
// computation: a sampled 1 in 10 contended unlocks, and a blocking event
// per 10 µs spent blocked, cost little next to a FUSE round trip.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: %w", err)
	}
	runtime.SetMutexProfileFraction(10)
	runtime.SetBlockProfileRate(int((10 * time.Microsecond).Nanoseconds()))
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("serving pprof", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
