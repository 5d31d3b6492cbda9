package ctl

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rowfs/rowfs/ctl/api"
)

// completionTimeout bounds a completion's question to the daemon: a shell
// waits on it, so with no daemon (or a stuck one) it completes nothing,
// quickly and without a word.
const completionTimeout = 500 * time.Millisecond

// nameKind is what a command's first argument names, read from its Use
// line ("rollback VOLUME@SNAPSHOT …"): the one place completion learns it,
// so a new command completes by how it spells its usage.
func nameKind(cmd *cobra.Command) string {
	fields := strings.Fields(cmd.Use)
	if len(fields) < 2 {
		return ""
	}
	arg := strings.TrimRight(fields[1], ".…")
	if arg == "NAME" || arg == "ID" {
		// NAME is a volume's under volume, a policy's under policy; ID a job's.
		return cmd.Parent().Name() + " " + arg
	}
	return arg
}

// addCompletion gives every command under root that takes a name as its
// first argument a completion of the names the daemon knows.
func addCompletion(a *app, root *cobra.Command) {
	for _, cmd := range root.Commands() {
		addCompletion(a, cmd)
		kind := nameKind(cmd)
		if (cmd.Name() == "create" || cmd.Name() == "attach") && !strings.Contains(kind, "@") {
			continue // a new name: nothing to complete
		}
		complete := a.completer(kind)
		if complete == nil || cmd.ValidArgsFunction != nil {
			continue
		}
		cmd.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
			defer cancel()
			names, directive := complete(ctx, toComplete)
			return names, directive | cobra.ShellCompDirectiveNoFileComp
		}
	}
}

type completeFunc func(ctx context.Context, toComplete string) ([]string, cobra.ShellCompDirective)

// namesOf lists what the daemon answers with list, by name; nothing if it
// does not answer.
func namesOf[T any](ctx context.Context, list func(context.Context) ([]T, error), name func(T) string) []string {
	items, err := list(ctx)
	if err != nil {
		return nil
	}
	names := make([]string, len(items))
	for i, item := range items {
		names[i] = name(item)
	}
	return names
}

// completer answers for one kind of name; nil for arguments it does not know.
func (a *app) completer(kind string) completeFunc {
	// The client is made when a completion runs: --socket is parsed by then.
	c := func() *Client { return a.client() }
	volumes := func(ctx context.Context) []string {
		return namesOf(ctx, c().Volumes, func(v api.Volume) string { return v.Name })
	}
	groups := func(ctx context.Context) []string {
		return namesOf(ctx, c().Groups, func(g api.Group) string { return g.Name })
	}
	// owner@ completes to owner's snapshots; a bare prefix to "owner@",
	// without a space after it.
	withSnapshot := func(owners func(context.Context) []string, snapshots func(context.Context, string) []string) completeFunc {
		return func(ctx context.Context, toComplete string) ([]string, cobra.ShellCompDirective) {
			owner, _, hasAt := strings.Cut(toComplete, "@")
			if !hasAt {
				names := owners(ctx)
				for i := range names {
					names[i] += "@"
				}
				return names, cobra.ShellCompDirectiveNoSpace
			}
			snaps := snapshots(ctx, owner)
			for i := range snaps {
				snaps[i] = owner + "@" + snaps[i]
			}
			return snaps, cobra.ShellCompDirectiveDefault
		}
	}
	volumeSnapshots := func(ctx context.Context, volume string) []string {
		l, err := c().Snapshots(ctx, volume)
		if err != nil {
			return nil
		}
		var names []string
		for _, s := range l.Snapshots {
			if !s.Head && !s.Hidden {
				names = append(names, s.Name)
			}
		}
		return names
	}
	groupSnapshots := func(ctx context.Context, group string) []string {
		g, err := c().Group(ctx, group)
		if err != nil {
			return nil
		}
		names := make([]string, len(g.Points))
		for i, p := range g.Points {
			names[i] = p.Name
		}
		return names
	}
	plain := func(list func(context.Context) []string) completeFunc {
		return func(ctx context.Context, _ string) ([]string, cobra.ShellCompDirective) {
			return list(ctx), cobra.ShellCompDirectiveDefault
		}
	}
	switch kind {
	case "volume NAME", "VOLUME":
		return plain(volumes)
	case "VOLUME@SNAPSHOT", "VOLUME@A":
		return withSnapshot(volumes, volumeSnapshots)
	case "GROUP":
		return plain(groups)
	case "GROUP@SNAPSHOT":
		return withSnapshot(groups, groupSnapshots)
	case "policy NAME":
		return plain(func(ctx context.Context) []string {
			return namesOf(ctx, c().Policies, func(p api.Policy) string { return p.Name })
		})
	case "job ID":
		return plain(func(ctx context.Context) []string {
			return namesOf(ctx, c().Jobs, func(j api.Job) string { return strconv.FormatUint(j.ID, 10) })
		})
	}
	return nil
}
