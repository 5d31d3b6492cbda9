// Command rowfsd serves a rowfs pool: volumes as files on a FUSE mount,
// driven by rowctl over a control socket.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/rowfs/rowfs/ctl"
	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/daemon"
	"github.com/rowfs/rowfs/rowengine"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the daemon could not start or stopped on an error
	exitUsage = 2 // bad flags or config
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		cfg        daemon.Config
		configFile string
		allowOther bool
		usageErr   bool
	)
	cmd := &cobra.Command{
		Use:   "rowfsd --pool DIR --mount DIR [--socket PATH] [--config FILE]",
		Short: "Serve VM disks with redirect-on-write snapshots on a FUSE mount",
		Long: `rowfsd serves the volumes of a pool as files on a FUSE mount (qemu opens
MOUNT/NAME as a raw image) and takes rowctl commands on a control socket.
The pool is created on first start. SIGINT or SIGTERM unmounts and closes it cleanly.`,
		Version:       api.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			merged := daemon.Config{}
			if configFile != "" {
				var err error
				if merged, err = daemon.LoadConfigFile(configFile); err != nil {
					usageErr = true
					return err
				}
			}
			// Flags given on the command line override the file.
			flags := cmd.Flags()
			set := func(name string, dst *string, v string) {
				if flags.Changed(name) {
					*dst = v
				}
			}
			set("pool", &merged.Pool, cfg.Pool)
			set("mount", &merged.Mount, cfg.Mount)
			set("socket", &merged.Socket, cfg.Socket)
			set("socket-group", &merged.SocketGroup, cfg.SocketGroup)
			set("block-size", &merged.BlockSize, cfg.BlockSize)
			set("capacity", &merged.Capacity, cfg.Capacity)
			set("metadata-reserve", &merged.MetadataReserve, cfg.MetadataReserve)
			if flags.Changed("allow-uid") {
				merged.AllowedUIDs = cfg.AllowedUIDs
			}
			if flags.Changed("allow-gid") {
				merged.AllowedGIDs = cfg.AllowedGIDs
			}
			set("log-level", &merged.LogLevel, cfg.LogLevel)
			set("pprof", &merged.Pprof, cfg.Pprof)
			set("metrics", &merged.Metrics, cfg.Metrics)
			if flags.Changed("metrics-allow-remote") {
				merged.MetricsAllowRemote = cfg.MetricsAllowRemote
			}
			set("history-interval", &merged.HistoryInterval, cfg.HistoryInterval)
			set("history-retention", &merged.HistoryRetention, cfg.HistoryRetention)
			set("memory-limit", &merged.MemoryLimit, cfg.MemoryLimit)
			set("ceph-conf", &merged.CephConf, cfg.CephConf)
			set("ceph-id", &merged.CephID, cfg.CephID)
			set("ceph-timeout", &merged.CephTimeout, cfg.CephTimeout)
			if flags.Changed("rbd-max-snapshots") {
				merged.RBDMaxSnapshots = cfg.RBDMaxSnapshots
			}
			if flags.Changed("max-snapshots") {
				merged.MaxSnapshots = cfg.MaxSnapshots
			}
			if flags.Changed("allow-other") {
				merged.AllowOther = &allowOther
			}
			if flags.Changed("allow-file-shrink") {
				merged.AllowFileShrink = cfg.AllowFileShrink
			}
			if flags.Changed("debug-fuse") {
				merged.DebugFUSE = cfg.DebugFUSE
			}
			merged.EnsureDefaults()
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return daemon.Run(ctx, merged, merged.NewLogger())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "TOML config file; flags override it")
	f.StringVar(&cfg.Pool, "pool", "", "pool directory (created on first start)")
	f.StringVar(&cfg.Mount, "mount", "", "mount point for the volume files")
	f.StringVar(&cfg.Socket, "socket", api.DefaultSocket, "control socket path")
	f.StringVar(&cfg.SocketGroup, "socket-group", "", "group that owns the control socket (mode 0660)")
	f.StringVar(&cfg.BlockSize, "block-size", "64K", "block size of a new pool, 4K to 1M (fixed at creation)")
	f.StringVar(&cfg.Capacity, "capacity", "", "cap on the pool's data, like 100G (default: the host filesystem)")
	f.StringVar(&cfg.MetadataReserve, "metadata-reserve", "64M", "host filesystem space data never takes, so deletes can run when it fills")
	f.IntSliceVar(&cfg.AllowedUIDs, "allow-uid", nil, "uids that may use the control socket besides root and the socket group")
	f.IntSliceVar(&cfg.AllowedGIDs, "allow-gid", nil, "gids that may use the control socket")
	f.IntVar(&cfg.MaxSnapshots, "max-snapshots", 128, "default chain limit: snapshots on a volume's path from root to head")
	f.BoolVar(&allowOther, "allow-other", true, "let other users (libvirt's qemu) open volume files")
	f.BoolVar(&cfg.AllowFileShrink, "allow-file-shrink", false, "let a truncate of a volume file shrink the volume (default: EPERM; use rowctl volume resize --shrink)")
	f.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&cfg.DebugFUSE, "debug-fuse", false, "log every FUSE request")
	f.StringVar(&cfg.CephConf, "ceph-conf", "", "ceph.conf of the cluster RBD volumes live in (default: $CEPH_CONF, /etc/ceph/ceph.conf)")
	f.StringVar(&cfg.CephID, "ceph-id", "admin", "Ceph client id, without \"client.\"")
	f.StringVar(&cfg.CephTimeout, "ceph-timeout", "30s", "bound on connecting to Ceph and on each request")
	f.IntVar(&cfg.RBDMaxSnapshots, "rbd-max-snapshots", 32, "chain limit of RBD volumes")
	f.StringVar(&cfg.MemoryLimit, "memory-limit", "off", "soft limit on the Go heap, like 256M (keep it well above the live heap), or off")
	f.StringVar(&cfg.Pprof, "pprof", "", "serve Go's profiler on this loopback address, like 127.0.0.1:6060")
	f.StringVar(&cfg.Metrics, "metrics", "", "serve Prometheus metrics (/metrics) and the web page (/) on this address, like 127.0.0.1:9488")
	f.BoolVar(&cfg.MetricsAllowRemote, "metrics-allow-remote", false, "let --metrics listen on a non-loopback address")
	f.StringVar(&cfg.HistoryInterval, "history-interval", "1h", "how often to sample every volume's capacity (du --history), or off")
	f.StringVar(&cfg.HistoryRetention, "history-retention", "90d", "how long capacity samples are kept")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		usageErr = true
		return err
	})
	fsckCode := -1
	cmd.AddCommand(fsckCommand(&fsckCode), backupCommand())
	err := cmd.Execute()
	if fsckCode >= 0 {
		if err != nil {
			fmt.Fprintln(os.Stderr, "rowfsd fsck:", err)
		}
		return fsckCode
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rowfsd:", err)
		if usageErr {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

// fsckCommand checks a pool offline; rowctl fsck --pool runs it. It sets
// *code to the exit code (qemu-img check's: 0, 2, 3, or 1 if it could not run).
func fsckCommand(code *int) *cobra.Command {
	var pool, repair string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "fsck --pool DIR [--repair leaks|all] [--json]",
		Short: "Check (and repair) a pool no daemon has open; see rowctl fsck",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			*code = ctl.FsckCouldNotRun
			if pool == "" {
				return errors.New("fsck needs --pool DIR")
			}
			mode, err := rowengine.ParseRepairMode(repair)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			rep, err := rowengine.Fsck(pool, mode, rowengine.Options{Logger: log})
			if errors.Is(err, rowengine.ErrPoolLocked) {
				return fmt.Errorf("%w\nA running rowfsd has this pool open: check it online with `rowctl fsck` (--repair leaks repairs leaks there), or stop the daemon for an offline check", err)
			}
			if err != nil {
				return err
			}
			doc := daemon.FsckReportDoc(rep, pool, false)
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				_ = enc.Encode(doc)
			} else {
				ctl.PrintFsckReport(os.Stdout, doc)
			}
			*code = ctl.FsckExitCode(doc)
			return nil
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "pool directory")
	cmd.Flags().StringVar(&repair, "repair", "", "leaks or all")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// backupCommand is rowfsd backup restore: a point to a raw file, with no
// daemon and no pool.
func backupCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "Backups without a daemon"}
	var o daemon.OfflineRestore
	restore := &cobra.Command{
		Use:   "restore --target URL POINT --output FILE [--endpoint HOST:PORT] [--key-file F]",
		Short: "Restore a backup point to a raw image file, with no daemon and no pool",
		Long: `Restore a backup point to a new raw image file. S3 credentials come from
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; an encrypted target needs its
--key-file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if o.TargetURL == "" || o.Output == "" {
				return errors.New("give --target URL and --output FILE")
			}
			o.Point = argv[0]
			var bar *progressbar.ProgressBar
			o.Progress = func(done, total uint64) {
				if bar == nil {
					bar = progressbar.DefaultBytes(int64(total), "restoring "+o.Point)
				}
				_ = bar.Set64(int64(done))
			}
			m, err := daemon.RestoreToFile(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "\nrestored %s (%s of %s, %s) to %s\n", m.ID, api.FormatSize(m.Size), m.Volume, m.Created.Format(time.RFC3339), o.Output)
			return nil
		},
	}
	f := restore.Flags()
	f.StringVar(&o.TargetURL, "target", "", "the target's URL: dir:///path or s3://bucket/prefix")
	f.StringVar(&o.Output, "output", "", "the raw image file to write (must not exist)")
	f.StringVar(&o.Endpoint, "endpoint", "", "S3 endpoint, host:port")
	f.StringVar(&o.Region, "region", "", "S3 region")
	f.BoolVar(&o.Insecure, "insecure", false, "plain HTTP to the S3 endpoint")
	f.StringVar(&o.KeyFile, "key-file", "", "the key file of an encrypted target")
	cmd.AddCommand(restore)
	return cmd
}
