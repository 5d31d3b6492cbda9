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

// groupSnapshot takes a group snapshot, frozen if the group has a hook.
// It returns the member snapshots, the consistency and, if the freeze did
// not work, why.
func (s *server) groupSnapshot(name, snap string, opts rowengine.SnapshotOptions) ([]rowengine.SnapshotInfo, string, string, error) {
	return frozenGroupSnapshot(s.pool, s.log, s.freezeBound, name, snap, opts)
}

// frozenGroupSnapshot is groupSnapshot for the API and the scheduler
// alike: bound 0 is defaultFreezeBound.
func frozenGroupSnapshot(pool *rowengine.Pool, log *slog.Logger, bound time.Duration, name, snap string, opts rowengine.SnapshotOptions) ([]rowengine.SnapshotInfo, string, string, error) {
	g, err := pool.Group(name)
	if err != nil {
		return nil, "", "", err
	}
	if g.FreezeCmd == "" {
		opts.Consistency = "crash"
		infos, err := pool.GroupSnapshot(name, snap, opts)
		return infos, "crash", "", err
	}
	bound = cmp.Or(bound, defaultFreezeBound)
	start := time.Now()
	opts.Consistency = "frozen"
	note := ""
	if err := runHook(g.FreezeCmd, bound); err != nil {
		opts.Consistency = "crash"
		note = fmt.Sprintf("the freeze hook failed (%v): the snapshot is crash-consistent", err)
		log.Warn("group freeze hook failed; taking a crash-consistent snapshot", "group", name, "err", err)
	}
	infos, snapErr := pool.GroupSnapshot(name, snap, opts)
	if err := runHook(g.ThawCmd, max(bound-time.Since(start), minThaw)); err != nil {
		log.Error("group thaw hook failed", "group", name, "err", err)
		note = strings.TrimSpace(note + " the thaw hook failed: " + err.Error())
	}
	return infos, opts.Consistency, note, snapErr
}

// peerIsRoot reports a request from root: only root may set hooks, which
// run as the daemon's user.
func peerIsRoot(r *http.Request) bool {
	cred, ok := r.Context().Value(peerKey{}).(*unix.Ucred)
	return !ok || cred.Uid == 0 // no credentials: the in-process tests
}
