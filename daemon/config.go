package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// Config is rowfsd's configuration. Every field can be set in the TOML
// config file (by its toml name) and by the command-line flag of the same
// name; flags win.
type Config struct {
	// Pool is the pool directory. Required.
	Pool string `toml:"pool"`
	// Mount is where volumes appear. Required.
	Mount string `toml:"mount"`
	// Socket is the control socket. Default api.DefaultSocket.
	Socket string `toml:"socket"`
	// SocketGroup, if set, owns the socket (mode 0660) so its members may use rowctl.
	SocketGroup string `toml:"socket_group"`
	// AllowedUIDs and AllowedGIDs may use the control socket besides root,
	// the daemon's own user and members of SocketGroup; every connection's
	// peer is checked (SO_PEERCRED), whatever the socket file's mode says.
	AllowedUIDs []int `toml:"allowed_uids"`
	AllowedGIDs []int `toml:"allowed_gids"`
	// MetadataReserve is host filesystem space data never takes, so
	// deletes can run when it fills, e.g. "64M" (the default).
	MetadataReserve string `toml:"metadata_reserve"`
	// BlockSize applies when the pool is created: "64K" by default, 4K–1M.
	BlockSize string `toml:"block_size"`
	// Capacity caps the pool's data, e.g. "100G". Default: no cap but the host filesystem.
	Capacity string `toml:"capacity"`
	// MaxSnapshots is the default chain limit per volume (rowctl volume set
	// overrides it per volume). Default 128.
	MaxSnapshots int `toml:"max_snapshots"`
	// AllowOther lets other users (libvirt's qemu) open volume files. Default true.
	AllowOther *bool `toml:"allow_other"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `toml:"log_level"`
	// DebugFUSE logs every FUSE request.
	DebugFUSE bool `toml:"debug_fuse"`
	// Pprof, if set, serves Go's profiler (net/http/pprof) on this address,
	// which must be on loopback, e.g. "127.0.0.1:6060". Default: off.
	Pprof string `toml:"pprof"`
	// Metrics, if set, serves Prometheus metrics at /metrics and the
	// read-only web page at / on this address, e.g. "127.0.0.1:9488".
	// It must be on loopback unless MetricsAllowRemote. Default: off.
	Metrics string `toml:"metrics"`
	// MetricsAllowRemote lets Metrics listen on a non-loopback address
	// (the page and the metrics name volumes; put a proxy with
	// authentication in front). Default false.
	MetricsAllowRemote bool `toml:"metrics_allow_remote"`
	// HistoryInterval is how often the daemon samples every volume's head,
	// snapshot and total bytes into the pool (rowctl du --history, the web
	// page's chart), e.g. "1h" (the default), or "off". At least 1s.
	HistoryInterval string `toml:"history_interval"`
	// HistoryRetention is how long samples are kept, e.g. "90d" (the
	// default); each volume keeps at most 2,400 samples whatever the interval.
	HistoryRetention string `toml:"history_retention"`
	// BackupTargets are backup targets by name, beside those rowctl backup
	// target add keeps in the pool, e.g. { nas = { url = "dir:///mnt/nas/rowfs" } }.
	BackupTargets map[string]BackupTargetConfig `toml:"backup_targets"`
	// S3AccessKey and S3SecretKey are the credentials of s3:// targets
	// (default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY of rowfsd's
	// environment). Never logged, never in rowctl's output.
	S3AccessKey string `toml:"s3_access_key"`
	S3SecretKey string `toml:"s3_secret_key"`
	// BackupTimeout bounds each operation on a backup target, e.g. "60s"
	// (the default): a hung NFS mount or endpoint fails the job.
	BackupTimeout string `toml:"backup_timeout"`
	// MemoryLimit is a soft limit on the Go heap, like "256M", or "off"
	// (the default). It makes the collector run sooner and never refuses
	// work, but set well above the live heap (see docs/benchmarks.md), or
	// the collector runs without pause and I/O slows down.
	MemoryLimit string `toml:"memory_limit"`
	// CephConf is the ceph.conf of the cluster RBD volumes live in.
	// Default: librados's search ($CEPH_CONF, /etc/ceph/ceph.conf).
	CephConf string `toml:"ceph_conf"`
	// CephID is the Ceph client id, without "client.". Default "admin".
	CephID string `toml:"ceph_id"`
	// CephTimeout bounds connecting to Ceph and each request, e.g. "30s"
	// (the default): past it an RBD volume reports an error, not a hang.
	CephTimeout string `toml:"ceph_timeout"`
	// RBDMaxSnapshots is the chain limit of RBD volumes. Default 32.
	RBDMaxSnapshots int `toml:"rbd_max_snapshots"`
	// AllowFileShrink lets truncate(2) of a volume file to a smaller size
	// shrink the volume and discard its tail. Default false: such a
	// truncate gets EPERM, and rowctl volume resize --shrink does it.
	AllowFileShrink bool `toml:"allow_file_shrink"`
	// SnapshotBeforeResize, SnapshotBeforeReset and SnapshotBeforeRollback,
	// if set, write the pool settings of those names at startup (rowctl pool
	// set changes them at run time; the pool keeps them). Defaults: true,
	// true, false.
	SnapshotBeforeResize   *bool `toml:"snapshot_before_resize"`
	SnapshotBeforeReset    *bool `toml:"snapshot_before_reset"`
	SnapshotBeforeRollback *bool `toml:"snapshot_before_rollback"`
}

// applyPoolSettings writes the pool settings the config names.
func (c *Config) applyPoolSettings(pool *rowengine.Pool) error {
	for key, v := range map[string]*bool{"snapshot-before-resize": c.SnapshotBeforeResize,
		"snapshot-before-reset": c.SnapshotBeforeReset, "snapshot-before-rollback": c.SnapshotBeforeRollback} {
		if v == nil {
			continue
		}
		if _, err := pool.SetSetting(key, strconv.FormatBool(*v)); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	return nil
}

// LoadConfigFile reads a TOML config file; unknown keys are an error, so a
// typo does not silently fall back to a default.
func LoadConfigFile(path string) (Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return c, fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
	}
	return c, nil
}

// EnsureDefaults fills unset fields.
func (c *Config) EnsureDefaults() {
	if c.Socket == "" {
		c.Socket = api.DefaultSocket
	}
	if c.BlockSize == "" {
		c.BlockSize = "64K"
	}
	if c.AllowOther == nil {
		yes := true
		c.AllowOther = &yes
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
}

// engineOptions validates the config and turns it into engine options.
func (c *Config) engineOptions(log *slog.Logger) (rowengine.Options, error) {
	var errs []error
	if c.Pool == "" {
		errs = append(errs, errors.New("no pool directory: set --pool or pool in the config file"))
	}
	if c.Mount == "" {
		errs = append(errs, errors.New("no mount point: set --mount or mount in the config file"))
	}
	opts := rowengine.Options{Logger: log}
	bs, err := api.ParseSize(c.BlockSize)
	if err == nil && bs > 1<<30 {
		err = fmt.Errorf("block size %s is too large", c.BlockSize)
	}
	if err == nil {
		opts.BlockSize = uint32(bs)
		err = rowengine.ValidateBlockSize(opts.BlockSize)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("block size: %w", err))
	}
	if c.Capacity != "" {
		if opts.Capacity, err = api.ParseSize(c.Capacity); err != nil {
			errs = append(errs, fmt.Errorf("capacity: %w", err))
		}
	}
	if c.MetadataReserve != "" {
		if opts.MetadataReserve, err = api.ParseSize(c.MetadataReserve); err != nil {
			errs = append(errs, fmt.Errorf("metadata reserve: %w", err))
		}
	}
	opts.MaxSnapshots = c.MaxSnapshots
	opts.RBDMaxSnapshots = c.RBDMaxSnapshots
	if c.RBDMaxSnapshots < 0 || c.RBDMaxSnapshots > rowengine.MaxChainLimit {
		errs = append(errs, fmt.Errorf("rbd max snapshots %d: must be 1 to %d", c.RBDMaxSnapshots, rowengine.MaxChainLimit))
	}
	if _, err := c.cephTimeout(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxSnapshots < 0 || c.MaxSnapshots > rowengine.MaxChainLimit {
		errs = append(errs, fmt.Errorf("max snapshots %d: must be 1 to %d", c.MaxSnapshots, rowengine.MaxChainLimit))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseMemoryLimit(c.MemoryLimit); err != nil {
		errs = append(errs, err)
	}
	if c.SocketGroup != "" {
		// Checked here, before the pool directory is created or opened.
		if _, err := lookupGroup(c.SocketGroup); err != nil {
			errs = append(errs, fmt.Errorf("socket group %q: %w", c.SocketGroup, err))
		}
	}
	if c.Pprof != "" {
		if err := checkLoopback(c.Pprof); err != nil {
			errs = append(errs, fmt.Errorf("pprof: %w", err))
		}
	}
	if c.Metrics != "" && !c.MetricsAllowRemote {
		if err := checkLoopback(c.Metrics); err != nil {
			errs = append(errs, fmt.Errorf("metrics: %w, or set metrics_allow_remote", err))
		}
	}
	if _, _, err := c.history(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.backupSettings(); err != nil {
		errs = append(errs, err)
	}
	return opts, errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// NewLogger returns the daemon's logger for the configured level.
func (c *Config) NewLogger() *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// checkLoopback accepts only host:port addresses on a loopback interface:
// the profiler exposes memory contents and must not reach the network.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (use 127.0.0.1:PORT)", addr)
	}
	return nil
}

func (c *Config) cephTimeout() (time.Duration, error) {
	if c.CephTimeout == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.CephTimeout)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("ceph timeout %q: want a duration of at least 1s, like 30s", c.CephTimeout)
	}
	return d, nil
}

// history is the capacity sampling interval (0: off) and its bounds.
func (c *Config) history() (time.Duration, rowengine.HistoryOptions, error) {
	var opts rowengine.HistoryOptions
	interval := time.Hour
	if c.HistoryInterval == "off" {
		interval = 0
	} else if c.HistoryInterval != "" {
		d, err := api.ParsePeriod(c.HistoryInterval)
		if err != nil || d < time.Second {
			return 0, opts, fmt.Errorf("history interval %q: want a period of at least 1s, like 1h, or off", c.HistoryInterval)
		}
		interval = d
	}
	if c.HistoryRetention != "" {
		d, err := api.ParsePeriod(c.HistoryRetention)
		if err != nil || d < interval || d <= 0 {
			return 0, opts, fmt.Errorf("history retention %q: want a period no shorter than the interval, like 90d", c.HistoryRetention)
		}
		opts.Retention = d
	}
	opts.EnsureDefaults()
	return interval, opts, nil
}

// BackupTargetConfig is one backup target of the config file.
type BackupTargetConfig struct {
	// URL is dir:///path or s3://bucket/prefix.
	URL string `toml:"url"`
	// Endpoint (host:port), Region and Insecure (plain HTTP) are for S3.
	Endpoint string `toml:"endpoint"`
	Region   string `toml:"region"`
	Insecure bool   `toml:"insecure"`
	// KeyFile encrypts the target's chunks (32 bytes, or 64 hex digits).
	KeyFile string `toml:"key_file"`
}
