package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rowfs/rowfs/ctl/api"
)

// app carries the global flags to every command.
type app struct {
	socket string
	json   bool
	yes    bool // --yes: confirm what would discard data
	out    io.Writer
}

func (a *app) client() *Client { return NewClient(a.socket) }

// print writes v as JSON with --json, else calls human.
func (a *app) print(v any, human func(w io.Writer)) error {
	if a.json {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(a.out)
	return nil
}

// NewRootCommand builds the rowctl command tree writing to out.
func NewRootCommand(out io.Writer) *cobra.Command {
	a := &app{out: out}
	defaultSocket := api.DefaultSocket
	if env := os.Getenv(api.SocketEnv); env != "" {
		defaultSocket = env
	}
	root := &cobra.Command{
		Use:           "rowctl",
		Short:         "Control rowfsd: volumes and the pool",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&a.socket, "socket", defaultSocket, "rowfsd control socket (env "+api.SocketEnv+")")
	root.PersistentFlags().BoolVar(&a.json, "json", false, "print JSON")
	root.PersistentFlags().BoolVarP(&a.yes, "yes", "y", false, "discard data written since the last snapshot without asking (rollback, reset)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %v", ErrUsage, err) })
	root.AddCommand(volumeCommand(a), snapshotCommand(a), groupCommand(a), policyCommand(a), duCommand(a), jobCommand(a), poolCommand(a), fsckCommand(a), backupCommand(a), versionCommand(a))
	addCompletion(a, root)
	root.SetOut(out)
	return root
}

// args wraps cobra's argument checks so they count as usage errors.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return fmt.Errorf("%w: %v (see rowctl %s --help)", ErrUsage, err, cmd.CommandPath()[len("rowctl "):])
		}
		return nil
	}
}

// group is a command that only holds subcommands: with none named it
// prints its help; with an unknown one it is a usage error (cobra would
// print help and exit 0).
func group(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, argv []string) error {
			if len(argv) > 0 {
				return fmt.Errorf("%w: unknown command %q for %q", ErrUsage, argv[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
}

func parseSizeFlag(s string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("%w: --size is required", ErrUsage)
	}
	n, err := api.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return n, nil
}

func volumeCommand(a *app) *cobra.Command {
	cmd := group("volume", "Create, list, inspect, resize and delete volumes")
	var size, backend, rbdPool, rbdImage string
	create := &cobra.Command{
		Use:   "create NAME --size SIZE [--backend rbd --rbd-pool POOL [--rbd-image IMAGE]]",
		Short: "Create a volume (appears as MOUNT/NAME), local or as a new Ceph RBD image",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			n, err := parseSizeFlag(size)
			if err != nil {
				return err
			}
			if backend == "rbd" && rbdPool == "" {
				return fmt.Errorf("%w: --backend rbd needs --rbd-pool", ErrUsage)
			}
			v, err := a.client().CreateVolume(cmd.Context(), api.CreateVolumeRequest{Name: argv[0], Size: n,
				Backend: backend, RBDPool: rbdPool, RBDImage: rbdImage})
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) {
				fmt.Fprintf(w, "created volume %s (%s) at %s%s\n", v.Name, api.FormatSize(v.Size), v.Path, rbdSuffix(v))
			})
		},
	}
	create.Flags().StringVar(&size, "size", "", "virtual size: bytes or with a unit, like 10G, 512M, 4096")
	create.Flags().StringVar(&backend, "backend", "row", "row (blocks in the local pool) or rbd (a new image in Ceph)")
	create.Flags().StringVar(&rbdPool, "rbd-pool", "", "Ceph pool of an rbd volume")
	create.Flags().StringVar(&rbdImage, "rbd-image", "", "image name of an rbd volume (default: the volume name)")

	attach := &cobra.Command{
		Use:   "attach NAME --rbd-pool POOL --rbd-image IMAGE",
		Short: "Expose an existing Ceph RBD image as volume NAME",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if rbdPool == "" || rbdImage == "" {
				return fmt.Errorf("%w: attach needs --rbd-pool and --rbd-image", ErrUsage)
			}
			v, err := a.client().AttachVolume(cmd.Context(), api.AttachVolumeRequest{Name: argv[0], RBDPool: rbdPool, RBDImage: rbdImage})
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) {
				fmt.Fprintf(w, "attached volume %s (%s) at %s%s\n", v.Name, api.FormatSize(v.Size), v.Path, rbdSuffix(v))
			})
		},
	}
	attach.Flags().StringVar(&rbdPool, "rbd-pool", "", "Ceph pool of the image")
	attach.Flags().StringVar(&rbdImage, "rbd-image", "", "the image")

	var detachForce bool
	detach := &cobra.Command{
		Use:   "detach NAME [--force]",
		Short: "Remove an RBD volume from rowfs, leaving its image and snapshots in Ceph",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := a.client().DetachVolume(cmd.Context(), argv[0], detachForce); err != nil {
				return err
			}
			return a.print(map[string]string{"detached": argv[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "detached volume %s (its image stays in Ceph)\n", argv[0])
			})
		},
	}
	detach.Flags().BoolVar(&detachForce, "force", false, "detach even while the file is open (its users get I/O errors)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List volumes",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			vols, err := a.client().Volumes(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(api.VolumeList{Volumes: vols}, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSIZE\tUSED\tBACKEND\tOPEN\tCREATED")
				for _, v := range vols {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", v.Name, api.FormatSize(v.Size), api.FormatSize(v.UsedBytes),
						v.Backend, v.OpenHandles, v.Created.Format("2006-01-02T15:04:05Z"))
				}
				tw.Flush()
			})
		},
	}

	info := &cobra.Command{
		Use:   "info NAME",
		Short: "Show one volume",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			v, err := a.client().Volume(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) { printVolume(w, v) })
		},
	}

	var shrink bool
	resize := &cobra.Command{
		Use:   "resize NAME --size SIZE [--shrink]",
		Short: "Grow a volume (shrinking discards the tail and needs --shrink)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			n, err := parseSizeFlag(size)
			if err != nil {
				return err
			}
			v, err := a.client().ResizeVolume(cmd.Context(), argv[0], api.ResizeVolumeRequest{Size: n, Shrink: shrink})
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) { fmt.Fprintf(w, "resized volume %s to %s\n", v.Name, api.FormatSize(v.Size)) })
		},
	}
	resize.Flags().StringVar(&size, "size", "", "new virtual size, like 20G")
	resize.Flags().BoolVar(&shrink, "shrink", false, "allow a smaller size (the tail's data is discarded)")

	var force bool
	del := &cobra.Command{
		Use:   "delete NAME [--force]",
		Short: "Delete a volume and free its blocks (refused while its file is open)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			r, err := a.client().DeleteVolume(cmd.Context(), argv[0], force)
			if err != nil {
				return err
			}
			if r.Job, err = a.waitJob(cmd.Context(), r.Job); err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) {
				fmt.Fprintf(w, "deleted volume %s\n", argv[0])
				for _, k := range r.KeptForClones {
					fmt.Fprintf(w, "kept hidden: %s\n", k)
				}
			})
		},
	}
	del.Flags().BoolVar(&force, "force", false, "delete even while the file is open (its users get I/O errors)")

	var resetForce bool
	reset := &cobra.Command{
		Use:   "reset VOLUME [--force]",
		Short: "Reset to image: a clone goes back to the snapshot it was cloned from, any other volume to zeros (the VM must be stopped)",
		Long: `reset discards what the volume's head holds: a clone reads as the snapshot it
was cloned from again, any other volume reads as zeros. Its snapshots stay. An
automatic snapshot (auto-pre-reset-…) keeps what the reset discards, unless
the pool setting snapshot-before-reset is false.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := a.confirmDiscard(cmd, "resetting "+argv[0], argv[:1], settingSnapshotBeforeReset); err != nil {
				return err
			}
			r, err := a.client().Reset(cmd.Context(), argv[0], resetForce)
			if err != nil {
				return err
			}
			if r.Job, err = a.waitJob(cmd.Context(), r.Job); err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) {
				to := "zeros"
				if r.Volume.Parent != "" {
					to = r.Volume.Parent
				}
				fmt.Fprintf(w, "reset %s to %s (size %s)\n", argv[0], to, api.FormatSize(r.Volume.Size))
			})
		},
	}
	reset.Flags().BoolVar(&resetForce, "force", false, "reset even while the volume is open for writing")
	cmd.AddCommand(create, attach, detach, list, info, resize, reset, del)
	cmd.AddCommand(cloneCommands(a)...)
	return cmd
}

func printVolume(w io.Writer, v api.Volume) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows := [][2]string{
		{"name", v.Name}, {"path", v.Path}, {"backend", v.Backend},
		{"size", fmt.Sprintf("%s (%d bytes)", api.FormatSize(v.Size), v.Size)},
		{"head bytes", fmt.Sprintf("%s (%d bytes)", api.FormatSize(v.UsedBytes), v.UsedBytes)},
		{"snapshot bytes", fmt.Sprintf("%s (%d bytes)", api.FormatSize(v.SnapshotBytes), v.SnapshotBytes)},
		{"total bytes", fmt.Sprintf("%s (%d bytes)", api.FormatSize(v.TotalBytes), v.TotalBytes)},
		{"snapshots", fmt.Sprintf("%d (chain %d of max %d)", v.Snapshots, v.ChainLength, v.MaxSnapshots)},
		{"parent", orDash(v.Parent)},
		{"block size", api.FormatSize(v.BlockSize)},
		{"open handles", fmt.Sprintf("%d (%d writers)", v.OpenHandles, v.Writers)},
		{"created", v.Created.Format("2006-01-02T15:04:05Z")},
	}
	if v.RBDImage != "" {
		rows = append(rows, [2]string{"rbd image", v.RBDPool + "/" + v.RBDImage})
	}
	if v.Note != "" {
		rows = append(rows, [2]string{"note", v.Note})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	tw.Flush()
}

func poolCommand(a *app) *cobra.Command {
	cmd := group("pool", "Inspect the pool and change its settings")
	cmd.AddCommand(&cobra.Command{
		Use:   "info",
		Short: "Show the pool's capacity and usage",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.client().Pool(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(p, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "pool:\t%s\nmount:\t%s\nblock size:\t%s\n", p.Dir, p.Mount, api.FormatSize(p.BlockSize))
				fmt.Fprintf(tw, "capacity:\t%s\nused:\t%s (%d bytes) in blocks, %s stored\nfree:\t%s\n", api.FormatSize(p.CapacityBytes),
					api.FormatSize(p.UsedBytes), p.UsedBytes, api.FormatSize(p.StoredBytes), api.FormatSize(p.FreeBytes))
				fmt.Fprintf(tw, "provisioned:\t%s in %d volumes\novercommit:\t%.2fx\n", api.FormatSize(p.ProvisionedBytes), p.Volumes, p.Overcommit)
				for _, k := range slices.Sorted(maps.Keys(p.Settings)) {
					fmt.Fprintf(tw, "%s:\t%s\n", k, p.Settings[k])
				}
				tw.Flush()
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "set KEY=VALUE...",
		Short: "Change pool settings: snapshot-before-resize, snapshot-before-reset, snapshot-before-rollback (true or false)",
		Args:  args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var p api.Pool
			for _, kv := range argv {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("%w: %q: want KEY=VALUE", ErrUsage, kv)
				}
				var err error
				if p, err = a.client().SetPoolSetting(cmd.Context(), k, v); err != nil {
					return err
				}
			}
			return a.print(p, func(w io.Writer) {
				for _, kv := range argv {
					k, _, _ := strings.Cut(kv, "=")
					fmt.Fprintf(w, "%s=%s\n", k, p.Settings[k])
				}
			})
		},
	})
	return cmd
}

func versionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print rowctl's version and the daemon's",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := map[string]any{"rowctl": api.VersionInfo{Version: api.Version, API: "v1", GoVersion: runtime.Version()}}
			d, err := a.client().Version(cmd.Context())
			if err == nil {
				out["rowfsd"] = d
			} else {
				out["rowfsd_error"] = err.Error()
			}
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "rowctl %s (%s)\n", api.Version, runtime.Version())
				if err == nil {
					fmt.Fprintf(w, "rowfsd %s (%s, API %s)\n", d.Version, d.GoVersion, d.API)
				} else {
					fmt.Fprintf(w, "rowfsd: %s\n", strings.TrimSpace(err.Error()))
				}
			})
		},
	}
}

// Main runs rowctl with the process's arguments and returns its exit code.
func Main(argv []string, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdout)
	root.SetArgs(argv)
	root.SetErr(stderr)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		if msg := err.Error(); strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") {
			err = fmt.Errorf("%w: %s", ErrUsage, msg)
		}
		msg := strings.TrimPrefix(err.Error(), ErrUsage.Error()+": ")
		wantJSON, _ := root.PersistentFlags().GetBool("json")
		// A command line cobra could not parse never set the flag.
		wantJSON = wantJSON || slices.Contains(argv, "--json")
		switch {
		case msg == "":
			// fsck's findings: the report said it, the exit code tells.
		case wantJSON:
			// Scripts parse stderr as one JSON object: the code they match
			// on, and the message for people.
			line, _ := json.Marshal(api.Error{Code: ErrorCode(err), Message: msg})
			fmt.Fprintln(stderr, string(line))
		default:
			fmt.Fprintln(stderr, "rowctl:", msg)
		}
	}
	return ExitCode(err)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func rbdSuffix(v api.Volume) string {
	if v.RBDImage == "" {
		return ""
	}
	return " (RBD image " + v.RBDPool + "/" + v.RBDImage + ")"
}
