package ctl

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rowfs/rowfs/ctl/api"
)

// BackupTargets lists the backup targets.
func (c *Client) BackupTargets(ctx context.Context) (api.BackupTargetList, error) {
	return call[api.BackupTargetList](ctx, c, http.MethodGet, api.PathBackupTargets, nil)
}

// AddBackupTarget adds a backup target.
func (c *Client) AddBackupTarget(ctx context.Context, t api.BackupTarget) (api.BackupTarget, error) {
	return call[api.BackupTarget](ctx, c, http.MethodPost, api.PathBackupTargets, t)
}

// RemoveBackupTarget forgets a backup target (its backups stay on it).
func (c *Client) RemoveBackupTarget(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, api.PathBackupTargets+"/"+url.PathEscape(name), nil, nil)
}

// Backups lists backup points of target ("": all) and volume ("": all).
func (c *Client) Backups(ctx context.Context, target, volume string) (api.BackupList, error) {
	q := url.Values{}
	if target != "" {
		q.Set("target", target)
	}
	if volume != "" {
		q.Set("volume", volume)
	}
	path := api.PathBackups
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return call[api.BackupList](ctx, c, http.MethodGet, path, nil)
}

// CreateBackup starts a backup (a job per volume).
func (c *Client) CreateBackup(ctx context.Context, req api.BackupRequest) (api.BackupResult, error) {
	return call[api.BackupResult](ctx, c, http.MethodPost, api.PathBackups, req)
}

// BackupAction runs restore, delete, verify or gc on point ("-": none).
func backupAction[T any](ctx context.Context, c *Client, point, action string, req api.BackupActionRequest) (T, error) {
	return call[T](ctx, c, http.MethodPost, api.PathBackups+"/"+url.PathEscape(point)+"/"+action, req)
}

// RestoreBackup starts a restore (a job).
func (c *Client) RestoreBackup(ctx context.Context, point string, req api.BackupActionRequest) (api.BackupResult, error) {
	return backupAction[api.BackupResult](ctx, c, point, "restore", req)
}

// BackupVerifyDamaged is verify's exit code when it found damage (as fsck's).
const BackupVerifyDamaged = 2

func backupCommand(a *app) *cobra.Command {
	cmd := group("backup", "Backups outside the pool: full and incremental chains on a directory or S3, restorable to any point")
	var target string
	targetFlag := func(c *cobra.Command) {
		c.Flags().StringVar(&target, "target", "", "backup target (default: the only one)")
	}
	cmd.AddCommand(backupTargetCommand(a))

	var full, noWait bool
	var fromSnapshot, groupName string
	create := &cobra.Command{
		Use:   "create VOLUME [--target T] [--full] [--from-snapshot S] | --group G",
		Short: "Back up a volume (incremental on its newest point, unless --full) while the VM runs",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			req := api.BackupRequest{Target: target, Full: full, FromSnapshot: fromSnapshot, Group: groupName}
			if len(argv) == 1 {
				req.Volume = argv[0]
			}
			if (req.Volume == "") == (req.Group == "") {
				return fmt.Errorf("%w: name a VOLUME or --group G", ErrUsage)
			}
			res, err := a.client().CreateBackup(cmd.Context(), req)
			return a.followJobs(cmd.Context(), res, err, noWait, "backed up")
		},
	}
	targetFlag(create)
	create.Flags().BoolVar(&full, "full", false, "start a new chain with a full point")
	create.Flags().StringVar(&fromSnapshot, "from-snapshot", "", "back up this snapshot (default: one taken now, kept as the next incremental's base)")
	create.Flags().StringVar(&groupName, "group", "", "back up every member of a group from one group snapshot")
	create.Flags().BoolVar(&noWait, "no-wait", false, "start the job and return (rowctl job wait ID follows it)")

	var tree bool
	list := &cobra.Command{
		Use:   "list [VOLUME] [--target T] [--tree]",
		Short: "List backup points, oldest first; --tree shows each chain",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			volume := ""
			if len(argv) == 1 {
				volume = argv[0]
			}
			l, err := a.client().Backups(cmd.Context(), target, volume)
			if err != nil {
				return err
			}
			return a.print(l, func(w io.Writer) { printBackups(w, l.Points, tree) })
		},
	}
	targetFlag(list)
	list.Flags().BoolVar(&tree, "tree", false, "each chain as a tree of its points")

	var only, dryRun bool
	del := &cobra.Command{
		Use:   "delete POINT [--target T] [--only] [--dry-run]",
		Short: "Delete a point: a full one with its chain, an incremental with the points built on it (--only: just it)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			res, err := backupAction[api.BackupDeleteResult](cmd.Context(), a.client(), argv[0], "delete", api.BackupActionRequest{Target: target, Only: only, DryRun: dryRun})
			if err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) {
				verb := "deleted"
				if res.DryRun {
					verb = "would delete"
				}
				for _, p := range res.Points {
					why := ""
					if res.Why[p] != "" {
						why = " (" + res.Why[p] + ")"
					}
					fmt.Fprintf(w, "%s %s%s\n", verb, p, why)
				}
				fmt.Fprintln(w, "chunks no point needs any more stay until rowctl backup gc")
			})
		},
	}
	targetFlag(del)
	del.Flags().BoolVar(&only, "only", false, "delete just this point (every other point stays restorable)")
	del.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be deleted")

	var to, onto string
	var wholeGroup bool
	restore := &cobra.Command{
		Use:   "restore POINT (--to NEWVOLUME | --volume VOLUME | --group) [--target T] [--yes]",
		Short: "Restore a point to a new volume, onto its volume, or a group backup onto the group's volumes (VMs stopped)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if n := btoi(to != "") + btoi(onto != "") + btoi(wholeGroup); n != 1 {
				return fmt.Errorf("%w: give one of --to NEWVOLUME, --volume VOLUME or --group", ErrUsage)
			}
			var inPlace []string
			switch {
			case onto != "":
				inPlace = []string{onto}
			case wholeGroup:
				members, err := groupBackupMembers(cmd.Context(), a.client(), target, argv[0])
				if err != nil {
					return err
				}
				inPlace = members
			}
			if len(inPlace) > 0 {
				if err := a.confirmDiscard(cmd, "restoring onto "+strings.Join(inPlace, ", "), inPlace, settingSnapshotBeforeRollback); err != nil {
					return err
				}
			}
			res, err := a.client().RestoreBackup(cmd.Context(), argv[0], api.BackupActionRequest{Target: target, To: to, Volume: onto, Group: wholeGroup})
			return a.followJobs(cmd.Context(), res, err, noWait, "restored")
		},
	}
	targetFlag(restore)
	restore.Flags().StringVar(&to, "to", "", "a new volume to restore into")
	restore.Flags().StringVar(&onto, "volume", "", "the point's volume, restored in place (refused while open)")
	restore.Flags().BoolVar(&wholeGroup, "group", false, "POINT is one member of a group backup: restore every member onto its volume")
	restore.Flags().BoolVar(&noWait, "no-wait", false, "start the job and return (rowctl job wait ID follows it)")

	var all, verifyDry bool
	verify := &cobra.Command{
		Use:   "verify [POINT | --all] [--target T] [--dry-run]",
		Short: "Read and check every chunk; exit 2 if any is missing or corrupt (set aside unless --dry-run)",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			point := "-"
			if len(argv) == 1 {
				point = argv[0]
			}
			if (point == "-") != all {
				return fmt.Errorf("%w: name a POINT or --all", ErrUsage)
			}
			res, err := backupAction[api.BackupVerifyResult](cmd.Context(), a.client(), point, "verify", api.BackupActionRequest{Target: target, DryRun: verifyDry})
			if err != nil {
				return err
			}
			if err := a.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "%d points, %d chunks, %s checked\n", res.Points, res.Chunks, api.FormatSize(res.Bytes))
				for _, d := range res.Damaged {
					fmt.Fprintf(w, "chunk %s: %s\n", d.Chunk, d.Error)
					for _, b := range d.Breaks {
						fmt.Fprintf(w, "  breaks point %s (%s) at bytes %s\n", b.Point, b.Volume, strings.Join(b.Ranges, ", "))
					}
				}
				if res.Quarantined > 0 {
					fmt.Fprintf(w, "%d bad chunks set aside: the next backup of their data uploads them again\n", res.Quarantined)
				}
			}); err != nil {
				return err
			}
			if len(res.Damaged) > 0 {
				return &ExitStatus{Code: BackupVerifyDamaged}
			}
			return nil
		},
	}
	targetFlag(verify)
	verify.Flags().BoolVar(&all, "all", false, "every point")
	verify.Flags().BoolVar(&verifyDry, "dry-run", false, "report only: set nothing aside")

	var gcDry bool
	gc := &cobra.Command{
		Use:   "gc [--target T] [--dry-run]",
		Short: "Remove the chunks no point needs",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := backupAction[api.BackupGCResult](cmd.Context(), a.client(), "-", "gc", api.BackupActionRequest{Target: target, DryRun: gcDry})
			if err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) {
				verb := "removed"
				if res.DryRun {
					verb = "would remove"
				}
				fmt.Fprintf(w, "%s %d chunks and %d unfinished indexes; %d chunks are in use\n", verb, res.Chunks, res.Indexes, res.Referenced)
			})
		},
	}
	targetFlag(gc)
	gc.Flags().BoolVar(&gcDry, "dry-run", false, "say what would be removed")
	cmd.AddCommand(create, list, del, restore, verify, gc)
	return cmd
}

func backupTargetCommand(a *app) *cobra.Command {
	cmd := group("target", "Places backups are kept")
	var t api.BackupTarget
	add := &cobra.Command{
		Use:   "add NAME URL [--endpoint HOST:PORT] [--region R] [--insecure] [--key-file F]",
		Short: "Add a target: dir:///path (a disk, an NFS mount) or s3://bucket/prefix",
		Long: `Add a backup target. s3:// targets need --endpoint; their credentials come
from rowfsd's config (s3_access_key, s3_secret_key) or its environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), never from the command line.
--key-file encrypts every chunk (AES-256-GCM; 32 bytes, or 64 hex digits):
without the key nothing on the target can be read.`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			t.Name, t.URL = argv[0], argv[1]
			out, err := a.client().AddBackupTarget(cmd.Context(), t)
			if err != nil {
				return err
			}
			return a.print(out, func(w io.Writer) { fmt.Fprintf(w, "added backup target %s (%s)\n", out.Name, out.URL) })
		},
	}
	add.Flags().StringVar(&t.Endpoint, "endpoint", "", "S3 endpoint, host:port")
	add.Flags().StringVar(&t.Region, "region", "", "S3 region (default us-east-1)")
	add.Flags().BoolVar(&t.Insecure, "insecure", false, "plain HTTP to the S3 endpoint")
	add.Flags().StringVar(&t.KeyFile, "key-file", "", "encrypt the chunks with this key file (on the daemon's host)")
	list := &cobra.Command{
		Use: "list", Short: "List the targets", Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := a.client().BackupTargets(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(l, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tURL\tENDPOINT\tENCRYPTED\tFROM")
				for _, t := range l.Targets {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", t.Name, t.URL, t.Endpoint, t.KeyFile != "", t.Source)
				}
				tw.Flush()
			})
		},
	}
	remove := &cobra.Command{
		Use: "remove NAME", Short: "Forget a target (what it holds stays there)", Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := a.client().RemoveBackupTarget(cmd.Context(), argv[0]); err != nil {
				return err
			}
			return a.print(map[string]string{"removed": argv[0]}, func(w io.Writer) { fmt.Fprintf(w, "removed backup target %s\n", argv[0]) })
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

// followJobs reports the jobs a backup or restore started: at once with
// noWait, else once each has ended (a progress bar on a terminal).
func (a *app) followJobs(ctx context.Context, res api.BackupResult, err error, noWait bool, verb string) error {
	if err != nil {
		return err
	}
	if noWait {
		return a.print(res, func(w io.Writer) {
			for _, j := range res.Jobs {
				fmt.Fprintf(w, "started job %d: %s %s (rowctl job wait %d)\n", j.ID, j.Kind, j.Target, j.ID)
			}
		})
	}
	jobs := make([]api.Job, 0, len(res.Jobs))
	for i := range res.Jobs {
		j, err := a.waitJob(ctx, &res.Jobs[i])
		if err != nil {
			return err
		}
		jobs = append(jobs, *j)
	}
	return a.print(api.BackupResult{Jobs: jobs}, func(w io.Writer) {
		for _, j := range jobs {
			fmt.Fprintf(w, "%s %s (job %d)\n", verb, j.Target, j.ID)
		}
	})
}

// printBackups prints points as a table, or each chain as a tree.
func printBackups(w io.Writer, points []api.BackupPoint, tree bool) {
	if len(points) == 0 {
		fmt.Fprintln(w, "no backup points")
		return
	}
	line := func(p api.BackupPoint) string {
		return fmt.Sprintf("%s %s %s, %s of %s, %s sent, %s", p.ID, p.Volume, p.Kind, p.Created.Format("2006-01-02 15:04:05Z"),
			api.FormatSize(p.Size), api.FormatSize(p.UploadedBytes), p.Target)
	}
	if !tree {
		for _, p := range points {
			fmt.Fprintln(w, line(p))
		}
		return
	}
	children := map[string][]api.BackupPoint{}
	byID := map[string]bool{}
	for _, p := range points {
		byID[p.ID] = true
	}
	var roots []api.BackupPoint
	for _, p := range points {
		if p.Parent != "" && byID[p.Parent] {
			children[p.Parent] = append(children[p.Parent], p)
		} else {
			roots = append(roots, p)
		}
	}
	var walk func(p api.BackupPoint, prefix string)
	walk = func(p api.BackupPoint, prefix string) {
		fmt.Fprintln(w, prefix+line(p))
		for _, c := range children[p.ID] {
			walk(c, strings.Repeat(" ", len(prefix))+"└── ")
		}
	}
	for _, r := range roots {
		walk(r, "")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// groupBackupMembers are the volumes of the group backup point belongs to.
func groupBackupMembers(ctx context.Context, c *Client, target, point string) ([]string, error) {
	l, err := c.Backups(ctx, target, "")
	if err != nil {
		return nil, err
	}
	var of *api.BackupPoint
	for i := range l.Points {
		if l.Points[i].ID == point {
			of = &l.Points[i]
		}
	}
	if of == nil || of.Group == "" {
		return nil, nil // the daemon says why
	}
	var out []string
	for _, p := range l.Points {
		if p.Group == of.Group && p.Snapshot == of.Snapshot {
			out = append(out, p.Volume)
		}
	}
	return out, nil
}
