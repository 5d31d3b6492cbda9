package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/ctl"
	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/daemon"
	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/crashtest"
)

// mountTarget drives a daemon as a VM host would: data through the volume
// files on the mount, everything else through the control API.
type mountTarget struct {
	mnt string
	c   *ctl.Client
}

var bg = context.Background()

func (m mountTarget) path(vol string) string { return filepath.Join(m.mnt, vol) }

func (m mountTarget) withFile(vol string, fn func(f *os.File) error) error {
	f, err := os.OpenFile(m.path(vol), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = fn(f)
	return errors.Join(err, f.Close())
}

func (m mountTarget) CreateVolume(name string, size uint64) error {
	_, err := m.c.CreateVolume(bg, api.CreateVolumeRequest{Name: name, Size: size})
	return err
}

func (m mountTarget) DeleteVolume(name string) error {
	_, err := m.c.DeleteVolume(bg, name, false)
	return err
}

func (m mountTarget) WriteAt(vol string, data []byte, off int64) error {
	return m.withFile(vol, func(f *os.File) error {
		_, err := f.WriteAt(data, off)
		return err
	})
}

// WriteAtSync is a pwritev2 with RWF_DSYNC: the kernel marks the FUSE
// write request O_DSYNC, as for a file opened so.
func (m mountTarget) WriteAtSync(vol string, data []byte, off int64) error {
	return m.withFile(vol, func(f *os.File) error {
		_, err := unix.Pwritev2(int(f.Fd()), [][]byte{data}, off, unix.RWF_DSYNC)
		return err
	})
}

func (m mountTarget) Discard(vol string, off, length int64) error {
	return m.withFile(vol, func(f *os.File) error {
		return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	})
}

func (m mountTarget) Sync(vol string) error {
	return m.withFile(vol, func(f *os.File) error { return f.Sync() })
}

func (m mountTarget) Snapshot(vol, name string) error {
	_, err := m.c.CreateSnapshot(bg, vol, api.CreateSnapshotRequest{Name: name})
	return err
}

func (m mountTarget) Rollback(vol, snap string) error {
	_, err := m.c.Rollback(bg, vol, api.RollbackRequest{Snapshot: snap})
	return err
}

func (m mountTarget) DeleteSnapshot(vol, snap string) error {
	_, err := m.c.DeleteSnapshot(bg, vol, snap, false, false)
	return err
}

func (m mountTarget) Clone(vol, snap, name string) error {
	_, err := m.c.Clone(bg, vol, api.CloneRequest{Snapshot: snap, Name: name})
	return err
}

func (m mountTarget) Flatten(vol string) error {
	_, err := m.c.Flatten(bg, vol)
	var apiErr *api.Error
	if errors.As(err, &apiErr) && apiErr.Code == api.CodeInvalidArgument {
		return nil // it shares nothing any more
	}
	return err
}

func (m mountTarget) Volumes() ([]string, error) {
	vols, err := m.c.Volumes(bg)
	var out []string
	for _, v := range vols {
		out = append(out, v.Name)
	}
	return out, err
}

func (m mountTarget) Snapshots(vol string) ([]string, error) {
	list, err := m.c.Snapshots(bg, vol)
	var out []string
	for _, s := range list.Snapshots {
		if !s.Head && !s.Hidden {
			out = append(out, s.Name)
		}
	}
	return out, err
}

func (m mountTarget) ReadVolume(vol string) ([]byte, error) { return os.ReadFile(m.path(vol)) }

func (m mountTarget) ReadSnapshot(vol, snap string) ([]byte, error) {
	return os.ReadFile(filepath.Join(m.mnt, ".snapshots", vol, snap))
}

// recoverAndVerify waits until the restarted daemon runs no job, checks
// it with online fsck, and its contents against the model; it returns the
// model of what it found.
func recoverAndVerify(target mountTarget, model *crashtest.Model) (*crashtest.Model, error) {
	jobs, err := target.c.Jobs(bg)
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if j.State == "running" {
			if _, err := target.c.WaitJob(bg, j.ID, nil); err != nil {
				return nil, fmt.Errorf("job %d (%s %s): %w", j.ID, j.Kind, j.Target, err)
			}
		}
	}
	rep, err := target.c.Fsck(bg, "")
	if err != nil {
		return nil, err
	}
	if len(rep.Corruptions)+len(rep.Leaks) > 0 {
		return nil, fmt.Errorf("fsck after kill -9: corruptions %q leaks %q", rep.Corruptions, rep.Leaks)
	}
	if model.Inflight != nil && model.Inflight.Kind == "flatten" {
		model.Inflight = nil // a flatten changes no content
	}
	return crashtest.Verify(target, model)
}

// TestKill9Loop kills the real daemon with SIGKILL at a random moment of
// the mixed workload, 100 times (ROWFS_KILL_CYCLES), or for
// ROWFS_SOAK_DURATION (make soak). Every other cycle also arms the crash
// switch (ROWFSD_CRASH_AT) at the next engine crash point, so the daemon
// may kill itself there first. After each restart: interrupted jobs
// finish, online fsck is clean, and every volume and snapshot holds what
// the durability promise allows (crashtest.Verify).
func TestKill9Loop(t *testing.T) {
	requireE2E(t)
	cycles := 100
	if s := os.Getenv("ROWFS_KILL_CYCLES"); s != "" {
		cycles, _ = strconv.Atoi(s)
	}
	var soak time.Duration
	if s := os.Getenv("ROWFS_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("ROWFS_SOAK_DURATION: %v", err)
		}
		soak, cycles = d, 1<<30
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 2))
	killRnd := rand.New(rand.NewPCG(seed, 3))
	e := newEnv(t)
	model := crashtest.NewModel()
	start := time.Now()
	steps, midOp, selfKills := 0, 0, 0
	cycle := 0
	for ; cycle < cycles && (soak == 0 || time.Since(start) < soak); cycle++ {
		var environ []string
		if cycle%2 == 1 {
			point := rowengine.CrashPoints[(cycle/2)%len(rowengine.CrashPoints)]
			environ = []string{fmt.Sprintf("%s=%s:%d", daemon.CrashEnv, point, 1+killRnd.IntN(5))}
		}
		d, err := e.tryStart(environ, "--block-size", "16K")
		if err != nil && environ != nil && d.diesSoon() {
			// The crash switch fired while the pool opened (a resumed job).
			selfKills++
			d.kill9()
			environ = nil
			d = e.start("--block-size", "16K")
		} else if err != nil {
			t.Fatal(err)
		}
		target := mountTarget{mnt: e.mnt, c: ctl.NewClient(e.sock)}
		for cycle > 0 {
			got, err := recoverAndVerify(target, model)
			if err == nil {
				model = got
				break
			}
			if environ != nil && d.diesSoon() {
				// The crash switch fired during recovery: a crash while
				// resuming jobs is one more crash state. Start again.
				selfKills++
				d.kill9()
				environ = nil
				d = e.start("--block-size", "16K")
				continue
			}
			t.Fatalf("cycle %d (seed %d, op in flight: %v): %v\ndaemon log:\n%s", cycle, seed, model.Inflight, err, d.log)
		}
		w := &crashtest.Workload{T: target, M: model, Rnd: rnd}
		done := make(chan error, 1)
		stop := make(chan struct{})
		var killed atomic.Bool
		go func() {
			for {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				if op, err := w.Step(); err != nil {
					if !killed.Load() && !d.diesSoon() {
						err = fmt.Errorf("%s failed before the kill: %w", op, err)
						close(done)
						t.Errorf("cycle %d: %v", cycle, err)
						return
					}
					done <- err
					return
				}
				steps++
			}
		}()
		select {
		case <-time.After(time.Duration(20+killRnd.IntN(300)) * time.Millisecond):
		case <-d.exited:
			selfKills++ // the crash switch fired
		}
		killed.Store(true)
		d.kill9()
		close(stop)
		err, ok := <-done
		if !ok {
			t.FailNow()
		}
		if err != nil {
			midOp++ // the kill landed inside an operation: expected
		}
	}
	crashtest.Report("kill -9 loop: %d cycles (%d by the crash switch), %d workload steps, %d kills inside an operation, %s",
		cycle, selfKills, steps, midOp, time.Since(start).Round(time.Second))
}
