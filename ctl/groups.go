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

func groupPath(name, suffix string) string {
	return api.PathGroups + "/" + url.PathEscape(name) + suffix
}

// CreateGroup creates a snapshot group.
func (c *Client) CreateGroup(ctx context.Context, req api.GroupRequest) (api.Group, error) {
	return call[api.Group](ctx, c, http.MethodPost, api.PathGroups, req)
}

// SetGroupHooks sets a group's freeze and thaw commands ("" clears them).
func (c *Client) SetGroupHooks(ctx context.Context, name string, hooks api.GroupRequest) (api.Group, error) {
	return call[api.Group](ctx, c, http.MethodPost, groupPath(name, "/hooks"), hooks)
}

// Groups lists the groups.
func (c *Client) Groups(ctx context.Context) ([]api.Group, error) {
	l, err := call[api.GroupList](ctx, c, http.MethodGet, api.PathGroups, nil)
	return l.Groups, err
}

// Group describes a group and its points.
func (c *Client) Group(ctx context.Context, name string) (api.Group, error) {
	return call[api.Group](ctx, c, http.MethodGet, groupPath(name, ""), nil)
}

// DeleteGroup deletes a group (its volumes stay).
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, groupPath(name, ""), nil, nil)
}

// ChangeGroup adds volumes to a group or removes them.
func (c *Client) ChangeGroup(ctx context.Context, name string, volumes []string, add bool) (api.Group, error) {
	action := "/remove"
	if add {
		action = "/add"
	}
	return call[api.Group](ctx, c, http.MethodPost, groupPath(name, action), api.GroupRequest{Volumes: volumes})
}

// GroupSnapshotAction takes (snapshot), rolls back to (rollback) or
// deletes (delete-snapshot) a group snapshot.
func (c *Client) GroupSnapshotAction(ctx context.Context, name, action string, req api.GroupSnapshotRequest) (api.GroupSnapshotResult, error) {
	return call[api.GroupSnapshotResult](ctx, c, http.MethodPost, groupPath(name, "/"+action), req)
}

func groupCommand(a *app) *cobra.Command {
	cmd := group("group", "Snapshot groups: a VM's disks snapshotted at one instant")
	var hooks api.GroupRequest
	create := &cobra.Command{
		Use:   "create GROUP VOLUME... [--freeze-cmd CMD --thaw-cmd CMD] [--qga-socket PATH]",
		Short: "Create a group (a volume belongs to one group at a time)",
		Long: `A group's snapshots take every member at one instant. With --freeze-cmd and
--thaw-cmd (run by sh as the daemon's user, root only; e.g. virsh domfsfreeze
and domfsthaw) they are application-consistent: the freeze runs before the
cut, the thaw after it, always; both within 10 s, and a failed freeze gives a
crash-consistent point that says so. With --qga-socket (the VM's qemu guest
agent channel, e.g. -chardev socket,path=/run/vm1-qga.sock,server=on,wait=off
-device virtio-serial -device virtserialport,chardev=…,name=org.qemu.guest_agent.0)
the guest agent freezes the guest's filesystems around the cut.

A group of local and RBD volumes needs a freeze hook: no single cut covers
both, so its points are two cuts taken while the guest is frozen.`,
		Args: args(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			req := hooks
			req.Name, req.Volumes = argv[0], argv[1:]
			g, err := a.client().CreateGroup(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(g, func(w io.Writer) { fmt.Fprintf(w, "group %s: %s\n", g.Name, strings.Join(g.Volumes, ", ")) })
		},
	}
	hookFlags(create, &hooks)
	var newHooks api.GroupRequest
	setHooks := &cobra.Command{
		Use: "hooks GROUP [--freeze-cmd CMD --thaw-cmd CMD] [--qga-socket PATH]", Short: "Set or (with no flag) clear a group's freeze hooks", Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			g, err := a.client().SetGroupHooks(cmd.Context(), argv[0], newHooks)
			if err != nil {
				return err
			}
			return a.print(g, func(w io.Writer) {
				fmt.Fprintf(w, "group %s: freeze %q, thaw %q, guest agent %q\n", g.Name, g.FreezeCmd, g.ThawCmd, g.QGASocket)
			})
		},
	}
	hookFlags(setHooks, &newHooks)
	change := func(use, short string, add bool) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: args(cobra.MinimumNArgs(2)),
			RunE: func(cmd *cobra.Command, argv []string) error {
				g, err := a.client().ChangeGroup(cmd.Context(), argv[0], argv[1:], add)
				if err != nil {
					return err
				}
				return a.print(g, func(w io.Writer) { fmt.Fprintf(w, "group %s: %s\n", g.Name, strings.Join(g.Volumes, ", ")) })
			},
		}
	}
	list := &cobra.Command{
		Use: "list", Short: "List the groups", Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			gs, err := a.client().Groups(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(api.GroupList{Groups: gs}, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "GROUP\tVOLUMES\tSNAPSHOTS")
				for _, g := range gs {
					fmt.Fprintf(tw, "%s\t%s\t%d\n", g.Name, strings.Join(g.Volumes, ","), len(g.Points))
				}
				tw.Flush()
			})
		},
	}
	info := &cobra.Command{
		Use: "info GROUP", Short: "Show a group: members and its snapshots, each restorable as a group or why not", Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			g, err := a.client().Group(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.print(g, func(w io.Writer) {
				fmt.Fprintf(w, "group %s: %s\n", g.Name, strings.Join(g.Volumes, ", "))
				for _, pt := range g.Points {
					state := "restorable as a group"
					if !pt.Valid {
						state = "not restorable as a group: " + pt.Why
					}
					fmt.Fprintf(w, "  %s  %s  %s-consistent  on %s: %s\n", pt.Name, when(pt.Created), pt.Consistency, strings.Join(pt.Members, ","), state)
				}
			})
		},
	}
	var description string
	var auto bool
	snapshot := &cobra.Command{
		Use:   "snapshot GROUP@SNAPSHOT [--description T] | GROUP --auto",
		Short: "Snapshot every member at one instant (or delete a group snapshot: group snapshot delete GROUP@SNAPSHOT)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			g, snap, err := splitRef(argv[0], auto)
			if err != nil {
				return err
			}
			if auto && snap != "" {
				return fmt.Errorf("%w: --auto names the snapshot itself: give GROUP alone", ErrUsage)
			}
			r, err := a.client().GroupSnapshotAction(cmd.Context(), g, "snapshot", api.GroupSnapshotRequest{Snapshot: snap, Description: description, Auto: auto})
			if err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) {
				for _, s := range r.Snapshots {
					fmt.Fprintf(w, "created %s@%s (%s-consistent)\n", s.Volume, s.Name, r.Consistency)
				}
				if r.Note != "" {
					fmt.Fprintf(w, "note: %s\n", r.Note)
				}
			})
		},
	}
	snapshot.Flags().StringVar(&description, "description", "", "description of every member snapshot")
	snapshot.Flags().BoolVar(&auto, "auto", false, "an automatic group snapshot, named auto-<UTC time>")
	snapshot.AddCommand(&cobra.Command{
		Use: "delete GROUP@SNAPSHOT", Short: "Delete every member snapshot of a group snapshot", Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			g, snap, err := splitRef(argv[0], false)
			if err != nil {
				return err
			}
			r, err := a.client().GroupSnapshotAction(cmd.Context(), g, "delete-snapshot", api.GroupSnapshotRequest{Snapshot: snap})
			if err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) { fmt.Fprintf(w, "deleted group snapshot %s@%s\n", g, snap) })
		},
	})
	var force bool
	rollback := &cobra.Command{
		Use: "rollback GROUP@SNAPSHOT [--force]", Short: "Roll every member back to a group snapshot (the VM must be stopped)", Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			g, snap, err := splitRef(argv[0], false)
			if err != nil {
				return err
			}
			// A group the daemon does not know is left to the rollback to report.
			if group, err := a.client().Group(cmd.Context(), g); err == nil {
				if err := a.confirmDiscard(cmd, "rolling group "+g+" back to "+snap, group.Volumes, settingSnapshotBeforeRollback); err != nil {
					return err
				}
			}
			r, err := a.client().GroupSnapshotAction(cmd.Context(), g, "rollback", api.GroupSnapshotRequest{Snapshot: snap, Force: force})
			if err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) {
				for _, v := range r.Volumes {
					fmt.Fprintf(w, "rolled %s back to %s\n", v.Name, snap)
				}
			})
		},
	}
	rollback.Flags().BoolVar(&force, "force", false, "roll back even while members are open for writing")
	del := &cobra.Command{
		Use: "delete GROUP", Short: "Delete a group (its volumes and snapshots stay)", Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := a.client().DeleteGroup(cmd.Context(), argv[0]); err != nil {
				return err
			}
			return a.print(map[string]string{"deleted": argv[0]}, func(w io.Writer) { fmt.Fprintf(w, "deleted group %s\n", argv[0]) })
		},
	}
	cmd.AddCommand(create, change("add GROUP VOLUME...", "Add volumes to a group", true),
		change("remove GROUP VOLUME...", "Remove volumes from a group", false), setHooks, list, info, snapshot, rollback, del)
	return cmd
}

// hookFlags are a group's freeze hooks as flags.
func hookFlags(cmd *cobra.Command, into *api.GroupRequest) {
	cmd.Flags().StringVar(&into.FreezeCmd, "freeze-cmd", "", "command to run before each group snapshot (with --thaw-cmd)")
	cmd.Flags().StringVar(&into.ThawCmd, "thaw-cmd", "", "command to run after it, always")
	cmd.Flags().StringVar(&into.QGASocket, "qga-socket", "", "the VM's qemu guest agent socket: freeze the guest's filesystems around each cut")
}
