//go:build ceph && pacific

package main

// End-to-end tests of RBD volumes against the real Ceph cluster make test
// starts (testdata/ceph/cluster.sh, CEPH_CONF): qemu through the mount,
// rowctl's view against the rbd CLI's, kill -9 while writing, bad input.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

func init() { buildTags = []string{"ceph", "pacific"} }

// requireCeph returns the test cluster's ceph.conf. Without a cluster the
// test is skipped, loudly, unless make test said there must be one.
func requireCeph(t *testing.T) string {
	t.Helper()
	requireE2E(t, "qemu-io", "qemu-img", "rbd")
	conf := os.Getenv("CEPH_CONF")
	if conf == "" {
		msg := "RBD END-TO-END TEST NOT RUN: no Ceph cluster (CEPH_CONF unset; make test starts one)"
		fmt.Fprintln(os.Stderr, "!!! "+msg)
		if os.Getenv("ROWFS_REQUIRE_CEPH") != "" || os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return conf
}

// uniqueImage names an image no earlier run used (the cluster may outlive
// a test when run by hand).
func uniqueImage(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9)
}

// rbdCLI runs the rbd command against the test cluster.
func rbdCLI(t *testing.T, conf string, args ...string) string {
	t.Helper()
	return runCmd(t, "rbd", append([]string{"-c", conf}, args...)...)
}

func rbdJSON(t *testing.T, conf string, into any, args ...string) {
	t.Helper()
	args = append([]string{"-c", conf}, append(args, "--format", "json")...)
	out, err := exec.Command("rbd", args...).Output()
	if err != nil {
		t.Fatalf("rbd %v: %v", args, err)
	}
	if err := json.Unmarshal(out, into); err != nil {
		t.Fatalf("rbd %v: %v\n%s", args, err, out)
	}
}

// createRBD creates RBD volume vol on a new image (named from prefix) of
// the given size through rowctl, and returns the image name.
func createRBD(t *testing.T, sock, vol, prefix, size string) string {
	t.Helper()
	image := uniqueImage(prefix)
	mustRowctl(t, sock, "volume", "create", vol, "--backend", "rbd", "--rbd-pool", "rbd", "--rbd-image", image, "--size", size)
	return image
}

// startRBD runs rowfsd against the test cluster.
func startRBD(e env, conf string, extra ...string) *rowfsd {
	return e.start(append([]string{"--ceph-conf", conf, "--ceph-timeout", "20s"}, extra...)...)
}

func TestRBDQemuPatternsAndXattrs(t *testing.T) {
	conf := requireCeph(t)
	e := newEnv(t)
	startRBD(e, conf)
	image := uniqueImage("qemu")
	var v api.Volume
	rowctlJSON(t, e.sock, &v, "volume", "create", "r1", "--backend", "rbd", "--rbd-pool", "rbd", "--rbd-image", image, "--size", "64M")
	if v.Backend != "rbd" || v.RBDPool != "rbd" || v.RBDImage != image || v.Size != 64<<20 {
		t.Fatalf("created %+v", v)
	}
	var info struct {
		Size uint64 `json:"size"`
	}
	rbdJSON(t, conf, &info, "info", "rbd/"+image)
	if info.Size != 64<<20 {
		t.Fatalf("rbd info size %d", info.Size)
	}
	path := filepath.Join(e.mnt, "r1")
	checkQemuPatterns(t, path, 64<<20, "none")
	mustRowctl(t, e.sock, "volume", "create", "r2", "--backend", "rbd", "--rbd-pool", "rbd", "--rbd-image", image+"-wb", "--size", "64M")
	checkQemuPatterns(t, filepath.Join(e.mnt, "r2"), 64<<20, "writeback")
	for key, want := range map[string]string{
		"user.rowfs.kind": "rbd", "user.rowfs.rbd.pool": "rbd", "user.rowfs.rbd.image": image, "user.rowfs.size": "67108864",
	} {
		if got := getxattr(t, path, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if keys := getxattr(t, path, "user.rowfs.keys"); !strings.Contains(keys, "user.rowfs.rbd.image") {
		t.Errorf("user.rowfs.keys lacks the rbd keys: %q", keys)
	}
	var doc api.Volume
	if err := json.Unmarshal([]byte(getxattr(t, path, "user.rowfs.info.json")), &doc); err != nil || doc.RBDImage != image {
		t.Fatalf("info.json %+v, %v", doc, err)
	}
	// Local volumes live on the same mount beside it.
	local := createVolume(t, e.sock, "local", "16M")
	qemuIO(t, local, "none", "write -P 0x5a 0 1M", "read -P 0x5a 0 1M")
}

// rbdSnapNames is what `rbd snap ls` lists.
func rbdSnapNames(t *testing.T, conf, spec string) []string {
	t.Helper()
	var snaps []struct {
		Name string `json:"name"`
	}
	rbdJSON(t, conf, &snaps, "snap", "ls", spec)
	var out []string
	for _, s := range snaps {
		out = append(out, s.Name)
	}
	return out
}

// rowctlSnapNames is what `rowctl snapshot list --json` lists.
func rowctlSnapNames(t *testing.T, sock, vol string) []string {
	t.Helper()
	var out []string
	for _, s := range snapshotList(t, sock, vol).Snapshots {
		if !s.Head {
			out = append(out, s.Name)
		}
	}
	return out
}

func TestRBDViewMatchesCeph(t *testing.T) {
	conf := requireCeph(t)
	e := newEnv(t)
	startRBD(e, conf)
	image := uniqueImage("view")
	spec := "rbd/" + image
	mustRowctl(t, e.sock, "volume", "create", "v", "--backend", "rbd", "--rbd-pool", "rbd", "--rbd-image", image, "--size", "32M")
	path := filepath.Join(e.mnt, "v")
	agree := func(step string) {
		t.Helper()
		ceph, ours := rbdSnapNames(t, conf, spec), rowctlSnapNames(t, e.sock, "v")
		if !slices.Equal(ceph, ours) {
			t.Fatalf("after %s: rbd snap ls %v, rowctl snapshot list %v", step, ceph, ours)
		}
		if got := getxattr(t, path, "user.rowfs.snapshots"); got != fmt.Sprint(len(ceph)) {
			t.Fatalf("after %s: user.rowfs.snapshots %s, rbd lists %d", step, got, len(ceph))
		}
	}
	qemuIO(t, path, "none", "write -P 0x11 0 4M")
	mustRowctl(t, e.sock, "snapshot", "create", "v@s1", "--description", "before upgrade")
	agree("create s1")
	qemuIO(t, path, "none", "write -P 0x22 0 1M")
	mustRowctl(t, e.sock, "snapshot", "create", "v@s2")
	mustRowctl(t, e.sock, "snapshot", "create", "--auto", "v")
	agree("create s2 and an auto snapshot")

	var s1 api.Snapshot
	for _, s := range snapshotList(t, e.sock, "v").Snapshots {
		if s.Name == "s1" {
			s1 = s
		}
	}
	if s1.Description != "before upgrade" || s1.OwnBytes < 4<<20 {
		t.Fatalf("snapshot info %+v: want its description and its 4 MiB", s1)
	}

	mustRowctl(t, e.sock, "snapshot", "rollback", "v@s1", "--yes")
	agree("rollback to s1")
	qemuIO(t, path, "none", "read -P 0x11 0 4M")

	mustRowctl(t, e.sock, "snapshot", "delete", "v@s2")
	agree("delete s2")

	// A clone's image is named after its volume, in the origin's pool.
	clone1 := uniqueImage("c1")
	mustRowctl(t, e.sock, "volume", "clone", "v@s1", clone1)
	var children []struct {
		Pool  string `json:"pool"`
		Image string `json:"image"`
	}
	rbdJSON(t, conf, &children, "children", spec+"@s1")
	if len(children) != 1 || children[0].Image != clone1 {
		t.Fatalf("rbd children %+v, want %s", children, clone1)
	}
	var clone api.Volume
	rowctlJSON(t, e.sock, &clone, "volume", "info", clone1)
	if clone.Parent != spec+"@s1" || clone.RBDImage != clone1 {
		t.Fatalf("rowctl volume info %s: %+v, want parent %s@s1", clone1, clone, spec)
	}
	var cephClone struct {
		Parent struct {
			Image    string `json:"image"`
			Snapshot string `json:"snapshot"`
		} `json:"parent"`
	}
	rbdJSON(t, conf, &cephClone, "info", "rbd/"+clone1)
	if cephClone.Parent.Image != image || cephClone.Parent.Snapshot != "s1" {
		t.Fatalf("rbd info rbd/%s parent %+v", clone1, cephClone.Parent)
	}
	qemuIO(t, filepath.Join(e.mnt, clone1), "none", "read -P 0x11 0 4M")
	if r := rowctl(t, e.sock, "snapshot", "delete", "v@s1"); r.code == 0 || !strings.Contains(r.stderr, "clones") {
		t.Fatalf("deleting a snapshot with a clone: exit %d, %s", r.code, r.stderr)
	}

	mustRowctl(t, e.sock, "volume", "flatten", clone1)
	rowctlJSON(t, e.sock, &clone, "volume", "info", clone1)
	cephClone.Parent.Image = ""
	rbdJSON(t, conf, &cephClone, "info", "rbd/"+clone1)
	if clone.Parent != "" || cephClone.Parent.Image != "" {
		t.Fatalf("after flatten: rowctl parent %q, rbd parent %+v", clone.Parent, cephClone.Parent)
	}
	children = nil
	rbdJSON(t, conf, &children, "children", spec+"@s1")
	if len(children) != 0 {
		t.Fatalf("rbd children after flatten: %+v", children)
	}
	mustRowctl(t, e.sock, "snapshot", "delete", "v@s1")
	agree("delete s1 after flatten")

	// Detach leaves the image and its snapshots in Ceph; attach brings it back.
	mustRowctl(t, e.sock, "volume", "detach", "v")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("detached volume file: %v", err)
	}
	rbdCLI(t, conf, "info", spec)
	mustRowctl(t, e.sock, "volume", "attach", "v2", "--rbd-pool", "rbd", "--rbd-image", image)
	qemuIO(t, filepath.Join(e.mnt, "v2"), "none", "read -P 0x11 0 4M")
	ceph, ours := rbdSnapNames(t, conf, spec), rowctlSnapNames(t, e.sock, "v2")
	if !slices.Equal(ceph, ours) {
		t.Fatalf("after attach: rbd %v, rowctl %v", ceph, ours)
	}
}

func TestRBDRollbackRefusedWhileLocked(t *testing.T) {
	conf := requireCeph(t)
	e := newEnv(t)
	startRBD(e, conf)
	image := createRBD(t, e.sock, "l", "lock", "8M")
	mustRowctl(t, e.sock, "snapshot", "create", "l@s1")
	path := filepath.Join(e.mnt, "l")

	// Open here: refused, naming the file.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	r := rowctl(t, e.sock, "snapshot", "rollback", "l@s1", "--yes")
	f.Close()
	if r.code == 0 || !strings.Contains(r.stderr, "open") {
		t.Fatalf("rollback while the file is open: exit %d, %s", r.code, r.stderr)
	}

	// Another client writing the image holds its exclusive lock: refused,
	// naming that client.
	writer := exec.Command("rbd", "-c", conf, "bench", "--io-type", "write", "--io-size", "4K",
		"--io-total", "1G", "--io-threads", "1", "rbd/"+image)
	var out bytes.Buffer
	writer.Stdout, writer.Stderr = &out, &out
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { writer.Process.Kill(); writer.Wait() }()
	var owners []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r = rowctl(t, e.sock, "snapshot", "rollback", "l@s1", "--yes")
		if r.code != 0 && strings.Contains(r.stderr, "locked by") {
			owners = append(owners, r.stderr)
			break
		}
	}
	if len(owners) == 0 {
		t.Fatalf("rollback while rbd bench writes: last exit %d, %s\nrbd bench: %s", r.code, r.stderr, out.String())
	}
	if !regexp.MustCompile(`locked by client\.\d+ \(\S+/\d+\)`).MatchString(owners[0]) {
		t.Fatalf("the refusal does not name the lock holder: %s", owners[0])
	}
	writer.Process.Kill()
	writer.Wait()
	// Once the other client is gone, the rollback goes through.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		if r = rowctl(t, e.sock, "snapshot", "rollback", "l@s1", "--yes"); r.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollback after the other client died: %s", r.stderr)
		}
	}
}

// TestRBDKill9WhileWriting: what a completed fsync covered reads back after
// kill -9 and a restart; the restarted daemon can write again.
func TestRBDKill9WhileWriting(t *testing.T) {
	conf := requireCeph(t)
	e := newEnv(t)
	d := startRBD(e, conf)
	createRBD(t, e.sock, "k", "crash", "16M")
	path := filepath.Join(e.mnt, "k")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Numbered records, each fsynced: every record up to the last
	// acknowledged sync must survive.
	const rec = 4096
	synced := -1
	stop := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(stop) && (i+1)*rec <= 8<<20; i++ {
		if _, err := f.WriteAt(bytes.Repeat([]byte{byte(i%250 + 1)}, rec), int64(i*rec)); err != nil {
			t.Fatal(err)
		}
		if i%4 == 3 {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			synced = i
		}
	}
	// Unsynced writes in flight when the daemon dies.
	go func() {
		for i := 0; ; i++ {
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xee}, rec), int64(8<<20+(i%1024)*rec)); err != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	d.kill9()
	f.Close()
	if synced < 0 {
		t.Fatal("no record was synced")
	}
	start := time.Now()
	startRBD(e, conf)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= synced; i++ {
		if want := byte(i%250 + 1); !bytes.Equal(data[i*rec:(i+1)*rec], bytes.Repeat([]byte{want}, rec)) {
			t.Fatalf("record %d (synced up to %d) lost after kill -9", i, synced)
		}
	}
	// The dead daemon's exclusive lock must not keep the new one from
	// writing: it breaks it at once, not after the OSDs' 30 s watch timeout.
	qemuIO(t, path, "none", "write -P 0x77 12M 1M", "read -P 0x77 12M 1M")
	took := time.Since(start)
	t.Logf("%d synced records intact; restart to first write took %s", synced+1, took.Round(time.Millisecond))
	if took > 20*time.Second {
		t.Fatalf("first write after the restart waited %s: the dead run's lock was not broken", took)
	}
}

func TestRBDBadInput(t *testing.T) {
	conf := requireCeph(t)
	e := newEnv(t)
	startRBD(e, conf)
	image := createRBD(t, e.sock, "b", "bad", "8M")
	volumes := func() string { return mustRowctl(t, e.sock, "volume", "list") }
	before := volumes()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"volume", "create", "x", "--backend", "rbd", "--rbd-pool", "nopool", "--size", "8M"}, `Ceph pool "nopool"`},
		{[]string{"volume", "attach", "x", "--rbd-pool", "rbd", "--rbd-image", "no-such-image"}, "no-such-image"},
		{[]string{"volume", "attach", "x", "--rbd-pool", "rbd", "--rbd-image", image}, "already attached as volume \"b\""},
		{[]string{"volume", "attach", "b", "--rbd-pool", "rbd", "--rbd-image", image}, "already exists"},
		{[]string{"volume", "create", "x", "--backend", "rbd", "--size", "8M"}, "--rbd-pool"},
		{[]string{"volume", "create", "x", "--backend", "ceph", "--rbd-pool", "rbd", "--size", "8M"}, "want row or rbd"},
		{[]string{"volume", "create", "x", "--backend", "rbd", "--rbd-pool", "rbd", "--rbd-image", "a/b", "--size", "8M"}, "without '/'"},
		{[]string{"volume", "detach", "nothere"}, "not found"},
	} {
		r := rowctl(t, e.sock, c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("rowctl %s: exit %d, %q; want a refusal saying %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
	if after := volumes(); after != before {
		t.Fatalf("bad input changed the volumes:\n%s\nthen\n%s", before, after)
	}
	if out := rbdCLI(t, conf, "ls", "rbd"); strings.Contains(out, "\nx\n") || strings.HasPrefix(out, "x\n") {
		t.Fatalf("bad input left an image: %s", out)
	}
	createVolume(t, e.sock, "loc", "8M")
	if r := rowctl(t, e.sock, "volume", "detach", "loc"); r.code == 0 || !strings.Contains(r.stderr, "local") {
		t.Fatalf("detach of a local volume: exit %d, %s", r.code, r.stderr)
	}
}

// TestRBDCephDown: with the cluster unreachable the daemon starts and serves
// local volumes; RBD volumes give a clear error and nothing changes.
func TestRBDCephDown(t *testing.T) {
	conf := requireCeph(t)
	e := newEnv(t)
	d := startRBD(e, conf)
	image := createRBD(t, e.sock, "r", "down", "8M")
	d.stop()

	// A ceph.conf whose monitor nobody listens on: Ceph is down for this daemon.
	dead := filepath.Join(t.TempDir(), "ceph.conf")
	runCmd(t, "sh", "-c", fmt.Sprintf(`sed 's/^mon host = .*/mon host = v2:127.0.0.1:9/' %s > %s`, conf, dead))
	e.start("--ceph-conf", dead, "--ceph-timeout", "3s")
	local := createVolume(t, e.sock, "loc", "8M")
	qemuIO(t, local, "none", "write -P 0x42 0 1M", "read -P 0x42 0 1M")
	if _, err := os.ReadFile(filepath.Join(e.mnt, "r")); err == nil {
		t.Fatal("reading an RBD volume with Ceph down succeeded")
	}
	for _, args := range [][]string{
		{"snapshot", "create", "r@s1"},
		{"volume", "create", "n", "--backend", "rbd", "--rbd-pool", "rbd", "--size", "8M"},
	} {
		r := rowctl(t, e.sock, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "not reachable") {
			t.Fatalf("rowctl %s with Ceph down: exit %d, %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	var v api.Volume
	rowctlJSON(t, e.sock, &v, "volume", "info", "r")
	if !strings.Contains(v.Note, "Ceph unreachable") {
		t.Fatalf("volume info with Ceph down: %+v", v)
	}
	if out := mustRowctl(t, e.sock, "volume", "list"); !strings.Contains(out, "loc") || !strings.Contains(out, "r ") {
		t.Fatalf("volume list with Ceph down: %s", out)
	}
	if snaps := rbdSnapNames(t, conf, "rbd/"+image); len(snaps) != 0 {
		t.Fatalf("a refused snapshot exists: %v", snaps)
	}
}

// TestRBDVolumeBackup: an RBD volume backs up through the same format:
// the incremental reads only the extents RBD's diff between the two
// snapshots names, and both points restore, to a local volume.
func TestRBDVolumeBackup(t *testing.T) {
	conf := requireCeph(t)
	e := newEnv(t)
	startRBD(e, conf)
	mustRowctl(t, e.sock, "backup", "target", "add", "nas", "dir://"+filepath.Join(t.TempDir(), "backups"))
	createRBD(t, e.sock, "r", "backup", "24M")
	file := filepath.Join(e.mnt, "r")
	qemuIO(t, file, "none", "write -P 0x71 0 6M")
	refs := t.TempDir()
	runCmd(t, "cp", "--sparse=always", file, filepath.Join(refs, "1"))
	mustRowctl(t, e.sock, "backup", "create", "r")
	qemuIO(t, file, "none", "write -P 0x72 17M 64k")
	runCmd(t, "cp", "--sparse=always", file, filepath.Join(refs, "2"))
	mustRowctl(t, e.sock, "backup", "create", "r")
	var l api.BackupList
	rowctlJSON(t, e.sock, &l, "backup", "list", "r")
	if len(l.Points) != 2 || l.Points[1].Kind != "incremental" || l.Points[1].ReadBytes != 4<<20 {
		t.Fatalf("RBD points: %+v (want the incremental to read one 4 MiB chunk)", l.Points)
	}
	for i, p := range l.Points {
		name := fmt.Sprintf("local%d", i+1)
		mustRowctl(t, e.sock, "backup", "restore", p.ID, "--to", name)
		runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", filepath.Join(refs, fmt.Sprint(i+1)), filepath.Join(e.mnt, name))
	}
	mustRowctl(t, e.sock, "volume", "delete", "r", "--force")
}
