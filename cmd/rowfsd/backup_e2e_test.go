package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

// backupPoints lists the points of a volume, oldest first.
func backupPoints(t *testing.T, sock, volume string) []api.BackupPoint {
	t.Helper()
	var l api.BackupList
	rowctlJSON(t, sock, &l, "backup", "list", volume)
	return l.Points
}

// TestBackupRoundTrip: through the mount, a full point and two
// incrementals (each reading only the chunks that changed), the source
// volume deleted, then every point restored to a new volume and, offline,
// to a file with no daemon, each identical to the volume when its point
// was taken. The chain rules, verify, a corrupted chunk found and
// repaired, and gc, through rowctl.
func TestBackupRoundTrip(t *testing.T) {
	requireE2E(t, "qemu-io", "qemu-img")
	e := newEnv(t)
	e.start()
	store := filepath.Join(t.TempDir(), "backups")
	mustRowctl(t, e.sock, "backup", "target", "add", "nas", "dir://"+store)
	file := createVolume(t, e.sock, "vm1", "64M")
	refs := t.TempDir()
	keep := func(name string) string {
		ref := filepath.Join(refs, name)
		runCmd(t, "cp", "--sparse=always", file, ref)
		return ref
	}
	qemuIO(t, file, "none", "write -P 0x11 0 8M", "write -P 0x22 20M 1M", "write -P 0x33 63M 1M")
	refFull := keep("full")
	mustRowctl(t, e.sock, "backup", "create", "vm1")
	qemuIO(t, file, "none", "write -P 0x44 2M 64k") // one chunk changes
	refInc1 := keep("inc1")
	mustRowctl(t, e.sock, "backup", "create", "vm1")
	qemuIO(t, file, "none", "write -P 0x55 40M 4k", "write -z 20M 1M")
	refInc2 := keep("inc2")
	mustRowctl(t, e.sock, "backup", "create", "vm1")
	points := backupPoints(t, e.sock, "vm1")
	if len(points) != 3 || points[0].Kind != "full" || points[1].Kind != "incremental" || points[2].Parent != points[1].ID {
		t.Fatalf("points: %+v", points)
	}
	if points[1].ReadBytes != 4<<20 {
		t.Errorf("the first incremental read %d bytes, want the one 4 MiB chunk that changed", points[1].ReadBytes)
	}
	if points[0].ReadBytes != 16<<20 {
		t.Errorf("the full point read %d bytes, want the 4 chunks that hold data", points[0].ReadBytes)
	}
	// Only the newest base snapshot stays in the pool.
	var l api.SnapshotList
	rowctlJSON(t, e.sock, &l, "snapshot", "list", "vm1")
	bases := 0
	for _, s := range l.Snapshots {
		if strings.HasPrefix(s.Name, "auto-backup-nas-") && !s.Hidden {
			bases++
		}
	}
	if bases != 1 {
		t.Errorf("%d backup base snapshots kept, want 1: %+v", bases, l.Snapshots)
	}

	// A corrupt chunk: found, with the points and ranges it breaks; the
	// next backup uploads it again.
	chunks, _ := filepath.Glob(filepath.Join(store, "chunks", "*", "*"))
	var victim string
	for _, c := range chunks {
		if b, _ := os.ReadFile(c); len(b) < 4096 { // a highly compressible chunk: the 0x11 pattern
			victim = c
			break
		}
	}
	b, _ := os.ReadFile(victim)
	b[len(b)-3] ^= 0xff
	os.WriteFile(victim, b, 0o644)
	r := rowctl(t, e.sock, "backup", "verify", "--all")
	if r.code != 2 || !strings.Contains(r.stdout, "breaks point "+points[0].ID) {
		t.Fatalf("verify of a corrupt chunk: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	mustRowctl(t, e.sock, "backup", "create", "vm1")
	if r := rowctl(t, e.sock, "backup", "verify", "--all"); r.code != 0 {
		t.Fatalf("verify after the next backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	points = backupPoints(t, e.sock, "vm1")

	// The source goes; every point restores.
	if r := rowctl(t, e.sock, "backup", "restore", points[0].ID, "--volume", "vm2"); r.code == 0 {
		t.Fatal("restore onto a volume that does not exist succeeded")
	}
	mustRowctl(t, e.sock, "volume", "delete", "vm1", "--force")
	for i, ref := range []string{refFull, refInc1, refInc2, refInc2} {
		name := "r" + string(rune('0'+i))
		mustRowctl(t, e.sock, "backup", "restore", points[i].ID, "--to", name)
		runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", ref, filepath.Join(e.mnt, name))
	}
	out := filepath.Join(t.TempDir(), "offline.raw")
	cmd := exec.Command(filepath.Join(binDir, "rowfsd"), "backup", "restore", "--target", "dir://"+store, points[2].ID, "--output", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("offline restore: %v\n%s", err, b)
	}
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", refInc2, out)

	// Onto an existing volume: not another volume's point, and not while
	// it is open; then in place.
	if r := rowctl(t, e.sock, "backup", "restore", points[0].ID, "--volume", "r0", "--yes"); r.code != 2 || !strings.Contains(r.stderr, "is a backup of vm1") {
		t.Errorf("restore of vm1's point onto r0: exit %d %s", r.code, r.stderr)
	}
	mustRowctl(t, e.sock, "backup", "create", "r0")
	r0 := backupPoints(t, e.sock, "r0")[0]
	qemuIO(t, filepath.Join(e.mnt, "r0"), "none", "write -P 0x66 0 1M")
	h, err := os.OpenFile(filepath.Join(e.mnt, "r0"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := rowctl(t, e.sock, "backup", "restore", r0.ID, "--volume", "r0", "--yes"); r.code != 1 || !strings.Contains(r.stderr, "is open") {
		t.Errorf("restore onto an open volume: exit %d %s", r.code, r.stderr)
	}
	h.Close()
	mustRowctl(t, e.sock, "backup", "restore", r0.ID, "--volume", "r0", "--yes")
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", refFull, filepath.Join(e.mnt, "r0"))

	// Chain rules.
	var plan api.BackupDeleteResult
	rowctlJSON(t, e.sock, &plan, "backup", "delete", points[1].ID, "--dry-run")
	if !slices.Equal(plan.Points, []string{points[1].ID, points[2].ID, points[3].ID}) {
		t.Fatalf("delete --dry-run of the first incremental: %+v", plan)
	}
	mustRowctl(t, e.sock, "backup", "delete", points[1].ID, "--only")
	if got := backupPoints(t, e.sock, "vm1"); len(got) != 3 {
		t.Fatalf("after delete --only: %d points", len(got))
	}
	var gc api.BackupGCResult
	rowctlJSON(t, e.sock, &gc, "backup", "gc")
	mustRowctl(t, e.sock, "backup", "restore", points[2].ID, "--to", "after-gc")
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", refInc2, filepath.Join(e.mnt, "after-gc"))
	var gone api.BackupDeleteResult
	rowctlJSON(t, e.sock, &gone, "backup", "delete", points[0].ID)
	if len(gone.Points) != 3 {
		t.Errorf("deleting the full point deleted %v, want it and the two left on its chain", gone.Points)
	}
	if got := backupPoints(t, e.sock, "vm1"); len(got) != 0 {
		t.Fatalf("deleting the full point left %d points of its chain", len(got))
	}
	if r := rowctl(t, e.sock, "backup", "create", "r0", "--target", "nope"); r.code != 3 {
		t.Errorf("backup to an unknown target: exit %d %s", r.code, r.stderr)
	}
}

// TestBackupToRGW: backups to s3:// on the test cluster's real RGW, with
// an encryption key: a full point and an incremental, restored through
// the daemon and offline with rowfsd backup restore (credentials from the
// environment); the chunks hold no plaintext; without the key the offline
// restore fails plainly; an endpoint nobody listens on fails within the
// configured deadline.
func TestBackupToRGW(t *testing.T) {
	requireE2E(t, "qemu-io", "qemu-img")
	endpoint := os.Getenv("ROWFS_RGW_ENDPOINT")
	if endpoint == "" {
		if os.Getenv("ROWFS_REQUIRE_CEPH") != "" {
			t.Fatal("ROWFS_RGW_ENDPOINT is not set but ROWFS_REQUIRE_CEPH is: the test RGW did not start")
		}
		t.Skip("SKIPPED: no RGW (run make test, which starts one)")
	}
	creds := []string{"AWS_ACCESS_KEY_ID=" + os.Getenv("ROWFS_RGW_ACCESS_KEY"), "AWS_SECRET_ACCESS_KEY=" + os.Getenv("ROWFS_RGW_SECRET_KEY")}
	e := newEnv(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "rowfsd.toml")
	if err := os.WriteFile(config, []byte("backup_timeout = \"3s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.startWith(creds, "--config", config)
	key := filepath.Join(dir, "backup.key")
	os.WriteFile(key, []byte(strings.Repeat("5a", 32)), 0o600)
	bucket := fmt.Sprintf("rowfs-e2e-%d", time.Now().UnixNano()%1e9)
	url := "s3://" + bucket + "/host1"
	mustRowctl(t, e.sock, "backup", "target", "add", "rgw", url, "--endpoint", endpoint, "--insecure", "--key-file", key)
	mustRowctl(t, e.sock, "backup", "target", "add", "dead", "s3://nobody/x", "--endpoint", "127.0.0.1:1", "--insecure")
	var targets api.BackupTargetList
	rowctlJSON(t, e.sock, &targets, "backup", "target", "list")
	if out, _ := json.Marshal(targets); strings.Contains(string(out), os.Getenv("ROWFS_RGW_SECRET_KEY")) {
		t.Fatal("the target list shows the secret key")
	}
	file := createVolume(t, e.sock, "vm1", "32M")
	qemuIO(t, file, "none", "write -P 0x61 0 4M", "write -P 0x62 12M 1M")
	ref1 := filepath.Join(dir, "ref1")
	runCmd(t, "cp", "--sparse=always", file, ref1)
	mustRowctl(t, e.sock, "backup", "create", "vm1", "--target", "rgw")
	qemuIO(t, file, "none", "write -P 0x63 20M 64k")
	ref2 := filepath.Join(dir, "ref2")
	runCmd(t, "cp", "--sparse=always", file, ref2)
	mustRowctl(t, e.sock, "backup", "create", "vm1", "--target", "rgw")
	var l api.BackupList
	rowctlJSON(t, e.sock, &l, "backup", "list", "vm1", "--target", "rgw")
	if len(l.Points) != 2 || l.Points[1].Kind != "incremental" || !l.Points[1].Encrypted {
		t.Fatalf("points on RGW: %+v", l.Points)
	}
	mustRowctl(t, e.sock, "backup", "restore", l.Points[0].ID, "--target", "rgw", "--to", "back1")
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", ref1, filepath.Join(e.mnt, "back1"))

	offline := func(extra ...string) (string, error) {
		out := filepath.Join(t.TempDir(), "vm1.raw")
		args := append([]string{"backup", "restore", "--target", url, "--endpoint", endpoint, "--insecure", l.Points[1].ID, "--output", out}, extra...)
		cmd := exec.Command(filepath.Join(binDir, "rowfsd"), args...)
		cmd.Env = append(os.Environ(), creds...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			return string(b), err
		}
		return out, nil
	}
	if msg, err := offline(); err == nil || !strings.Contains(msg, "encrypted") {
		t.Errorf("offline restore without the key: %v %s", err, msg)
	}
	restored, err := offline("--key-file", key)
	if err != nil {
		t.Fatalf("offline restore from RGW: %v\n%s", err, restored)
	}
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", ref2, restored)

	start := time.Now()
	r := rowctl(t, e.sock, "backup", "create", "vm1", "--target", "dead")
	if r.code == 0 || !strings.Contains(r.stderr, "127.0.0.1:1") || time.Since(start) > 15*time.Second {
		t.Errorf("backup to an endpoint nobody listens on: exit %d after %s: %s", r.code, time.Since(start), r.stderr)
	}
}

// killDuring starts a job with rowctl args (which do not wait), kills the
// daemon with SIGKILL once the job has made some progress but not all,
// and returns the job's id.
func killDuring(t *testing.T, e env, d *rowfsd, args ...string) uint64 {
	t.Helper()
	var res api.BackupResult
	rowctlJSON(t, e.sock, &res, append(args, "--no-wait")...)
	id := res.Jobs[0].ID
	deadline := time.Now().Add(60 * time.Second)
	for {
		var j api.Job
		rowctlJSON(t, e.sock, &j, "job", "info", fmt.Sprint(id))
		if j.State != "running" {
			t.Fatalf("job %d ended (%s) before it could be interrupted: make the volume larger", id, j.State)
		}
		if j.Done > 0 && j.Done < j.Total {
			d.kill9()
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d made no progress in 60 s", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBackupAndRestoreSurviveKill9: the daemon killed in the middle of a
// backup and of a restore; after a restart the backup runs again to a
// complete point (the chunks it had sent are not sent twice), the
// restore goes on from its last checkpoint, and what was restored is the
// volume as it was backed up; verify is clean.
func TestBackupAndRestoreSurviveKill9(t *testing.T) {
	requireE2E(t, "qemu-img")
	e := newEnv(t)
	d := e.start()
	store := filepath.Join(t.TempDir(), "backups")
	mustRowctl(t, e.sock, "backup", "target", "add", "nas", "dir://"+store)
	file := createVolume(t, e.sock, "vm1", "512M")
	runCmd(t, "dd", "if=/dev/urandom", "of="+file, "bs=1M", "count=512", "oflag=direct", "conv=notrunc", "status=none")
	ref := filepath.Join(t.TempDir(), "vm1.raw")
	runCmd(t, "cp", "--sparse=always", file, ref)

	job := killDuring(t, e, d, "backup", "create", "vm1")
	if points, _ := os.ReadDir(filepath.Join(store, "points")); len(points) > 0 {
		t.Fatalf("an interrupted backup left point files: %v", points)
	}
	d = e.start()
	if !d.logs("resuming an interrupted job") {
		t.Errorf("the restarted daemon did not say it resumes the backup:\n%s", d.log)
	}
	var j api.Job
	rowctlJSON(t, e.sock, &j, "job", "wait", fmt.Sprint(job))
	if j.State != "done" {
		t.Fatalf("the resumed backup job: %+v", j)
	}
	points := backupPoints(t, e.sock, "vm1")
	if len(points) != 1 || points[0].ReusedBytes == 0 {
		t.Fatalf("after the resumed backup: %+v (want one point that found the chunks sent before the kill)", points)
	}

	job = killDuring(t, e, d, "backup", "restore", points[0].ID, "--to", "copy")
	if d = e.start(); !d.logs("resuming an interrupted job") {
		t.Errorf("the restarted daemon did not say it resumes the restore:\n%s", d.log)
	}
	rowctlJSON(t, e.sock, &j, "job", "wait", fmt.Sprint(job))
	if j.State != "done" {
		t.Fatalf("the resumed restore job: %+v", j)
	}
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", ref, filepath.Join(e.mnt, "copy"))
	if r := rowctl(t, e.sock, "backup", "verify", "--all"); r.code != 0 {
		t.Fatalf("verify after the kills: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	if r := rowctl(t, e.sock, "fsck"); r.code != 0 {
		t.Fatalf("fsck after the kills: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
}

// TestIncrementalBackupCost: after 1% of a 4 GiB volume changes, the
// incremental reads and uploads at most 2% of it (the pool's diff names
// the changed blocks; only their chunks are read). A gc run while a
// backup runs removes nothing that backup needs.
func TestIncrementalBackupCost(t *testing.T) {
	requireE2E(t, "qemu-img")
	e := newEnv(t)
	e.start()
	mustRowctl(t, e.sock, "backup", "target", "add", "nas", "dir://"+filepath.Join(t.TempDir(), "backups"))
	const size = 4 << 30
	file := createVolume(t, e.sock, "big", "4G")
	runCmd(t, "dd", "if=/dev/urandom", "of="+file, "bs=1M", "count=256", "oflag=direct", "conv=notrunc", "status=none")
	mustRowctl(t, e.sock, "backup", "create", "big")
	for _, at := range []int{100, 1024, 2048, 3072} { // 4 × 10.25 MiB = 1% of 4 GiB
		runCmd(t, "dd", "if=/dev/urandom", "of="+file, "bs=256K", "count=41", fmt.Sprintf("seek=%d", at*4), "oflag=direct", "conv=notrunc", "status=none")
	}
	var res api.BackupResult
	rowctlJSON(t, e.sock, &res, "backup", "create", "big", "--no-wait")
	var gc api.BackupGCResult
	rowctlJSON(t, e.sock, &gc, "backup", "gc") // waits for the running backup, then collects
	var j api.Job
	rowctlJSON(t, e.sock, &j, "job", "wait", fmt.Sprint(res.Jobs[0].ID))
	points := backupPoints(t, e.sock, "big")
	if len(points) != 2 {
		t.Fatalf("points: %+v", points)
	}
	inc := points[1]
	t.Logf("incremental after 1%% changed: read %s, uploaded %s of a 4 GiB volume", api.FormatSize(inc.ReadBytes), api.FormatSize(inc.UploadedBytes))
	if limit := uint64(size / 50); inc.ReadBytes > limit || inc.UploadedBytes > limit {
		t.Fatalf("the incremental read %d and uploaded %d bytes, over 2%% (%d) of the volume", inc.ReadBytes, inc.UploadedBytes, limit)
	}
	if r := rowctl(t, e.sock, "backup", "verify", "--all"); r.code != 0 {
		t.Fatalf("verify after gc ran beside a backup: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
}

// TestBackupTargetFull: a dir:// target on a small tmpfs fills up: the
// backup fails saying so, no point appears, nothing half-written is
// visible, and the volume's earlier point still restores.
func TestBackupTargetFull(t *testing.T) {
	requireE2E(t, "qemu-img")
	e := newEnv(t)
	e.start()
	small := t.TempDir()
	runCmd(t, "mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", small)
	t.Cleanup(func() { exec.Command("umount", "-l", small).Run() })
	mustRowctl(t, e.sock, "backup", "target", "add", "small", "dir://"+small)
	file := createVolume(t, e.sock, "vm1", "64M")
	runCmd(t, "dd", "if=/dev/urandom", "of="+file, "bs=1M", "count=8", "oflag=direct", "conv=notrunc", "status=none")
	mustRowctl(t, e.sock, "backup", "create", "vm1")
	runCmd(t, "dd", "if=/dev/urandom", "of="+file, "bs=1M", "count=40", "seek=16", "oflag=direct", "conv=notrunc", "status=none")
	r := rowctl(t, e.sock, "backup", "create", "vm1")
	if r.code == 0 || !strings.Contains(r.stderr, "full") {
		t.Fatalf("a backup onto a full target: exit %d %s", r.code, r.stderr)
	}
	if points := backupPoints(t, e.sock, "vm1"); len(points) != 1 {
		t.Fatalf("after the failed backup: %d points", len(points))
	}
	tmp, _ := filepath.Glob(filepath.Join(small, "chunks", "*", ".tmp-*"))
	if len(tmp) > 0 {
		t.Errorf("half-written files left: %v", tmp)
	}
	mustRowctl(t, e.sock, "backup", "restore", backupPoints(t, e.sock, "vm1")[0].ID, "--to", "back")
	if r := rowctl(t, e.sock, "backup", "verify", "--all"); r.code != 0 {
		t.Fatalf("verify: exit %d %s", r.code, r.stdout)
	}
}

// TestBackupPolicy: a backup policy run (policy run) makes a point of
// each volume on its target, and prunes its own points beyond --keep,
// never another's or the newest. The points show in
// user.rowfs.backups.json and in the metrics.
func TestBackupPolicy(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	addr := freeLoopbackAddr(t)
	e.start("--metrics", addr)
	mustRowctl(t, e.sock, "backup", "target", "add", "nas", "dir://"+filepath.Join(t.TempDir(), "backups"))
	for _, v := range []string{"a", "b"} {
		qemuIO(t, createVolume(t, e.sock, v, "16M"), "none", "write -P 0x31 0 1M")
	}
	mustRowctl(t, e.sock, "backup", "create", "a") // a manual point: not the policy's
	mustRowctl(t, e.sock, "policy", "create", "nightly", "--task", "backup", "--every", "1d", "--keep", "2",
		"--start", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "a", "b")
	var p api.Policy
	rowctlJSON(t, e.sock, &p, "policy", "info", "nightly")
	if p.Task != "backup" || p.Target != "nas" {
		t.Fatalf("policy info: %+v", p)
	}
	for i := range 3 {
		qemuIO(t, filepath.Join(e.mnt, "a"), "none", fmt.Sprintf("write -P 0x%02x 2M 64k", 0x40+i))
		mustRowctl(t, e.sock, "policy", "run", "nightly")
	}
	if got := len(backupPoints(t, e.sock, "a")); got != 3 {
		t.Errorf("volume a has %d points, want its manual one and the policy's 2 (--keep 2)", got)
	}
	if got := len(backupPoints(t, e.sock, "b")); got != 2 {
		t.Errorf("volume b has %d points, want the policy's 2", got)
	}
	rowctlJSON(t, e.sock, &p, "policy", "info", "nightly")
	if p.LastResult != "ok" || p.Runs != 3 {
		t.Errorf("after three runs: %+v", p)
	}
	if r := rowctl(t, e.sock, "policy", "create", "bad", "--task", "backup", "--target", "nope", "--every", "1d", "a"); r.code == 0 {
		t.Error("a backup policy to an unknown target was accepted")
	}
	// The xattr lists them (from the daemon's listing, refreshed after each change).
	waitFor(t, 10*time.Second, "3 points in user.rowfs.backups.json", func() bool {
		var doc struct {
			Points []api.BackupPoint `json:"points"`
		}
		return json.Unmarshal([]byte(getxattr(t, filepath.Join(e.mnt, "a"), "user.rowfs.backups.json")), &doc) == nil && len(doc.Points) == 3
	})
	_, body := httpGet(t, "http://"+addr+"/metrics")
	for _, series := range []string{`rowfs_backup_uploaded_bytes_total{target="nas"}`, `rowfs_backup_last_success_timestamp_seconds{target="nas",volume="b"}`} {
		if metricValue(t, body, series) <= 0 {
			t.Errorf("%s missing or zero", series)
		}
	}
}

// TestGroupBackup: a group backup backs every member up from one group
// snapshot; restore --group puts every member back, refused while one is
// open.
func TestGroupBackup(t *testing.T) {
	requireE2E(t, "qemu-io", "qemu-img")
	e := newEnv(t)
	e.start()
	mustRowctl(t, e.sock, "backup", "target", "add", "nas", "dir://"+filepath.Join(t.TempDir(), "backups"))
	refs := t.TempDir()
	for i, v := range []string{"d1", "d2"} {
		qemuIO(t, createVolume(t, e.sock, v, "16M"), "none", fmt.Sprintf("write -P 0x%02x 0 2M", 0x21+i))
		runCmd(t, "cp", "--sparse=always", filepath.Join(e.mnt, v), filepath.Join(refs, v))
	}
	mustRowctl(t, e.sock, "group", "create", "vm", "d1", "d2")
	mustRowctl(t, e.sock, "backup", "create", "--group", "vm")
	var l api.BackupList
	rowctlJSON(t, e.sock, &l, "backup", "list")
	if len(l.Points) != 2 || l.Points[0].Group != "vm" || l.Points[0].Snapshot != l.Points[1].Snapshot {
		t.Fatalf("group backup points: %+v", l.Points)
	}
	for _, v := range []string{"d1", "d2"} {
		qemuIO(t, filepath.Join(e.mnt, v), "none", "write -P 0xee 0 1M")
	}
	h, err := os.OpenFile(filepath.Join(e.mnt, "d2"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := rowctl(t, e.sock, "backup", "restore", l.Points[0].ID, "--group", "--yes"); r.code == 0 || !strings.Contains(r.stderr, "d2 is open") {
		t.Errorf("group restore with a member open: exit %d %s", r.code, r.stderr)
	}
	h.Close()
	mustRowctl(t, e.sock, "backup", "restore", l.Points[0].ID, "--group", "--yes")
	for _, v := range []string{"d1", "d2"} {
		runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", filepath.Join(refs, v), filepath.Join(e.mnt, v))
	}
}
