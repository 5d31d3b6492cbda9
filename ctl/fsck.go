package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/rowfs/rowfs/ctl/api"
)

// Exit codes of rowctl fsck and rowfsd fsck, as qemu-img check's.
const (
	FsckClean       = 0
	FsckCouldNotRun = 1
	FsckCorrupt     = 2
	FsckLeaks       = 3
)

// ExitStatus ends a command with a given exit code; Msg, if set, is
// printed as the error.
type ExitStatus struct {
	Code int
	Msg  string
}

func (e *ExitStatus) Error() string { return e.Msg }

// FsckExitCode is the exit code a report calls for.
func FsckExitCode(r api.FsckReport) int {
	switch {
	case len(r.Corruptions) > 0:
		return FsckCorrupt
	case len(r.Leaks) > 0:
		return FsckLeaks
	}
	return FsckClean
}

// PrintFsckReport writes a report for people: corruptions, then leaks,
// then what a repair did and lost.
func PrintFsckReport(w io.Writer, r api.FsckReport) {
	where := "offline"
	if r.Online {
		where = "online, through rowfsd"
	}
	fmt.Fprintf(w, "pool %s (%s): %d volumes, %d nodes, %d mapped blocks, data file %d blocks\n",
		r.Pool, where, r.Volumes, r.Nodes, r.MappedBlocks, r.FileBlocks)
	for _, s := range r.Repaired {
		fmt.Fprintf(w, "REPAIRED: %s\n", s)
	}
	for _, s := range r.Lost {
		fmt.Fprintf(w, "DATA LOST: %s\n", s)
	}
	for _, s := range r.Corruptions {
		fmt.Fprintf(w, "ERROR: %s\n", s)
	}
	for _, s := range r.Leaks {
		fmt.Fprintf(w, "Leaked: %s\n", s)
	}
	switch FsckExitCode(r) {
	case FsckCorrupt:
		fmt.Fprintf(w, "\n%d errors were found on the pool. Data may be corrupted, or further writes to the pool may corrupt it.\n", len(r.Corruptions))
		fmt.Fprintf(w, "Stop rowfsd and run: rowctl fsck --pool %s --repair all\n", r.Pool)
	case FsckLeaks:
		fmt.Fprintf(w, "\n%d leaks were found on the pool. This means waste of space, but no harm to data.\n", len(r.Leaks))
		fmt.Fprintln(w, "Run rowctl fsck --repair leaks to free it.")
	default:
		fmt.Fprintln(w, "No errors were found on the pool.")
	}
}

func fsckCommand(a *app) *cobra.Command {
	var pool, repair string
	cmd := &cobra.Command{
		Use:   "fsck [--pool DIR] [--repair leaks|all]",
		Short: "Check the pool: online through the daemon, or offline with --pool",
		Long: `fsck checks the pool's invariants: every block free or owned once, counters
equal to a recount, a well-formed snapshot tree, map entries inside the pool.
Without --pool it asks the running daemon; with --pool DIR it checks a pool no
daemon has open (it runs rowfsd fsck, found next to rowctl, in $ROWFSD or on PATH).

--repair leaks frees leaked space and finishes interrupted merges; it loses
nothing. --repair all (offline only) also rewrites contradictory metadata and
lists the data that costs.

Exit codes, as qemu-img check's: 0 clean, 2 corruptions, 3 leaks only,
1 the check could not run.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if repair != "" && repair != "leaks" && repair != "all" {
				return &ExitStatus{Code: FsckCouldNotRun, Msg: fmt.Sprintf("--repair %q: want leaks or all", repair)}
			}
			if pool != "" {
				return fsckOffline(cmd.Context(), a, pool, repair)
			}
			rep, err := a.client().Fsck(cmd.Context(), repair)
			if err != nil {
				return &ExitStatus{Code: FsckCouldNotRun, Msg: err.Error()}
			}
			if err := a.print(rep, func(w io.Writer) { PrintFsckReport(w, rep) }); err != nil {
				return err
			}
			if code := FsckExitCode(rep); code != FsckClean {
				return &ExitStatus{Code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "check this pool directory offline (no daemon may have it open)")
	cmd.Flags().StringVar(&repair, "repair", "", "leaks: free leaked space; all: also fix corruptions (offline)")
	return cmd
}

// fsckOffline runs rowfsd fsck, which links the engine rowctl does not.
func fsckOffline(ctx context.Context, a *app, pool, repair string) error {
	bin, err := findRowfsd()
	if err != nil {
		return &ExitStatus{Code: FsckCouldNotRun, Msg: err.Error()}
	}
	argv := []string{"fsck", "--pool", pool}
	if repair != "" {
		argv = append(argv, "--repair", repair)
	}
	if a.json {
		argv = append(argv, "--json")
	}
	c := exec.CommandContext(ctx, bin, argv...)
	c.Stdout, c.Stderr = a.out, os.Stderr
	err = c.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return &ExitStatus{Code: exit.ExitCode()}
	}
	if err != nil {
		return &ExitStatus{Code: FsckCouldNotRun, Msg: fmt.Sprintf("run %s: %v", bin, err)}
	}
	return nil
}

func findRowfsd() (string, error) {
	if env := os.Getenv("ROWFSD"); env != "" {
		return env, nil
	}
	if self, err := os.Executable(); err == nil {
		next := filepath.Join(filepath.Dir(self), "rowfsd")
		if _, err := os.Stat(next); err == nil {
			return next, nil
		}
	}
	if p, err := exec.LookPath("rowfsd"); err == nil {
		return p, nil
	}
	return "", errors.New("offline fsck needs rowfsd: none next to rowctl, in $ROWFSD or on PATH")
}

// Fsck checks the daemon's pool; repair is "" or "leaks".
func (c *Client) Fsck(ctx context.Context, repair string) (api.FsckReport, error) {
	q := ""
	if repair != "" {
		q = "?repair=" + url.QueryEscape(repair)
	}
	return call[api.FsckReport](ctx, c, "POST", api.PathFsck+q, nil)
}
