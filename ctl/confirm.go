package ctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/rowfs/rowfs/ctl/api"
)

// ErrNotConfirmed is a discarding operation the user did not confirm.
var ErrNotConfirmed = errors.New("not confirmed")

// Pool settings that keep what an operation discards in an automatic
// snapshot (rowctl pool set): with one on, there is nothing to confirm.
const (
	settingSnapshotBeforeRollback = "snapshot-before-rollback"
	settingSnapshotBeforeReset    = "snapshot-before-reset"
)

// confirmDiscard stands before a rollback or reset, which throw away what
// each volume's head holds beyond its last snapshot. It says how much
// that is, and goes on only with --yes or a "y" typed at a terminal;
// without a terminal it refuses, so a script never loses data because it
// forgot to decide. Nothing to lose (no new writes, or the pool takes an
// automatic snapshot first) asks nothing. A volume it cannot read is left
// to the operation, which reports it properly.
func (a *app) confirmDiscard(cmd *cobra.Command, what string, volumes []string, keptBy string) error {
	if a.yes {
		return nil
	}
	ctx := cmd.Context()
	c := a.client()
	if pool, err := c.Pool(ctx); err == nil && pool.Settings[keptBy] == "true" {
		return nil
	}
	var lost []string
	for _, vol := range volumes {
		if line := unsnapshotted(ctx, c, vol); line != "" {
			lost = append(lost, line)
		}
	}
	if len(lost) == 0 {
		return nil
	}
	stderr := cmd.ErrOrStderr()
	fmt.Fprintf(stderr, "rowctl: %s discards what was written since the last snapshot:\n", what)
	for _, line := range lost {
		fmt.Fprintln(stderr, "  "+line)
	}
	fmt.Fprintf(stderr, "  (take a snapshot first to keep it, or turn on rowctl pool set %s=true)\n", keptBy)
	in, isFile := cmd.InOrStdin().(*os.File)
	if !isFile || !term.IsTerminal(int(in.Fd())) {
		return fmt.Errorf("%w: %s would discard data and there is no terminal to confirm it: pass --yes", ErrUsage, what)
	}
	fmt.Fprint(stderr, "Discard it? [y/N] ")
	answer, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		return err
	}
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return fmt.Errorf("%s: %w (nothing changed)", what, ErrNotConfirmed)
	}
	return nil
}

// unsnapshotted describes what vol's head holds beyond its parent ("vm1:
// 12 MiB written since vm1@s2"), or "" if nothing or unknown.
func unsnapshotted(ctx context.Context, c *Client, vol string) string {
	l, err := c.Snapshots(ctx, vol)
	if err != nil {
		return ""
	}
	byID := map[uint64]api.Snapshot{}
	for _, s := range l.Snapshots {
		byID[s.ID] = s
	}
	for _, s := range l.Snapshots {
		if !s.Head || s.OwnBytes == 0 {
			continue
		}
		since := "it was created"
		if s.ParentRef != "" {
			since = s.ParentRef
		} else if p, ok := byID[s.Parent]; ok && s.Parent != 0 {
			since = vol + "@" + p.Name
		}
		return fmt.Sprintf("%s: %s written since %s", vol, api.FormatSize(s.OwnBytes), since)
	}
	return ""
}
