package faultfs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rowfs/rowfs/fs/faultfs"
	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/crashtest"
)

// TestPowerLossChild is the child process of TestPowerLoss.
func TestPowerLossChild(t *testing.T) {
	if !crashtest.IsChild() {
		t.Skip("runs only as the child of TestPowerLoss")
	}
	if err := crashtest.ChildMain(); err != nil {
		t.Fatal(err)
	}
}

func requireFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		if _, err := os.Stat("/dev/fuse"); err == nil {
			return
		}
	}
	msg := "POWER-LOSS TEST NOT RUN: needs root and /dev/fuse (run make test as root)"
	fmt.Fprintln(os.Stderr, "!!! "+msg)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// TestPowerLoss runs the crash workload with the pool (data file and
// Badger directory) on faultfs, kills it at each crash point, then cuts
// the power: every write not covered by an fsync is undone. The pool must
// open, its jobs finish, the checker pass, and every fsynced write and
// durable snapshot operation be there.
func TestPowerLoss(t *testing.T) {
	requireFUSE(t)
	if testing.Short() {
		t.Skip("power-loss runs take about 30 s")
	}
	states, undone := 0, 0
	for _, seed := range []uint64{1, 2} {
		for _, point := range rowengine.CrashPoints {
			for _, hit := range []int{1, 3} {
				r := crashtest.Run{Dir: t.TempDir(), Seed: seed, Steps: 120, Point: point, Hit: hit}
				backing, mnt := filepath.Join(r.Dir, "backing"), filepath.Join(r.Dir, "mnt")
				for _, d := range []string{backing, mnt} {
					if err := os.MkdirAll(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				f, err := faultfs.Mount(backing, mnt)
				if err != nil {
					t.Fatal(err)
				}
				r.Pool = filepath.Join(mnt, "pool")
				killed, out, err := crashtest.Start(os.Args[0], "TestPowerLossChild", r)
				if uerr := f.Unmount(); uerr != nil {
					t.Fatalf("unmount faultfs: %v", uerr)
				}
				if err != nil {
					t.Fatal(err)
				}
				if !killed {
					continue
				}
				undone += f.Unsynced()
				if err := f.CutPower(); err != nil {
					t.Fatalf("cut power: %v", err)
				}
				states++
				if _, err := crashtest.Recover(r.Dir, filepath.Join(backing, "pool")); err != nil {
					t.Errorf("%s, power cut: %v\nchild output:\n%s", r, err, lastLines(out, 20))
				}
			}
		}
	}
	t.Logf("%d power cuts; %d files had unsynced writes undone", states, undone)
	crashtest.Report("power-loss test: %d power cuts at crash points, %d files rolled back to their last sync", states, undone)
	if states < len(rowengine.CrashPoints) {
		t.Errorf("only %d power-cut states", states)
	}
}

func lastLines(b []byte, n int) string {
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-n):], "\n")
}
