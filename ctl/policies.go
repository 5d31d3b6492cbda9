package ctl

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rowfs/rowfs/ctl/api"
)

func policyPath(name, suffix string) string {
	return api.PathPolicies + "/" + url.PathEscape(name) + suffix
}

// CreatePolicy creates a snapshot policy.
func (c *Client) CreatePolicy(ctx context.Context, req api.PolicyRequest) (api.Policy, error) {
	return call[api.Policy](ctx, c, http.MethodPost, api.PathPolicies, req)
}

// Policies lists the snapshot policies.
func (c *Client) Policies(ctx context.Context) ([]api.Policy, error) {
	l, err := call[api.PolicyList](ctx, c, http.MethodGet, api.PathPolicies, nil)
	return l.Policies, err
}

// Policy describes one policy.
func (c *Client) Policy(ctx context.Context, name string) (api.Policy, error) {
	return call[api.Policy](ctx, c, http.MethodGet, policyPath(name, ""), nil)
}

// DeletePolicy deletes a policy (its snapshots stay).
func (c *Client) DeletePolicy(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, policyPath(name, ""), nil, nil)
}

// PolicyAction applies or removes volumes and groups, or pauses or
// resumes a policy.
func (c *Client) PolicyAction(ctx context.Context, name, action string, volumes, groups []string) (api.Policy, error) {
	var body any
	if volumes != nil || groups != nil {
		body = api.PolicyVolumesRequest{Volumes: volumes, Groups: groups}
	}
	return call[api.Policy](ctx, c, http.MethodPost, policyPath(name, "/"+action), body)
}

// RunPolicy runs a policy now.
func (c *Client) RunPolicy(ctx context.Context, name string) (api.PolicyRunResult, error) {
	return call[api.PolicyRunResult](ctx, c, http.MethodPost, policyPath(name, "/run"), nil)
}

func policyCommand(a *app) *cobra.Command {
	cmd := group("policy", "Snapshot policies: scheduled automatic snapshots with retention")
	var req api.PolicyRequest
	var hours, weekdays string
	create := &cobra.Command{
		Use:   "create NAME (--hours H,… --weekdays D,… | --every PERIOD [--times K] [--start TIME] | --cron EXPR) [--keep N] [--retain-days N|forever] [--timezone TZ] [VOLUME…]",
		Short: "Create a policy: Alibaba's hours × weekdays, ZStack's every N minutes/hours/days, or a cron expression",
		Long: `A policy takes an automatic snapshot of each of its volumes when it is due,
then deletes its own snapshots beyond --keep or older than --retain-days
(never a manual snapshot, another policy's, or its newest). After the daemon
was down it runs once if a run was due; a run that lasts past the next due
time skips it.

  rowctl policy create daily --hours 0,12 --weekdays mon,wed,fri --retain-days 7 vm1
  rowctl policy create often --every 30m --times 48 --keep 4 vm1 vm2
  rowctl policy create nightly --cron "30 2 * * *" --timezone Europe/Berlin --keep 7`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			req.Name, req.Volumes = argv[0], argv[1:]
			if hours != "" {
				for _, h := range strings.Split(hours, ",") {
					n, err := strconv.Atoi(strings.TrimSpace(h))
					if err != nil {
						return fmt.Errorf("%w: --hours %q: want numbers 0 to 23, like 0,6,12,18", ErrUsage, hours)
					}
					req.Hours = append(req.Hours, n)
				}
			}
			if weekdays != "" {
				for _, d := range strings.Split(weekdays, ",") {
					req.Weekdays = append(req.Weekdays, strings.TrimSpace(d))
				}
			}
			p, err := a.client().CreatePolicy(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(p, func(w io.Writer) { printPolicy(w, p) })
		},
	}
	f := create.Flags()
	f.StringVar(&hours, "hours", "", "hours of the day, 0–23, comma-separated (with --weekdays)")
	f.StringVar(&weekdays, "weekdays", "", "days of the week, 1–7 (Monday is 1) or mon … sun, comma-separated (with --hours)")
	f.StringVar(&req.Every, "every", "", "period, like 30m, 4h or 1d")
	f.IntVar(&req.Times, "times", 0, "with --every: run this many times, then stop (0: forever)")
	f.StringVar(&req.Start, "start", "", "with --every: first run, RFC 3339 (default: now)")
	f.StringVar(&req.Cron, "cron", "", "cron expression (minute hour day month weekday)")
	f.StringVar(&req.Timezone, "timezone", "", "IANA time zone of the schedule (default: the host's)")
	f.IntVar(&req.Keep, "keep", 0, "keep at most N of the policy's snapshots per volume (0: no bound)")
	f.StringVar(&req.RetainDays, "retain-days", "", "delete the policy's snapshots older than N days (1–65536), or forever")
	f.StringVar(&req.Task, "task", "snapshot", "what a run does: snapshot, or backup (a backup point of each volume; --keep and --retain-days bound the policy's points)")
	f.StringVar(&req.Target, "target", "", "with --task backup: the backup target (default: the only one)")

	volumes := func(use, short, action string) *cobra.Command {
		var groups []string
		c := &cobra.Command{
			Use: use, Short: short, Args: args(cobra.MinimumNArgs(1)),
			RunE: func(cmd *cobra.Command, argv []string) error {
				if len(argv) < 2 && len(groups) == 0 {
					return fmt.Errorf("%w: name volumes or --group", ErrUsage)
				}
				p, err := a.client().PolicyAction(cmd.Context(), argv[0], action, argv[1:], groups)
				if err != nil {
					return err
				}
				return a.print(p, func(w io.Writer) {
					fmt.Fprintf(w, "%s: volumes %s; groups %s\n", p.Name, strings.Join(p.Volumes, ", "), strings.Join(p.Groups, ", "))
				})
			},
		}
		c.Flags().StringSliceVar(&groups, "group", nil, "snapshot groups (one group snapshot a run)")
		return c
	}
	state := func(action, short string) *cobra.Command {
		return &cobra.Command{
			Use: action + " NAME", Short: short, Args: args(cobra.ExactArgs(1)),
			RunE: func(cmd *cobra.Command, argv []string) error {
				p, err := a.client().PolicyAction(cmd.Context(), argv[0], action, nil, nil)
				if err != nil {
					return err
				}
				return a.print(p, func(w io.Writer) { fmt.Fprintf(w, "%s: %s\n", p.Name, p.State) })
			},
		}
	}
	list := &cobra.Command{
		Use: "list", Short: "List the policies with their next runs", Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := a.client().Policies(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(api.PolicyList{Policies: ps}, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSCHEDULE\tKEEP\tVOLUMES\tSTATE\tNEXT RUN")
				for _, p := range ps {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Schedule, retention(p), strings.Join(p.Volumes, ","), p.State, when(p.NextRun))
				}
				tw.Flush()
			})
		},
	}
	info := &cobra.Command{
		Use: "info NAME", Short: "Show a policy: volumes, next run, last run and its result", Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			p, err := a.client().Policy(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.print(p, func(w io.Writer) { printPolicy(w, p) })
		},
	}
	run := &cobra.Command{
		Use: "run NAME", Short: "Run a policy now (its schedule goes on)", Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			r, err := a.client().RunPolicy(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			if err := a.print(r, func(w io.Writer) {
				for _, s := range r.Created {
					fmt.Fprintf(w, "created %s\n", s)
				}
				for _, s := range r.Pruned {
					fmt.Fprintf(w, "pruned %s\n", s)
				}
				for _, e := range r.Errors {
					fmt.Fprintf(w, "failed: %s\n", e)
				}
			}); err != nil {
				return err
			}
			if len(r.Errors) > 0 {
				return &ExitStatus{Code: ExitFailed}
			}
			return nil
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a policy (the snapshots it took stay)", Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := a.client().DeletePolicy(cmd.Context(), argv[0]); err != nil {
				return err
			}
			return a.print(map[string]string{"deleted": argv[0]}, func(w io.Writer) { fmt.Fprintf(w, "deleted policy %s\n", argv[0]) })
		},
	}
	cmd.AddCommand(create, volumes("apply NAME VOLUME...|--group G", "Apply a policy to volumes or snapshot groups", "apply"),
		volumes("remove NAME VOLUME...|--group G", "Stop applying a policy to volumes or groups (their snapshots stay)", "remove"),
		list, info, run, state("pause", "Pause a policy"), state("resume", "Resume a paused policy (what came due meanwhile does not run)"), del)
	return cmd
}

func retention(p api.Policy) string {
	var parts []string
	if p.Keep > 0 {
		parts = append(parts, strconv.Itoa(p.Keep))
	}
	if p.RetainDays > 0 {
		parts = append(parts, fmt.Sprintf("%dd", p.RetainDays))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, ", ")
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func printPolicy(w io.Writer, p api.Policy) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "policy:\t%s\nschedule:\t%s (%s)\nkeeps:\t%s\nvolumes:\t%s\nstate:\t%s\nnext run:\t%s\n",
		p.Name, p.Schedule, p.Timezone, retention(p), strings.Join(p.Volumes, ", "), p.State, when(p.NextRun))
	fmt.Fprintf(tw, "last run:\t%s\nlast result:\t%s\nruns:\t%d (%d skipped for overrunning)\n", when(p.LastRun), p.LastResult, p.Runs, p.Skipped)
	tw.Flush()
}
