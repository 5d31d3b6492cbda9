package ctl

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/rowfs/rowfs/ctl/api"
)

// Snapshots lists a volume's tree.
func (c *Client) Snapshots(ctx context.Context, volume string) (api.SnapshotList, error) {
	return call[api.SnapshotList](ctx, c, http.MethodGet, volumePath(volume, "/snapshots"), nil)
}

// CreateSnapshot takes a snapshot.
func (c *Client) CreateSnapshot(ctx context.Context, volume string, req api.CreateSnapshotRequest) (api.Snapshot, error) {
	return call[api.Snapshot](ctx, c, http.MethodPost, volumePath(volume, "/snapshots"), req)
}

// DeleteSnapshot deletes a snapshot (or plans it, with dryRun).
func (c *Client) DeleteSnapshot(ctx context.Context, volume, snap string, recursive, dryRun bool) (api.DeleteSnapshotResult, error) {
	q := url.Values{}
	if recursive {
		q.Set("recursive", "true")
	}
	if dryRun {
		q.Set("dry_run", "true")
	}
	return call[api.DeleteSnapshotResult](ctx, c, http.MethodDelete, volumePath(volume, "/snapshots/"+url.PathEscape(snap)+"?"+q.Encode()), nil)
}

// Rollback rolls a volume back to a snapshot.
func (c *Client) Rollback(ctx context.Context, volume string, req api.RollbackRequest) (api.RollbackResult, error) {
	return call[api.RollbackResult](ctx, c, http.MethodPost, volumePath(volume, "/rollback"), req)
}

// Reset resets a volume to the image it started from.
func (c *Client) Reset(ctx context.Context, volume string, force bool) (api.RollbackResult, error) {
	return call[api.RollbackResult](ctx, c, http.MethodPost, volumePath(volume, "/reset"), api.ResetRequest{Force: force})
}

// SetPoolSetting changes one pool setting.
func (c *Client) SetPoolSetting(ctx context.Context, key, value string) (api.Pool, error) {
	return call[api.Pool](ctx, c, http.MethodPost, api.PathPoolSettings, api.SetPoolSettingRequest{Key: key, Value: value})
}

// Diff lists the extents changed between two snapshots (to "" = the head).
func (c *Client) Diff(ctx context.Context, volume, from, to string) (api.Diff, error) {
	q := url.Values{"from": {from}}
	if to != "" {
		q.Set("to", to)
	}
	return call[api.Diff](ctx, c, http.MethodGet, volumePath(volume, "/diff?"+q.Encode()), nil)
}

// Clone creates a volume from a snapshot.
func (c *Client) Clone(ctx context.Context, volume string, req api.CloneRequest) (api.Volume, error) {
	return call[api.Volume](ctx, c, http.MethodPost, volumePath(volume, "/clone"), req)
}

// Flatten starts copying what a clone shares.
func (c *Client) Flatten(ctx context.Context, volume string) (api.Job, error) {
	return call[api.Job](ctx, c, http.MethodPost, volumePath(volume, "/flatten"), nil)
}

// SetVolume changes volume settings.
func (c *Client) SetVolume(ctx context.Context, volume string, req api.SetVolumeRequest) (api.Volume, error) {
	return call[api.Volume](ctx, c, http.MethodPost, volumePath(volume, "/set"), req)
}

// Jobs lists background jobs.
func (c *Client) Jobs(ctx context.Context) ([]api.Job, error) {
	l, err := call[api.JobList](ctx, c, http.MethodGet, api.PathJobs, nil)
	return l.Jobs, err
}

// Job describes one job.
func (c *Client) Job(ctx context.Context, id uint64) (api.Job, error) {
	return call[api.Job](ctx, c, http.MethodGet, api.PathJobs+"/"+strconv.FormatUint(id, 10), nil)
}

// jobPoll is how often WaitJob asks for progress.
const jobPoll = 100 * time.Millisecond

// WaitJob polls a job until it ends, calling progress after each poll.
func (c *Client) WaitJob(ctx context.Context, id uint64, progress func(api.Job)) (api.Job, error) {
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return j, err
		}
		if progress != nil {
			progress(j)
		}
		switch j.State {
		case "running":
		case "failed":
			return j, &api.Error{Code: api.CodeJobFailed, Message: fmt.Sprintf("job %d (%s %s) failed: %s", j.ID, j.Kind, j.Target, j.Error)}
		default:
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(jobPoll):
		}
	}
}

// splitRef splits VOL@SNAP; the snapshot part is required unless optional.
func splitRef(ref string, optional bool) (string, string, error) {
	vol, snap, ok := strings.Cut(ref, "@")
	if vol == "" || ok && snap == "" || !ok && !optional {
		return "", "", fmt.Errorf("%w: %q: want VOLUME@SNAPSHOT", ErrUsage, ref)
	}
	return vol, snap, nil
}

// waitJob follows a job to its end: a progress bar on a terminal, nothing
// otherwise (scripts use --json or job wait).
func (a *app) waitJob(ctx context.Context, job *api.Job) (*api.Job, error) {
	if job == nil {
		return nil, nil
	}
	var bar *progressbar.ProgressBar
	if f, ok := a.out.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !a.json {
		bar = progressbar.DefaultBytes(int64(max(job.Total, 1)), fmt.Sprintf("job %d: %s %s", job.ID, job.Kind, job.Target))
	}
	j, err := a.client().WaitJob(ctx, job.ID, func(j api.Job) {
		if bar != nil {
			bar.ChangeMax64(int64(max(j.Total, 1)))
			_ = bar.Set64(int64(j.Done))
		}
	})
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(a.out)
	}
	return &j, err
}

func snapshotCommand(a *app) *cobra.Command {
	cmd := group("snapshot", "Create, list, roll back to, delete and diff snapshots (VOLUME@SNAPSHOT)")

	var description string
	var auto bool
	create := &cobra.Command{
		Use:   "create VOLUME@SNAPSHOT [--description TEXT] | VOLUME --auto",
		Short: "Snapshot a volume (instant; point-in-time exact)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			vol, snap, err := splitRef(argv[0], auto)
			if err != nil {
				return err
			}
			s, err := a.client().CreateSnapshot(cmd.Context(), vol, api.CreateSnapshotRequest{Name: snap, Description: description, Auto: auto})
			if err != nil {
				return err
			}
			return a.print(s, func(w io.Writer) { fmt.Fprintf(w, "created %s snapshot %s@%s (%s)\n", s.Kind, vol, s.Name, s.Path) })
		},
	}
	create.Flags().StringVar(&description, "description", "", "free text kept with the snapshot")
	create.Flags().BoolVar(&auto, "auto", false, "automatic snapshot: named auto-<UTC time>; at the chain limit it rotates out the oldest automatic one")

	var tree bool
	list := &cobra.Command{
		Use:   "list VOLUME [--tree]",
		Short: "List a volume's snapshots",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			l, err := a.client().Snapshots(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.print(l, func(w io.Writer) {
				if tree {
					printTree(w, l, func(s api.Snapshot) string { return snapshotLabel(s) })
					return
				}
				printSnapshots(w, l)
			})
		},
	}
	list.Flags().BoolVar(&tree, "tree", false, "draw the tree, head marked")

	var force bool
	rollback := &cobra.Command{
		Use:   "rollback VOLUME@SNAPSHOT [--force]",
		Short: "Make the volume read as the snapshot again (the VM must be stopped)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			vol, snap, err := splitRef(argv[0], false)
			if err != nil {
				return err
			}
			if err := a.confirmDiscard(cmd, "rolling "+vol+" back to "+snap, []string{vol}, settingSnapshotBeforeRollback); err != nil {
				return err
			}
			r, err := a.client().Rollback(cmd.Context(), vol, api.RollbackRequest{Snapshot: snap, Force: force})
			if err != nil {
				return err
			}
			if r.Job, err = a.waitJob(cmd.Context(), r.Job); err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) {
				fmt.Fprintf(w, "rolled %s back to %s (size %s)\n", vol, snap, api.FormatSize(r.Volume.Size))
			})
		},
	}
	rollback.Flags().BoolVar(&force, "force", false, "roll back even while the volume is open for writing (its writer sees the change underneath it)")

	var recursive, dryRun, noWait bool
	del := &cobra.Command{
		Use:   "delete VOLUME@SNAPSHOT [--recursive] [--dry-run]",
		Short: "Delete a snapshot: what a child still reads moves to it, the rest is freed",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			vol, snap, err := splitRef(argv[0], true)
			if err != nil {
				return err
			}
			if snap == "" {
				return fmt.Errorf("%w: %q is the volume's head, not a snapshot: delete the volume with rowctl volume delete %s", ErrUsage, vol, vol)
			}
			r, err := a.client().DeleteSnapshot(cmd.Context(), vol, snap, recursive, dryRun)
			if err != nil {
				return err
			}
			if !noWait {
				if r.Job, err = a.waitJob(cmd.Context(), r.Job); err != nil {
					return err
				}
			}
			return a.print(r, func(w io.Writer) { printDeletePlan(w, r) })
		},
	}
	del.Flags().BoolVar(&recursive, "recursive", false, "delete the snapshot's whole subtree (refused if it holds a volume's head)")
	del.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be freed and change nothing")
	del.Flags().BoolVar(&noWait, "no-wait", false, "return once the delete is decided; the merge runs as a job (rowctl job wait)")

	diff := &cobra.Command{
		Use:   "diff VOLUME@A [VOLUME@B]",
		Short: "List the extents changed from A to B (default: the head), from the block maps alone",
		Args:  args(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			vol, from, err := splitRef(argv[0], false)
			if err != nil {
				return err
			}
			to := ""
			if len(argv) == 2 {
				vol2, snap, err := splitRef(argv[1], false)
				if err != nil {
					return err
				}
				if vol2 != vol {
					return fmt.Errorf("%w: both snapshots must be of one volume (%s, %s)", ErrUsage, vol, vol2)
				}
				to = snap
			}
			d, err := a.client().Diff(cmd.Context(), vol, from, to)
			if err != nil {
				return err
			}
			return a.print(d, func(w io.Writer) {
				target := "head"
				if to != "" {
					target = vol + "@" + to
				}
				fmt.Fprintf(w, "%s@%s → %s: %d extents, %s changed\n", vol, from, target, len(d.Extents), api.FormatSize(d.ChangedBytes))
				for _, e := range d.Extents {
					fmt.Fprintf(w, "%d\t%d\n", e.Offset, e.Length)
				}
			})
		},
	}
	cmd.AddCommand(create, list, rollback, del, diff)
	return cmd
}

func snapshotLabel(s api.Snapshot) string {
	switch {
	case s.Head:
		return "(head)"
	case s.Hidden:
		return fmt.Sprintf("%s [hidden, %d children]", s.Name, s.Children)
	}
	label := fmt.Sprintf("%s [%s, own %s, %s]", s.Name, s.Kind, api.FormatSize(s.OwnBytes), s.Created.Format("2006-01-02T15:04:05Z"))
	if s.Description != "" {
		label += " " + strconv.Quote(s.Description)
	}
	return label
}

func printSnapshots(w io.Writer, l api.SnapshotList) {
	byID := map[uint64]api.Snapshot{}
	for _, s := range l.Snapshots {
		byID[s.ID] = s
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tPARENT\tCREATED\tKIND\tOWN\tDESCRIPTION")
	for _, s := range l.Snapshots {
		if s.Head {
			continue
		}
		parent := "-"
		switch {
		case s.ParentRef != "":
			parent = s.ParentRef
		case s.Parent != 0:
			parent = byID[s.Parent].Name
		}
		kind := s.Kind
		if s.Hidden {
			kind = "hidden"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.ID, parent, s.Created.Format("2006-01-02T15:04:05Z"),
			kind, api.FormatSize(s.OwnBytes), s.Description)
	}
	tw.Flush()
}

// printTree draws the volume's tree; a clone's origin is shown as its root.
func printTree(w io.Writer, l api.SnapshotList, label func(api.Snapshot) string) {
	children := map[uint64][]api.Snapshot{}
	inList := map[uint64]bool{}
	for _, s := range l.Snapshots {
		inList[s.ID] = true
	}
	var roots []api.Snapshot
	for _, s := range l.Snapshots {
		if s.Parent == 0 || !inList[s.Parent] {
			roots = append(roots, s)
		} else {
			children[s.Parent] = append(children[s.Parent], s)
		}
	}
	var draw func(s api.Snapshot, prefix string, last bool, top bool)
	draw = func(s api.Snapshot, prefix string, last, top bool) {
		branch, next := "├── ", prefix+"│   "
		if last {
			branch, next = "└── ", prefix+"    "
		}
		if top {
			branch, next = "", prefix
			if s.ParentRef != "" {
				fmt.Fprintf(w, "%s (origin)\n", s.ParentRef)
				branch, next = "└── ", "    "
			}
		}
		fmt.Fprintf(w, "%s%s%s\n", prefix, branch, label(s))
		kids := children[s.ID]
		for i, c := range kids {
			draw(c, next, i == len(kids)-1, false)
		}
	}
	for _, r := range roots {
		draw(r, "", true, true)
	}
}

func printDeletePlan(w io.Writer, r api.DeleteSnapshotResult) {
	verb := "deleted"
	if r.DryRun {
		verb = "would delete"
	}
	fmt.Fprintf(w, "%s %s: frees %s (%d bytes), moves %s to a child without copying", verb, strings.Join(r.Plan.Deleted, ", "),
		api.FormatSize(r.Plan.FreedBytes), r.Plan.FreedBytes, api.FormatSize(r.Plan.MovedBytes))
	if r.Plan.FilledBytes > 0 {
		fmt.Fprintf(w, ", first filling %s of partly written blocks that read from it", api.FormatSize(r.Plan.FilledBytes))
	}
	fmt.Fprintln(w)
	for _, k := range r.Plan.KeptHidden {
		fmt.Fprintf(w, "kept hidden until it can merge: %s\n", k)
	}
	if r.DryRun {
		for i, s := range r.Plan.Steps {
			switch s.Kind {
			case "remove":
				fmt.Fprintf(w, "  %d. remove %s, freeing %s\n", i+1, s.Node, api.FormatSize(s.FreedBytes))
			case "merge":
				fmt.Fprintf(w, "  %d. merge %s into %s: %s move to it, %s freed", i+1, s.Node, s.Into, api.FormatSize(s.MovedBytes), api.FormatSize(s.FreedBytes))
				if s.FilledBytes > 0 {
					fmt.Fprintf(w, ", %s filled first", api.FormatSize(s.FilledBytes))
				}
				fmt.Fprintln(w)
			default:
				fmt.Fprintf(w, "  %d. keep %s hidden: still read by %s\n", i+1, s.Node, strings.Join(s.Readers, ", "))
			}
		}
	}
}

func duCommand(a *app) *cobra.Command {
	var tree, history bool
	var since, until string
	cmd := &cobra.Command{
		Use:   "du VOLUME [--tree | --history [--since 7d] [--until TIME]]",
		Short: "Space used by a volume: head, snapshots, each node's own bytes, and over time",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if history {
				return a.duHistory(cmd.Context(), argv[0], since, until)
			}
			if cmd.Flags().Changed("since") || cmd.Flags().Changed("until") {
				return fmt.Errorf("%w: --since and --until go with --history", ErrUsage)
			}
			v, err := a.client().Volume(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			l, err := a.client().Snapshots(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			out := map[string]any{"volume": v, "nodes": l.Snapshots}
			return a.print(out, func(w io.Writer) {
				if tree {
					printTree(w, l, func(s api.Snapshot) string {
						name := s.Name
						if s.Head {
							name = "(head)"
						} else if s.Hidden {
							name += " [hidden]"
						}
						return fmt.Sprintf("%-10s %s", api.FormatSize(s.OwnBytes), name)
					})
				}
				fmt.Fprintf(w, "head %s, snapshots %s, total %s; virtual size %s\n", api.FormatSize(v.UsedBytes),
					api.FormatSize(v.SnapshotBytes), api.FormatSize(v.TotalBytes), api.FormatSize(v.Size))
			})
		},
	}
	cmd.Flags().BoolVar(&tree, "tree", false, "each node's own bytes, as a tree")
	cmd.Flags().BoolVar(&history, "history", false, "the head's, snapshots' and total bytes as the daemon sampled them (hourly by default, kept 90 days)")
	cmd.Flags().StringVar(&since, "since", "", "with --history: from this long ago (7d, 12h) or an RFC 3339 time")
	cmd.Flags().StringVar(&until, "until", "", "with --history: up to this long ago or an RFC 3339 time (default now)")
	cmd.MarkFlagsMutuallyExclusive("tree", "history")
	return cmd
}

// duHistory prints a volume's capacity history.
func (a *app) duHistory(ctx context.Context, volume, since, until string) error {
	now := time.Now()
	from, err := pointInTime(since, now)
	if err != nil {
		return fmt.Errorf("%w: --since: %v", ErrUsage, err)
	}
	to, err := pointInTime(until, now)
	if err != nil {
		return fmt.Errorf("%w: --until: %v", ErrUsage, err)
	}
	h, err := a.client().History(ctx, volume, from, to)
	if err != nil {
		return err
	}
	return a.print(h, func(w io.Writer) {
		if len(h.Samples) == 0 {
			fmt.Fprintf(w, "no samples of %s in that range yet (sampled every %s, kept %s)\n", volume, h.Interval, h.Retention)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tHEAD\tSNAPSHOTS\tTOTAL")
		row := func(label string, s api.CapacitySample) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", label, api.FormatSize(s.HeadBytes), api.FormatSize(s.SnapshotBytes), api.FormatSize(s.TotalBytes))
		}
		for _, s := range h.Samples {
			row(s.Time.Local().Format("2006-01-02 15:04"), s)
		}
		if h.Current != nil {
			row("now", *h.Current)
		}
		tw.Flush()
	})
}

// pointInTime reads "" (no bound), an age like 7d or 12h before now, or an
// RFC 3339 time.
func pointInTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := api.ParsePeriod(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q: want an age like 7d or 12h, or an RFC 3339 time", s)
	}
	return now.Add(-d), nil
}

func jobCommand(a *app) *cobra.Command {
	cmd := group("job", "Follow background jobs (deletes, rollbacks, flattens)")
	var watch bool
	var watchEvery time.Duration
	list := &cobra.Command{
		Use:   "list [--watch]",
		Short: "List jobs, newest first; --watch then follows them",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if watch {
				if watchEvery <= 0 {
					return fmt.Errorf("%w: --interval must be positive", ErrUsage)
				}
				return a.watchJobs(cmd.Context(), watchEvery)
			}
			jobs, err := a.client().Jobs(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(api.JobList{Jobs: jobs}, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tKIND\tTARGET\tSTATE\tPROGRESS\tCREATED\tERROR")
				for _, j := range jobs {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s/%s\t%s\t%s\n", j.ID, j.Kind, j.Target, j.State, api.FormatSize(j.Done),
						api.FormatSize(j.Total), j.Created.Format("2006-01-02T15:04:05Z"), j.Error)
				}
				tw.Flush()
			})
		},
	}
	list.Flags().BoolVar(&watch, "watch", false, "print a line for each job that starts, progresses or ends, until interrupted (one JSON object per line with --json)")
	list.Flags().DurationVar(&watchEvery, "interval", time.Second, "with --watch: how often to ask the daemon")
	wait := &cobra.Command{
		Use:   "wait ID",
		Short: "Wait for a job to end (a progress bar on a terminal)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			j, err := a.jobArg(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			done, err := a.waitJob(cmd.Context(), &j)
			if err != nil {
				return err
			}
			return a.print(done, func(w io.Writer) { fmt.Fprintf(w, "job %d %s: %s\n", done.ID, done.Kind, done.State) })
		},
	}
	info := &cobra.Command{
		Use:   "info ID",
		Short: "Describe a job: kind, target, state, progress",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			j, err := a.jobArg(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.print(j, func(w io.Writer) {
				fmt.Fprintf(w, "job %d %s %s: %s, %s of %s\n", j.ID, j.Kind, j.Target, j.State, api.FormatSize(j.Done), api.FormatSize(j.Total))
				if j.Error != "" {
					fmt.Fprintln(w, "error:", j.Error)
				}
			})
		},
	}
	cmd.AddCommand(list, wait, info)
	return cmd
}

// jobArg is the job a command line names by id.
func (a *app) jobArg(ctx context.Context, arg string) (api.Job, error) {
	id, err := strconv.ParseUint(arg, 10, 64)
	if err != nil {
		return api.Job{}, fmt.Errorf("%w: job id %q is not a number", ErrUsage, arg)
	}
	return a.client().Job(ctx, id)
}

// cloneCommands are volume clone, flatten and set.
func cloneCommands(a *app) []*cobra.Command {
	clone := &cobra.Command{
		Use:   "clone VOLUME@SNAPSHOT NEWVOLUME",
		Short: "Create a volume from a snapshot, instantly (it shares blocks)",
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			vol, snap, err := splitRef(argv[0], false)
			if err != nil {
				return err
			}
			v, err := a.client().Clone(cmd.Context(), vol, api.CloneRequest{Snapshot: snap, Name: argv[1]})
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) { fmt.Fprintf(w, "cloned %s to volume %s at %s\n", argv[0], v.Name, v.Path) })
		},
	}
	var noWait bool
	flatten := &cobra.Command{
		Use:   "flatten VOLUME",
		Short: "Copy what a clone still shares, so it stands alone",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			j, err := a.client().Flatten(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			done := &j
			if !noWait {
				if done, err = a.waitJob(cmd.Context(), &j); err != nil {
					return err
				}
			}
			return a.print(done, func(w io.Writer) { fmt.Fprintf(w, "flatten of %s: job %d %s\n", argv[0], done.ID, done.State) })
		},
	}
	flatten.Flags().BoolVar(&noWait, "no-wait", false, "return at once; the copy runs as a job")
	set := &cobra.Command{
		Use:   "set VOLUME KEY=VALUE...",
		Short: "Change volume settings: max-snapshots=N (0: the pool default)",
		Args:  args(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var req api.SetVolumeRequest
			for _, kv := range argv[1:] {
				k, val, ok := strings.Cut(kv, "=")
				switch {
				case !ok:
					return fmt.Errorf("%w: %q: want KEY=VALUE", ErrUsage, kv)
				case k == "max-snapshots":
					n, err := strconv.Atoi(val)
					if err != nil {
						return fmt.Errorf("%w: max-snapshots=%q is not a number", ErrUsage, val)
					}
					req.MaxSnapshots = &n
				default:
					return fmt.Errorf("%w: unknown setting %q (known: max-snapshots)", ErrUsage, k)
				}
			}
			v, err := a.client().SetVolume(cmd.Context(), argv[0], req)
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) { fmt.Fprintf(w, "%s: max-snapshots=%d\n", v.Name, v.MaxSnapshots) })
		},
	}
	return []*cobra.Command{clone, flatten, set}
}

// watchJobs prints every job as it is first seen and again each time its
// state or progress changes, polling every interval, until ctx ends or
// the daemon goes away (an error: a watcher should know it lost sight).
func (a *app) watchJobs(ctx context.Context, interval time.Duration) error {
	type seen struct {
		state string
		done  uint64
	}
	last := map[uint64]seen{}
	c := a.client()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	enc := json.NewEncoder(a.out)
	for {
		jobs, err := c.Jobs(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		slices.SortFunc(jobs, func(x, y api.Job) int { return cmp.Compare(x.ID, y.ID) })
		for _, j := range jobs {
			now := seen{j.State, j.Done}
			if prev, ok := last[j.ID]; ok && prev == now {
				continue
			}
			last[j.ID] = now
			if a.json {
				if err := enc.Encode(j); err != nil {
					return err
				}
				continue
			}
			line := fmt.Sprintf("%s job %d %s %s: %s %s/%s", time.Now().Format("15:04:05"), j.ID, j.Kind, j.Target, j.State,
				api.FormatSize(j.Done), api.FormatSize(j.Total))
			if j.Error != "" {
				line += ": " + j.Error
			}
			fmt.Fprintln(a.out, line)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
