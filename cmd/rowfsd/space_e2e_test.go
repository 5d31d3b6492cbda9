package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rowfs/rowfs/fs/faultfs"
)

// qemuIOResult runs qemu-io without failing the test, for commands that
// are meant to fail.
func qemuIOResult(t *testing.T, file string, cmds ...string) string {
	t.Helper()
	args := []string{"-f", "raw", "-t", "none"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, _ := exec.Command("qemu-io", append(args, file)...).CombinedOutput()
	return string(out)
}

// fillUntilFull overwrites a snapshotted volume, so every block needs a new
// one, and expects qemu-io to report ENOSPC partway; then deleting the
// snapshot frees the space, the same write succeeds, and fsck is clean.
func fillUntilFull(t *testing.T, e env, d *rowfsd, size string) {
	vol := filepath.Join(e.mnt, "vm")
	qemuIO(t, vol, "none", "write -P 0xaa 0 "+size)
	mustRowctl(t, e.sock, "snapshot", "create", "vm@s1")
	out := qemuIOResult(t, vol, "write -P 0xbb 0 "+size)
	t.Logf("overwrite of %s after the snapshot:\n%s", size, out)
	if !strings.Contains(out, "No space left on device") {
		t.Fatalf("want ENOSPC from qemu-io, got:\n%s\ndaemon log:\n%s", out, d.log)
	}
	if strings.Contains(out, "Input/output error") {
		t.Fatalf("a full pool must give ENOSPC, never EIO:\n%s", out)
	}
	// The operator sees it too: one rate-limited line naming the volume.
	if !d.logs("guest request refused: the pool is full") || !strings.Contains(d.log.String(), "volume=vm") {
		t.Fatalf("the refused write is not logged:\n%s", d.log)
	}
	if n := strings.Count(d.log.String(), "guest request refused"); n > 2 {
		t.Errorf("%d log lines for one refused run (rate limit: one per minute per kind)", n)
	}
	// The snapshot still reads as it was, and the head's blocks that
	// were written before the space ran out read back.
	if out := runCmd(t, "qemu-io", "-r", "-f", "raw", "-c", "read -P 0xaa 0 "+size, filepath.Join(e.mnt, ".snapshots", "vm", "s1")); strings.Contains(out, "fail") {
		t.Fatalf("the snapshot changed:\n%s", out)
	}
	mustRowctl(t, e.sock, "snapshot", "delete", "vm@s1")
	qemuIO(t, vol, "none", "write -P 0xcc 0 "+size, "read -P 0xcc 0 "+size)
	if r := rowctl(t, e.sock, "fsck"); r.code != 0 {
		t.Fatalf("fsck after freeing space: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestNoSpaceCapacity: the pool's --capacity runs out.
func TestNoSpaceCapacity(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	d := e.start("--capacity", "4M")
	mustRowctl(t, e.sock, "volume", "create", "vm", "--size", "16M")
	fillUntilFull(t, e, d, "3M")
}

// TestNoSpaceHostFull: the host filesystem under the pool (a 96 MiB tmpfs)
// fills up. Data stops at the metadata reserve, so the snapshot delete
// that frees space still has room for its metadata.
func TestNoSpaceHostFull(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	hostDir := filepath.Dir(e.pool)
	small := filepath.Join(hostDir, "small")
	if err := os.MkdirAll(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=96m"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(small, syscall.MNT_DETACH) })
	e.pool = filepath.Join(small, "pool")
	d := e.start("--metadata-reserve", "32M")
	mustRowctl(t, e.sock, "volume", "create", "vm", "--size", "128M")
	fillUntilFull(t, e, d, "40M")
}

// TestIOErrorOneRequest puts the pool on faultfs, makes one range of the
// pool data file fail with EIO, and checks that exactly the guest requests
// touching it fail with EIO, the error is logged, and the daemon goes on
// serving, reads and writes, once the fault is gone and meanwhile.
func TestIOErrorOneRequest(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	backing, fmnt := filepath.Join(filepath.Dir(e.pool), "backing"), filepath.Join(filepath.Dir(e.pool), "faultmnt")
	for _, dir := range []string{backing, fmnt} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ffs, err := faultfs.Mount(backing, fmnt)
	if err != nil {
		t.Fatal(err)
	}
	e.pool = filepath.Join(fmnt, "pool")
	d := e.start()
	t.Cleanup(func() { d.stop(); ffs.Unmount() })
	mustRowctl(t, e.sock, "volume", "create", "vm", "--size", "8M")
	vol := filepath.Join(e.mnt, "vm")
	qemuIO(t, vol, "none", "write -P 0x11 0 8M")

	// The first 64 KiB block of the data file holds the volume's first block.
	ffs.Fail(faultfs.Fault{Suffix: "/pool/data", Off: 0, Len: 64 << 10, Reads: true, Writes: true})
	out := qemuIOResult(t, vol, "read -P 0x11 0 64k")
	if !strings.Contains(out, "Input/output error") {
		t.Fatalf("read of the failing range: want EIO, got:\n%s", out)
	}
	// Other requests, in the same qemu-io run and after, are served.
	out = qemuIOResult(t, vol, "read -P 0x11 64k 64k", "write -P 0x22 1M 64k", "read -P 0x22 1M 64k")
	if strings.Contains(out, "error") || strings.Contains(out, "failed") {
		t.Fatalf("requests outside the failing range failed:\n%s", out)
	}
	if !d.logs("read from pool data file failed") || !d.logs("errno=EIO") {
		t.Fatalf("the I/O error was not logged:\n%s", d.log)
	}
	ffs.Clear()
	qemuIO(t, vol, "none", "read -P 0x11 0 64k")
	if r := rowctl(t, e.sock, "fsck"); r.code != 0 {
		t.Fatalf("fsck: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
