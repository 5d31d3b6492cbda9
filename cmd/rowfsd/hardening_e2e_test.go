package main

// End-to-end tests of the defects real clients found (issue 13): mount
// points never taken over, O_SYNC/O_DSYNC writes durable, free space told
// once, and the smaller ones.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// refusedStart runs rowfsd on e and returns its output; it must exit
// non-zero without becoming ready.
func refusedStart(t *testing.T, e env) string {
	t.Helper()
	args := []string{"--pool", e.pool, "--mount", e.mnt, "--socket", e.sock}
	out, err := exec.Command(filepath.Join(binDir, "rowfsd"), args...).CombinedOutput()
	if err == nil {
		t.Fatalf("rowfsd on %s started; it must refuse:\n%s", e.mnt, out)
	}
	return string(out)
}

// TestMountPointNotTakenOver: a second rowfsd on the mount point of a live
// one, or on a tmpfs, exits non-zero naming what is mounted there, and the
// first daemon's volumes still read back through the mount. (A mount left
// by kill -9 is still cleared: TestStaleMountCleared.)
func TestMountPointNotTakenOver(t *testing.T) {
	requireE2E(t)
	a := newEnv(t)
	a.start()
	vol := createVolume(t, a.sock, "vmA", "16M")
	data := bytes.Repeat([]byte("vmA!"), 4096)
	if err := os.WriteFile(vol, data, 0); err != nil {
		t.Fatal(err)
	}

	b := newEnv(t)
	b.mnt = a.mnt
	out := refusedStart(t, b)
	if !strings.Contains(out, "live rowfsd serving another pool") || !strings.Contains(out, a.pool) {
		t.Errorf("second rowfsd on a live mount: want a refusal naming pool %s, got:\n%s", a.pool, out)
	}
	if _, err := os.Stat(b.pool); !os.IsNotExist(err) {
		t.Errorf("the refused daemon created its pool %s (%v)", b.pool, err)
	}
	got, err := os.ReadFile(vol)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("vmA no longer reads back through %s after the refused start (%v)", a.mnt, err)
	}

	c := newEnv(t)
	if err := os.MkdirAll(c.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	runCmd(t, "mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", c.mnt)
	t.Cleanup(func() { exec.Command("umount", c.mnt).Run() })
	if err := os.WriteFile(filepath.Join(c.mnt, "mine"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = refusedStart(t, c)
	if !strings.Contains(out, "tmpfs is mounted there") {
		t.Errorf("rowfsd on a tmpfs: want a refusal naming tmpfs, got:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(c.mnt, "mine")); err != nil {
		t.Errorf("the tmpfs was detached: %v", err)
	}
}
