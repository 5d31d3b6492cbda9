package main

// End-to-end tests of the defects real clients found (issue 13): mount
// points never taken over, O_SYNC/O_DSYNC writes durable, free space told
// once, and the smaller ones.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/ctl/api"
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
	if err != nil || !bytes.Equal(got[:len(data)], data) {
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
	if !strings.Contains(out, "tmpfs (source tmpfs) is mounted there") {
		t.Errorf("rowfsd on a tmpfs: want a refusal naming tmpfs, got:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(c.mnt, "mine")); err != nil {
		t.Errorf("the tmpfs was detached: %v", err)
	}
}

// TestSyncWritesSurviveKill9: every write acknowledged on an O_DSYNC or
// O_SYNC descriptor, or by a pwritev2 with RWF_DSYNC, reads back after
// kill -9 of the daemon, though no fsync followed (the kernel sends none
// for them: the daemon must see the flag). Each write lands in a new
// block, so it is a redirect whose map entry must be committed.
func TestSyncWritesSurviveKill9(t *testing.T) {
	requireE2E(t)
	const writes, bs = 10, 64 << 10
	block := func(kind, i int) []byte { return bytes.Repeat([]byte{byte(kind*16 + i + 1)}, 4096) }
	kinds := []struct {
		name  string
		flags int
		write func(f *os.File, data []byte, off int64) error
	}{
		{"O_DSYNC", unix.O_DSYNC, pwrite},
		{"O_SYNC", unix.O_SYNC, pwrite},
		{"RWF_DSYNC", 0, func(f *os.File, data []byte, off int64) error {
			_, err := unix.Pwritev2(int(f.Fd()), [][]byte{data}, off, unix.RWF_DSYNC)
			return err
		}},
	}
	e := newEnv(t)
	d := e.start()
	vol := createVolume(t, e.sock, "vm1", "64M")
	for k, kind := range kinds {
		f, err := os.OpenFile(vol, os.O_RDWR|kind.flags, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range writes {
			if err := kind.write(f, block(k, i), int64((k*writes+i)*bs)); err != nil {
				t.Fatalf("%s write %d: %v", kind.name, i, err)
			}
		}
		// Left open: a close must not be what makes them durable.
		defer f.Close()
	}
	d.kill9()
	e.start()
	f, err := os.Open(vol)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for k, kind := range kinds {
		survived := 0
		for i := range writes {
			got := make([]byte, 4096)
			if _, err := f.ReadAt(got, int64((k*writes+i)*bs)); err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got, block(k, i)) {
				survived++
			}
		}
		if survived != writes {
			t.Errorf("%s: %d of %d acknowledged writes survived kill -9", kind.name, survived, writes)
		}
	}
}

func pwrite(f *os.File, data []byte, off int64) error {
	_, err := f.WriteAt(data, off)
	return err
}

// TestFioSyncWritesSurviveKill9: fio --sync=1 writing verifiable blocks is
// killed mid-run by kill -9 of the daemon; after a restart, fio's own
// verify of every write it had acknowledged finds nothing lost.
func TestFioSyncWritesSurviveKill9(t *testing.T) {
	requireE2E(t, "fio")
	e := newEnv(t)
	d := e.start()
	vol := createVolume(t, e.sock, "vm1", "64M")
	work := t.TempDir() // fio keeps its verify state here
	job := []string{"--name=sync", "--filename=" + vol, "--rw=randwrite", "--bs=4k", "--size=32M", "--ioengine=psync",
		"--sync=1", "--verify=crc32c"}
	// Time-based, so it is still writing when the daemon dies.
	writer := exec.Command("fio", append(job, "--time_based", "--runtime=60", "--do_verify=0", "--verify_state_save=1")...)
	writer.Dir = work
	var out bytes.Buffer
	writer.Stdout, writer.Stderr = &out, &out
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once fio has written for a while (its progress is the
	// volume's allocated blocks).
	deadline := time.Now().Add(30 * time.Second)
	for {
		var v struct {
			UsedBytes uint64 `json:"used_bytes"`
		}
		rowctlJSON(t, e.sock, &v, "volume", "info", "vm1")
		if v.UsedBytes >= 24<<20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling fio's progress, not waiting for a mount
	}
	d.kill9()
	writer.Wait() // fails: its volume went away under it
	if _, err := os.Stat(filepath.Join(work, "local-sync-0-verify.state")); err != nil {
		t.Fatalf("fio saved no verify state (%v):\n%s", err, out.String())
	}
	e.start()
	verify := exec.Command("fio", append(job, "--verify_only", "--verify_state_load=1")...)
	verify.Dir = work
	report, err := verify.CombinedOutput()
	if err != nil || bytes.Contains(report, []byte("verify:")) || !bytes.Contains(report, []byte("err= 0")) {
		t.Fatalf("fio verify after kill -9 found acknowledged writes lost (%v):\n%s", err, report)
	}
}

// TestFreeSpaceAgrees: on a small tmpfs-backed pool, pool info's free
// bytes, statfs of the mount and the point where writes start to fail
// with ENOSPC agree within one block (pool info counted the host's
// root-only blocks and ignored the metadata reserve).
func TestFreeSpaceAgrees(t *testing.T) {
	requireE2E(t)
	host := t.TempDir()
	runCmd(t, "mount", "-t", "tmpfs", "-o", "size=200M", "tmpfs", host)
	t.Cleanup(func() { exec.Command("umount", "-l", host).Run() })
	e := newEnv(t)
	e.pool = filepath.Join(host, "pool")
	const bs = 1 << 20
	e.start("--block-size", "1M", "--metadata-reserve", "32M")
	vol := createVolume(t, e.sock, "fill", "1G")

	free := poolInfo(t, e.sock).FreeBytes
	var st unix.Statfs_t
	if err := unix.Statfs(e.mnt, &st); err != nil {
		t.Fatal(err)
	}
	statfsFree := st.Bavail * uint64(st.Bsize)
	var hostSt unix.Statfs_t
	unix.Statfs(host, &hostSt)
	t.Logf("pool info free %d, statfs of the mount %d, host available %d", free, statfsFree, hostSt.Bavail*uint64(hostSt.Bsize))
	if diff(free, statfsFree) > bs {
		t.Errorf("pool info says %d bytes free, statfs of the mount %d", free, statfsFree)
	}
	if hostFree := hostSt.Bavail * uint64(hostSt.Bsize); free > hostFree-32<<20 {
		t.Errorf("pool info says %d bytes free; the host has %d and 32 MiB of it are reserved", free, hostFree)
	}

	f, err := os.OpenFile(vol, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xab}, bs)
	var written uint64
	for {
		_, err := f.WriteAt(chunk, int64(written))
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatalf("write at %d: %v, want ENOSPC at the end", written, err)
		}
		written += bs
		if written > 1<<30 {
			t.Fatal("no ENOSPC after 1 GiB on a 200 MiB filesystem")
		}
	}
	t.Logf("ENOSPC after %d bytes", written)
	if diff(written, free) > bs {
		t.Errorf("writes failed with ENOSPC after %d bytes; pool info had said %d free", written, free)
	}
	if left := poolInfo(t, e.sock).FreeBytes; left > bs {
		t.Errorf("pool info says %d bytes free after ENOSPC", left)
	}
}

func diff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// TestTruncateNeverShrinksByAccident: truncate to a smaller size through
// the file is refused (EPERM, with a log line naming rowctl volume resize
// --shrink) and discards nothing; growing works; a truncate to 0 (O_TRUNC,
// qemu-img create) changes nothing, so qemu-img create -f raw of the
// volume's own size succeeds. --allow-file-shrink lets a shrink through.
func TestTruncateNeverShrinksByAccident(t *testing.T) {
	requireE2E(t, "qemu-img")
	e := newEnv(t)
	d := e.start()
	vol := createVolume(t, e.sock, "vm1", "16M")
	tail := bytes.Repeat([]byte("tail"), 1024)
	f, err := os.OpenFile(vol, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(tail, 15<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Truncate(vol, 8<<20); !errors.Is(err, syscall.EPERM) {
		t.Errorf("truncate to a smaller size: %v, want EPERM", err)
	}
	if !d.logs("rowctl volume resize --shrink") {
		t.Errorf("no log line names rowctl volume resize --shrink:\n%s", d.log)
	}
	if err := os.Truncate(vol, 0); err != nil {
		t.Errorf("truncate to 0: %v, want it to change nothing", err)
	}
	runCmd(t, "qemu-img", "create", "-f", "raw", vol, "16M")
	got := make([]byte, len(tail))
	if f, err = os.Open(vol); err != nil {
		t.Fatal(err)
	}
	f.ReadAt(got, 15<<20)
	f.Close()
	if fi, _ := os.Stat(vol); fi.Size() != 16<<20 || !bytes.Equal(got, tail) {
		t.Fatalf("after refused truncates and qemu-img create: size %d, tail kept %v", fi.Size(), bytes.Equal(got, tail))
	}
	if err := os.Truncate(vol, 32<<20); err != nil {
		t.Errorf("grow through the file: %v", err)
	}
	d.stop()
	e.start("--allow-file-shrink")
	if err := os.Truncate(vol, 8<<20); err != nil {
		t.Errorf("shrink with --allow-file-shrink: %v", err)
	}
	if fi, _ := os.Stat(vol); fi.Size() != 8<<20 {
		t.Errorf("size %d after an allowed shrink to 8 MiB", fi.Size())
	}
}

// TestOfflineFsckOfOpenPool: rowctl fsck --pool on a pool a daemon has
// open names the daemon and points at the online check.
func TestOfflineFsckOfOpenPool(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	e.start()
	r := rowctl(t, e.sock, "fsck", "--pool", e.pool)
	if r.code != 1 || !strings.Contains(r.stderr, "(rowfsd)") || !strings.Contains(r.stderr, "check it online with `rowctl fsck`") {
		t.Errorf("offline fsck of an open pool: exit %d, %q", r.code, r.stderr)
	}
}

// TestShutdownNamesOpenVolumes: a SIGTERM while a process holds a volume
// open logs the volume and the process, and the daemon exits once the
// file is closed.
func TestShutdownNamesOpenVolumes(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	d := e.start()
	vol := createVolume(t, e.sock, "vm1", "1M")
	holder := exec.Command("sh", "-c", "exec 3<>"+vol+"; read line")
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	waitOpen := time.Now().Add(30 * time.Second)
	for {
		var v api.Volume
		rowctlJSON(t, e.sock, &v, "volume", "info", "vm1")
		if v.OpenHandles > 0 {
			break
		}
		if time.Now().After(waitOpen) {
			t.Fatal("the holder never opened vm1")
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if !d.logs("volume still open at shutdown") || !d.logs("waiting for open volumes") {
		t.Fatalf("shutdown does not say what it waits for:\n%s", d.log)
	}
	if want := fmt.Sprintf("pids=\"%d (sh)\"", holder.Process.Pid); !strings.Contains(d.log.String(), want) {
		t.Errorf("log does not name the holder (%s):\n%s", want, d.log)
	}
	stdin.Close() // the holder exits, closing vm1
	holder.Wait()
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("rowfsd did not exit after the volume was closed:\n%s", d.log)
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d:\n%s", code, d.log)
	}
}

// TestDSyncOverwritesNeedNoCommit: O_DSYNC overwrites of blocks whose map
// entries are durable are written through by the daemon, as on a raw
// file, without a metadata commit each (rowfs_commits_total); one into a
// block whose redirect is not yet committed commits it, so it survives
// kill -9.
func TestDSyncOverwritesNeedNoCommit(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	addr := freeLoopbackAddr(t)
	d := e.start("--metrics", addr)
	vol := createVolume(t, e.sock, "vm1", "16M")
	commits := func() float64 {
		code, body := httpGet(t, "http://"+addr+"/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d %s", code, body)
		}
		return metricValue(t, body, `rowfs_commits_total{result="ok"}`)
	}
	plain, err := os.OpenFile(vol, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	if err := plain.Sync(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(vol, os.O_RDWR|unix.O_DSYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const overwrites = 50
	before := commits()
	for i := range overwrites {
		if _, err := f.WriteAt(bytes.Repeat([]byte{byte(i)}, 4096), int64(i)*16384); err != nil {
			t.Fatal(err)
		}
	}
	// The background committer may run meanwhile; a commit per write
	// would be 50.
	if n := commits() - before; n > 5 {
		t.Errorf("%d O_DSYNC overwrites in place took %.0f commits", overwrites, n)
	}
	// A redirect left uncommitted (no fsync), then an O_DSYNC overwrite
	// into its block.
	if _, err := plain.WriteAt(bytes.Repeat([]byte{2}, 64<<10), 8<<20); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{3}, 4096)
	if _, err := f.WriteAt(want, 8<<20+4096); err != nil {
		t.Fatal(err)
	}
	d.kill9()
	e.start()
	r, err := os.Open(vol)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make([]byte, 4096)
	if _, err := r.ReadAt(got, 8<<20+4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("an acknowledged O_DSYNC write into a block redirected just before reads %d after kill -9", got[0])
	}
	for i := range overwrites {
		if _, err := r.ReadAt(got, int64(i)*16384); err != nil {
			t.Fatal(err)
		}
		if got[0] != byte(i) || got[4095] != byte(i) {
			t.Fatalf("O_DSYNC overwrite %d reads %d after kill -9", i, got[0])
		}
	}
}
