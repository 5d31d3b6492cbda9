package daemon

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/rowengine"
)

// A group's freeze hook makes its snapshots application-consistent: the
// freeze command runs (sh -c) before the cut, the thaw command after it,
// always, also when the freeze or the snapshot failed. The freeze and the
// thaw have freezeBound between them: a hook that hangs is killed there,
// with its process group. A point taken without a successful freeze is
// crash-consistent and says so.
const defaultFreezeBound = 10 * time.Second

// minThaw is what the thaw gets at least, however long the freeze took.
const minThaw = 2 * time.Second

// runHook runs cmd with sh -c, killing it and its children at the deadline.
func runHook(cmd string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.Command("/bin/sh", "-c", cmd)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(out.String()))
		}
		return nil
	case <-ctx.Done():
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("killed after %s without finishing", timeout)
	}
}

// A freezer quiesces a group's guests around a cut: the freeze and
// thaw commands (cmdFreezer), or the qemu guest agent (qgaFreezer).
type freezer interface {
	freeze(deadline time.Time) error
	thaw(deadline time.Time) error
	String() string
}

// cmdFreezer runs the group's freeze and thaw commands with sh -c.
type cmdFreezer struct{ freezeCmd, thawCmd string }

func (c cmdFreezer) String() string { return "the freeze command" }
func (c cmdFreezer) freeze(deadline time.Time) error {
	return runHook(c.freezeCmd, time.Until(deadline))
}
func (c cmdFreezer) thaw(deadline time.Time) error { return runHook(c.thawCmd, time.Until(deadline)) }

// freezersOf are the group's hooks, in the order they freeze.
func freezersOf(g rowengine.Group) []freezer {
	var out []freezer
	if g.FreezeCmd != "" {
		out = append(out, cmdFreezer{g.FreezeCmd, g.ThawCmd})
	}
	if g.QGASocket != "" {
		out = append(out, &qgaFreezer{socket: g.QGASocket})
	}
	return out
}

// groupSnapshot takes a group snapshot, frozen if the group has a hook.
// It returns the member snapshots, the consistency and, if the freeze did
// not work, why.
func (s *server) groupSnapshot(name, snap string, opts rowengine.SnapshotOptions) ([]rowengine.SnapshotInfo, string, string, error) {
	return frozenGroupSnapshot(s.pool, s.log, s.freezeBound, name, snap, opts)
}

// frozenGroupSnapshot is groupSnapshot for the API and the scheduler
// alike: bound 0 is defaultFreezeBound. Every hook that froze is thawed
// (in reverse order), also when a later freeze or the snapshot failed.
func frozenGroupSnapshot(pool *rowengine.Pool, log *slog.Logger, bound time.Duration, name, snap string, opts rowengine.SnapshotOptions) ([]rowengine.SnapshotInfo, string, string, error) {
	g, err := pool.Group(name)
	if err != nil {
		return nil, "", "", err
	}
	freezers := freezersOf(g)
	if len(freezers) == 0 {
		opts.Consistency = "crash"
		infos, err := pool.GroupSnapshot(name, snap, opts)
		return infos, "crash", "", err
	}
	deadline := time.Now().Add(cmp.Or(bound, defaultFreezeBound))
	opts.Consistency = "frozen"
	var notes []string
	tried := 0
	for _, f := range freezers {
		tried++
		if err := f.freeze(deadline); err != nil {
			opts.Consistency = "crash"
			notes = append(notes, fmt.Sprintf("%s failed to freeze (%v): the snapshot is crash-consistent", f, err))
			log.Warn("group freeze failed; taking a crash-consistent snapshot", "group", name, "hook", f.String(), "err", err)
			break
		}
	}
	infos, snapErr := pool.GroupSnapshot(name, snap, opts)
	thawBy := deadline
	if time.Until(thawBy) < minThaw {
		thawBy = time.Now().Add(minThaw)
	}
	for i := tried - 1; i >= 0; i-- {
		if err := freezers[i].thaw(thawBy); err != nil {
			log.Error("group thaw failed", "group", name, "hook", freezers[i].String(), "err", err)
			notes = append(notes, fmt.Sprintf("%s failed to thaw: %v", freezers[i], err))
		}
	}
	return infos, opts.Consistency, strings.Join(notes, "; "), snapErr
}

// peerIsRoot reports a request from root: only root may set hooks, which
// run as the daemon's user.
func peerIsRoot(r *http.Request) bool {
	cred, ok := r.Context().Value(peerKey{}).(*unix.Ucred)
	return !ok || cred.Uid == 0 // no credentials: the in-process tests
}
