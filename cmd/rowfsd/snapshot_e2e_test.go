package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/xattr"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/daemon"
)

func snapshotList(t *testing.T, sock, vol string) api.SnapshotList {
	t.Helper()
	var l api.SnapshotList
	rowctlJSON(t, sock, &l, "snapshot", "list", vol)
	return l
}

func getxattr(t *testing.T, path, name string) string {
	t.Helper()
	v, err := xattr.Get(path, name)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, name, err)
	}
	return string(v)
}

// TestSnapshotFiles: every .snapshots/ file equals the reference the
// volume matched when it was taken (qemu-img compare), survives a resize
// of the volume, is read-only, carries its xattrs, and disappears with
// its delete; a clone reads as its origin.
func TestSnapshotFiles(t *testing.T) {
	requireE2E(t, "qemu-io", "qemu-img")
	e := newEnv(t)
	e.start()
	vol := createVolume(t, e.sock, "vm", "64M")
	ref := filepath.Join(t.TempDir(), "ref.raw")
	runCmd(t, "qemu-img", "create", "-q", "-f", "raw", ref, "64M")
	refs := map[string]string{}
	for i := range 5 {
		cmds := []string{
			fmt.Sprintf("write -P %d %d 1M", 10+i, i*3<<20),
			fmt.Sprintf("write -P %d %d 4k", 20+i, 40<<20+i*8192),
			fmt.Sprintf("write -P %d 0 64k", 30+i),
		}
		qemuIO(t, vol, "none", cmds...)
		qemuIO(t, ref, "none", cmds...)
		name := fmt.Sprintf("s%d", i)
		mustRowctl(t, e.sock, "snapshot", "create", "vm@"+name, "--description", "step "+strconv.Itoa(i))
		refs[name] = filepath.Join(t.TempDir(), name+".raw")
		runCmd(t, "cp", "--sparse=always", ref, refs[name])
	}
	// The head moves on; the snapshots must not.
	qemuIO(t, vol, "none", "write -P 99 0 8M")
	mustRowctl(t, e.sock, "volume", "resize", "vm", "--size", "96M")
	for name, r := range refs {
		snap := filepath.Join(e.mnt, ".snapshots", "vm", name)
		runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", snap, r)
		if st, err := os.Stat(snap); err != nil || st.Size() != 64<<20 {
			t.Fatalf("%s: size %v (%v), want 64M", snap, st.Size(), err)
		}
	}
	out := filepath.Join(t.TempDir(), "conv.raw")
	runCmd(t, "qemu-img", "convert", "-O", "raw", filepath.Join(e.mnt, ".snapshots", "vm", "s2"), out)
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", out, refs["s2"])

	s0 := filepath.Join(e.mnt, ".snapshots", "vm", "s0")
	if _, err := os.OpenFile(s0, os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("open snapshot for writing: %v, want EROFS", err)
	}
	if err := os.Truncate(s0, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("truncate snapshot: %v, want EROFS", err)
	}
	if got := getxattr(t, s0, "user.rowfs.kind"); got != "snapshot" {
		t.Errorf("kind %q", got)
	}
	if got := getxattr(t, s0, "user.rowfs.used"); got == "0" || got == "" {
		t.Errorf("s0 used %q", got)
	}
	if got := getxattr(t, s0, "user.rowfs.btime"); !strings.HasPrefix(got, "20") {
		t.Errorf("btime %q", got)
	}
	if got := getxattr(t, s0, "user.rowfs.info.json"); !strings.Contains(got, `"description":"step 0"`) {
		t.Errorf("info.json %s", got)
	}
	// Five, and the automatic one the resize took.
	if got := getxattr(t, vol, "user.rowfs.snapshots"); got != "6" {
		t.Errorf("snapshots xattr %q, want 6", got)
	}
	if got := getxattr(t, vol, "user.rowfs.snapshots.json"); !strings.Contains(got, `"name":"s4"`) || strings.Contains(got, `"truncated":true`) {
		t.Errorf("snapshots.json %s", got)
	}
	if got := getxattr(t, vol, "user.rowfs.snapshot_bytes"); got == "0" {
		t.Errorf("snapshot_bytes %q", got)
	}
	if got := getxattr(t, vol, "user.rowfs.parent"); got != "" {
		t.Errorf("parent of a non-clone %q", got)
	}

	// A clone reads as its origin and says where it came from.
	var clone api.Volume
	rowctlJSON(t, e.sock, &clone, "volume", "clone", "vm@s3", "copy")
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", clone.Path, refs["s3"])
	if got := getxattr(t, clone.Path, "user.rowfs.parent"); got != "vm@s3" {
		t.Errorf("clone parent %q", got)
	}
	mustRowctl(t, e.sock, "volume", "flatten", "copy")
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", clone.Path, refs["s3"])
	if got := getxattr(t, clone.Path, "user.rowfs.parent"); got != "" {
		t.Errorf("parent after flatten %q", got)
	}
	// Deleting the origin volume keeps what clones read: hidden where two
	// clones read a snapshot, merged into the clone where only one does
	// (and then not reported as kept).
	rowctlJSON(t, e.sock, &clone, "volume", "clone", "vm@s1", "copy2")
	var clone3, clone4 api.Volume
	rowctlJSON(t, e.sock, &clone3, "volume", "clone", "vm@s1", "copy3")
	rowctlJSON(t, e.sock, &clone4, "volume", "clone", "vm@s2", "copy4")
	r := rowctl(t, e.sock, "volume", "delete", "vm")
	if r.code != 0 || !strings.Contains(r.stdout, "kept hidden: vm@s1: still read by the head of volume copy2, the head of volume copy3") ||
		strings.Contains(r.stdout, "vm@s2") {
		t.Fatalf("delete origin: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", clone.Path, refs["s1"])
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", clone3.Path, refs["s1"])
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", clone4.Path, refs["s2"])
	if _, err := os.Stat(s0); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("snapshot file of a deleted volume: %v", err)
	}
}

// TestRollbackWhileOpen: refused while qemu-io holds the volume open for
// writing, allowed once it exits, and the new content is visible at once.
func TestRollbackWhileOpen(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	e.start()
	vol := createVolume(t, e.sock, "vm", "16M")
	qemuIO(t, vol, "none", "write -P 1 0 1M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm@before")
	qemuIO(t, vol, "writeback", "write -P 2 0 1M")

	q := exec.Command("qemu-io", "-f", "raw", "-t", "none", vol)
	stdin, err := q.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var qout bytes.Buffer
	q.Stdout, q.Stderr = &qout, &qout
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var v api.Volume
		rowctlJSON(t, e.sock, &v, "volume", "info", "vm")
		if v.Writers > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu-io never opened the volume: %s", qout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := snapshotList(t, e.sock, "vm")
	r := rowctl(t, e.sock, "snapshot", "rollback", "vm@before", "--yes")
	if r.code != 1 || !strings.Contains(r.stderr, "stop the VM first") {
		t.Fatalf("rollback while open: exit %d %q", r.code, r.stderr)
	}
	if after := snapshotList(t, e.sock, "vm"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused rollback changed the tree")
	}
	io.WriteString(stdin, "quit\n")
	stdin.Close()
	if err := q.Wait(); err != nil {
		t.Fatalf("qemu-io: %v %s", err, qout.String())
	}
	mustRowctl(t, e.sock, "snapshot", "rollback", "vm@before", "--yes")
	qemuIO(t, vol, "writeback", "read -P 1 0 1M")
	qemuIO(t, vol, "none", "read -P 1 0 1M")
}

// TestSnapshotsWhileWriting: 200 snapshots taken while 4 qemu-io writers
// append numbered records; in every snapshot each writer's records form
// a prefix of its sequence.
func TestSnapshotsWhileWriting(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	e.start()
	const writers, recSize, region = 4, 512, 16 << 20
	vol := createVolume(t, e.sock, "vm", "64M")
	mustRowctl(t, e.sock, "volume", "set", "vm", "max-snapshots=256")
	var stop atomic.Bool
	var sent [writers]atomic.Int64
	var wg sync.WaitGroup
	outs := make([]*bytes.Buffer, writers)
	for w := range writers {
		// Image locking would refuse a second writer; these four share the
		// file on purpose, each in its own region.
		q := exec.Command("qemu-io", "-t", "none", "--image-opts", "driver=raw,file.driver=file,file.filename="+vol+",file.locking=off")
		stdin, err := q.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		outs[w] = &bytes.Buffer{}
		q.Stdout, q.Stderr = outs[w], outs[w]
		if err := q.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			bw := bufio.NewWriter(stdin)
			for k := int64(0); k < region/recSize && !stop.Load(); k++ {
				fmt.Fprintf(bw, "write -P %d %d %d\n", k%255+1, int64(w)*region+k*recSize, recSize)
				bw.Flush()
				sent[w].Store(k + 1)
			}
			io.WriteString(bw, "quit\n")
			bw.Flush()
			stdin.Close()
			q.Wait()
		}()
	}
	t.Cleanup(func() { stop.Store(true); wg.Wait() })
	const snaps = 200
	var bounds [snaps][writers]int64
	for i := range snaps {
		mustRowctl(t, e.sock, "snapshot", "create", fmt.Sprintf("vm@p%03d", i))
		for w := range writers {
			bounds[i][w] = sent[w].Load()
		}
	}
	stop.Store(true)
	wg.Wait()
	for w, o := range outs {
		if strings.Contains(o.String(), "failed") {
			t.Fatalf("writer %d: %s", w, o.String()[:min(2000, o.Len())])
		}
	}
	var prefixes []int64
	for i := range snaps {
		f, err := os.Open(filepath.Join(e.mnt, ".snapshots", "vm", fmt.Sprintf("p%03d", i)))
		if err != nil {
			t.Fatal(err)
		}
		// Closed before the daemon stops, even when a check fails: an open
		// file keeps the mount busy.
		t.Cleanup(func() { f.Close() })
		for w := range writers {
			n := bounds[i][w] + 1 // records that can be in the snapshot, and one past
			buf := make([]byte, min(n*recSize, region))
			if _, err := f.ReadAt(buf, int64(w)*region); err != nil {
				t.Fatal(err)
			}
			prefix := int64(-1)
			for k := int64(0); k*recSize < int64(len(buf)); k++ {
				rec := buf[k*recSize : (k+1)*recSize]
				full := bytes.Count(rec, []byte{byte(k%255 + 1)}) == recSize
				empty := bytes.Count(rec, []byte{0}) == recSize
				switch {
				case full && prefix < 0:
				case empty && prefix < 0:
					prefix = k
				case empty:
				default:
					t.Fatalf("snapshot p%03d, writer %d: record %d is %v after a prefix of %d: not a point-in-time prefix", i, w, k, rec[:8], prefix)
				}
			}
			if prefix < 0 && int64(len(buf)) < region {
				t.Fatalf("snapshot p%03d, writer %d: holds more records than were sent when it returned", i, w)
			}
			if prefix < 0 { // the writer had filled its region
				prefix = region / recSize
			}
			prefixes = append(prefixes, prefix)
		}
		f.Close()
	}
	t.Logf("%d snapshots × %d writers verified; prefixes from %d to %d records", snaps, writers, prefixes[0], prefixes[len(prefixes)-1])
	if prefixes[len(prefixes)-1] == 0 {
		t.Fatalf("the writers wrote nothing while the snapshots were taken")
	}
}

// TestSnapshotBadInput: refusals with their exit codes and messages; the
// tree is byte for byte the same afterwards.
func TestSnapshotBadInput(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	e.start()
	createVolume(t, e.sock, "vm", "16M")
	mustRowctl(t, e.sock, "volume", "set", "vm", "max-snapshots=3")
	for _, s := range []string{"sa", "sb"} {
		mustRowctl(t, e.sock, "snapshot", "create", "vm@"+s)
	}
	mustRowctl(t, e.sock, "snapshot", "rollback", "vm@sa", "--yes")
	mustRowctl(t, e.sock, "snapshot", "create", "vm@sc")
	mustRowctl(t, e.sock, "snapshot", "delete", "vm@sa") // two children: hidden
	mustRowctl(t, e.sock, "snapshot", "create", "vm@sd")
	mustRowctl(t, e.sock, "snapshot", "create", "vm@se")
	before := mustRowctl(t, e.sock, "snapshot", "list", "vm", "--json")
	if !strings.Contains(mustRowctl(t, e.sock, "snapshot", "list", "vm", "--tree"), "sa [hidden, 2 children]") {
		t.Errorf("tree does not show the hidden node")
	}
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"snapshot", "create", "vm@auto-1"}, 2, "reserved for automatic snapshots"},
		{[]string{"snapshot", "create", "vm@sb"}, 1, "already exists"},
		{[]string{"snapshot", "create", "vm@x!y"}, 2, "names are"},
		{[]string{"snapshot", "create", "vm@x"}, 2, "names are 2–128 characters"},
		{[]string{"snapshot", "create", "vm@Auto-x"}, 2, "reserved for automatic snapshots"},
		{[]string{"snapshot", "create", "vm@sf"}, 1, "delete one first"},
		{[]string{"snapshot", "create", "vm", "--auto"}, 1, "none is automatic"},
		{[]string{"snapshot", "create", "ghost@x"}, 3, `volume "ghost"`},
		{[]string{"snapshot", "delete", "vm@zz"}, 3, "snapshot vm@zz"},
		{[]string{"snapshot", "delete", "vm"}, 2, "is the volume's head"},
		{[]string{"snapshot", "rollback", "vm@sa", "--yes"}, 2, "kept hidden"},
		{[]string{"snapshot", "delete", "vm@sc", "--recursive"}, 1, `head of volume "vm"`},
		{[]string{"snapshot", "diff", "vm@zz"}, 3, "snapshot vm@zz"},
		{[]string{"volume", "clone", "vm@zz", "new"}, 3, "snapshot vm@zz"},
		{[]string{"volume", "flatten", "vm"}, 2, "not a clone"},
		{[]string{"volume", "set", "vm", "colour=blue"}, 2, "unknown setting"},
		{[]string{"snapshot", "create", "noat"}, 2, "want VOLUME@SNAPSHOT"},
	}
	for _, c := range cases {
		r := rowctl(t, e.sock, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("rowctl %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), r.code, r.stderr, c.code, c.msg)
		}
		if after := mustRowctl(t, e.sock, "snapshot", "list", "vm", "--json"); after != before {
			t.Fatalf("rowctl %s changed the tree", strings.Join(c.args, " "))
		}
	}
}

// TestDeleteJobSurvivesKill9: a merge interrupted by kill -9 resumes
// after restart and finishes with the data intact.
func TestDeleteJobSurvivesKill9(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	d := e.start("--block-size", "4K")
	vol := createVolume(t, e.sock, "vm", "256M")
	qemuIO(t, vol, "none", "write -P 5 0 256M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm@big")
	qemuIO(t, vol, "none", "write -P 6 0 1M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm@next")
	want := fileSum(t, filepath.Join(e.mnt, ".snapshots", "vm", "next"))
	var res api.DeleteSnapshotResult
	rowctlJSON(t, e.sock, &res, "snapshot", "delete", "vm@big", "--no-wait")
	d.kill9()
	d = e.start("--block-size", "4K")
	resumed := strings.Contains(d.log.String(), "resuming job")
	var job api.Job
	rowctlJSON(t, e.sock, &job, "job", "wait", strconv.FormatUint(res.Job.ID, 10))
	if job.State != "done" {
		t.Fatalf("job after restart: %+v", job)
	}
	if got := fileSum(t, filepath.Join(e.mnt, ".snapshots", "vm", "next")); got != want {
		t.Fatalf("vm@next changed across the interrupted merge")
	}
	l := snapshotList(t, e.sock, "vm")
	for _, s := range l.Snapshots {
		if s.Name == "big" {
			t.Fatalf("big still listed: %+v", s)
		}
		if s.Name == "next" && s.OwnBytes != 256<<20 {
			t.Fatalf("next owns %d bytes, want 256 MiB", s.OwnBytes)
		}
	}
	t.Logf("merge job %d: %s, %d of %d bytes; interrupted by kill -9 and resumed: %v", job.ID, job.State, job.Done, job.Total, resumed)
}

// TestDeleteDryRunShowsThePlan: --dry-run prints the steps the delete will
// execute and changes nothing; the delete then frees what it said.
func TestDeleteDryRunShowsThePlan(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	e.start()
	vol := createVolume(t, e.sock, "vm", "16M")
	qemuIO(t, vol, "none", "write -P 1 0 1M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm@s1")
	qemuIO(t, vol, "none", "write -P 2 0 512K")
	mustRowctl(t, e.sock, "snapshot", "create", "vm@s2")
	before := mustRowctl(t, e.sock, "snapshot", "list", "vm", "--json")
	out := mustRowctl(t, e.sock, "snapshot", "delete", "vm@s1", "--dry-run")
	if !strings.Contains(out, "would delete s1: frees 512 KiB") || !strings.Contains(out, "1. merge vm@s1 into vm@s2: 512 KiB move to it, 512 KiB freed") {
		t.Errorf("dry run:\n%s", out)
	}
	if after := mustRowctl(t, e.sock, "snapshot", "list", "vm", "--json"); after != before {
		t.Errorf("the dry run changed the tree")
	}
	var dry, done api.DeleteSnapshotResult
	rowctlJSON(t, e.sock, &dry, "snapshot", "delete", "vm@s1", "--dry-run")
	usedBefore := poolInfo(t, e.sock).UsedBytes
	rowctlJSON(t, e.sock, &done, "snapshot", "delete", "vm@s1")
	if !reflect.DeepEqual(done.Plan.Steps, dry.Plan.Steps) || len(done.Plan.Steps) != 1 {
		t.Errorf("executed plan %+v, dry run %+v", done.Plan.Steps, dry.Plan.Steps)
	}
	if done.Job != nil {
		mustRowctl(t, e.sock, "job", "wait", strconv.FormatUint(done.Job.ID, 10))
	}
	// The freed blocks go back at the commit after the merge.
	f, _ := os.OpenFile(vol, os.O_RDWR, 0)
	f.Sync()
	f.Close()
	if freed := usedBefore - poolInfo(t, e.sock).UsedBytes; freed != dry.Plan.FreedBytes {
		t.Errorf("the delete freed %d bytes, the dry run said %d", freed, dry.Plan.FreedBytes)
	}
}

// TestSnapshotsBeforeRiskyOperations: through rowctl and the mount, a
// resize and a reset take an automatic snapshot that reads as the volume
// did before (qemu-img compare against a copy), a rollback too once the
// pool setting is on; the reset volume reads as zeros; pool set refuses an
// unknown key.
func TestSnapshotsBeforeRiskyOperationsE2E(t *testing.T) {
	requireE2E(t, "qemu-io", "qemu-img")
	e := newEnv(t)
	e.start()
	vol := createVolume(t, e.sock, "vm", "16M")
	qemuIO(t, vol, "none", "write -P 0x5a 0 4M")
	before := filepath.Join(t.TempDir(), "before.raw")
	runCmd(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", vol, before)
	preNamed := func(prefix string) []string {
		var out []string
		for _, s := range snapshotList(t, e.sock, "vm").Snapshots {
			if strings.HasPrefix(s.Name, prefix) && !s.Hidden {
				out = append(out, s.Name)
			}
		}
		return out
	}
	mustRowctl(t, e.sock, "volume", "resize", "vm", "--size", "32M")
	pre := preNamed("auto-pre-resize-")
	if len(pre) != 1 {
		t.Fatalf("pre-resize snapshots after a resize: %v", pre)
	}
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", filepath.Join(e.mnt, ".snapshots", "vm", pre[0]), before)

	mustRowctl(t, e.sock, "volume", "reset", "vm", "--yes")
	qemuIO(t, vol, "none", "read -P 0 0 4M")
	preReset := preNamed("auto-pre-reset-")
	if len(preReset) != 1 {
		t.Fatalf("pre-reset snapshots after a reset: %v", preReset)
	}
	// 32 MiB against 16: qemu-img compare wants the rest zeros, as it is.
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", filepath.Join(e.mnt, ".snapshots", "vm", preReset[0]), before)

	out := mustRowctl(t, e.sock, "pool", "set", "snapshot-before-rollback=true")
	if !strings.Contains(out, "snapshot-before-rollback=true") {
		t.Errorf("pool set: %q", out)
	}
	if info := mustRowctl(t, e.sock, "pool", "info"); !strings.Contains(info, "snapshot-before-rollback:  true") {
		t.Errorf("pool info does not show the setting:\n%s", info)
	}
	qemuIO(t, vol, "none", "write -P 0x77 0 1M")
	mustRowctl(t, e.sock, "snapshot", "rollback", "vm@"+pre[0], "--yes")
	preRollback := preNamed("auto-pre-rollback-")
	if len(preRollback) != 1 {
		t.Fatalf("pre-rollback snapshots: %v", preRollback)
	}
	if out := runCmd(t, "qemu-io", "-r", "-f", "raw", "-c", "read -P 0x77 0 1M", filepath.Join(e.mnt, ".snapshots", "vm", preRollback[0])); strings.Contains(out, "fail") {
		t.Errorf("the pre-rollback snapshot does not hold what the rollback discarded: %s", out)
	}
	runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", vol, before)
	if r := rowctl(t, e.sock, "pool", "set", "snapshot-before-lunch=true"); r.code != 2 || !strings.Contains(r.stderr, "unknown pool setting") {
		t.Errorf("unknown setting: exit %d, %q", r.code, r.stderr)
	}
}

// TestPolicyE2E: a policy --every 1m --keep 2 on two volumes snapshots both
// as soon as it is created (its first due time), policy info shows the
// next run a minute later, runs never leave more than 2 of its snapshots,
// and bad input is refused with nothing created.
func TestPolicyE2E(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	e.start()
	for _, v := range []string{"a", "b"} {
		createVolume(t, e.sock, v, "16M")
	}
	var created api.Policy
	rowctlJSON(t, e.sock, &created, "policy", "create", "often", "--every", "1m", "--keep", "2", "a", "b")
	own := func(volume string) int {
		n := 0
		for _, s := range snapshotList(t, e.sock, volume).Snapshots {
			if s.Policy == "often" && !s.Hidden {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for own("a") < 1 || own("b") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no policy snapshots 30 s after the policy was created:\n%s", mustRowctl(t, e.sock, "policy", "info", "often"))
		}
		time.Sleep(100 * time.Millisecond) // polling the scheduler's first run
	}
	var info api.Policy
	rowctlJSON(t, e.sock, &info, "policy", "info", "often")
	if info.State != "active" || info.Runs < 1 || info.NextRun.Sub(info.LastRun) > time.Minute+time.Second || info.NextRun.Before(info.LastRun) {
		t.Errorf("policy info after the first run: %+v", info)
	}
	for range 3 {
		mustRowctl(t, e.sock, "policy", "run", "often")
	}
	rowengineWait(t, e.sock)
	if own("a") != 2 || own("b") != 2 {
		t.Errorf("after 4 runs with --keep 2: a has %d, b %d of the policy's snapshots", own("a"), own("b"))
	}
	if got := getxattr(t, filepath.Join(e.mnt, "a"), "user.rowfs.policies"); got != "often" {
		t.Errorf("user.rowfs.policies of a: %q", got)
	}
	if out := mustRowctl(t, e.sock, "policy", "list"); !strings.Contains(out, "often") || !strings.Contains(out, "every 1m0s") {
		t.Errorf("policy list:\n%s", out)
	}
	before := mustRowctl(t, e.sock, "policy", "list", "--json")
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"policy", "create", "p1", "--hours", "24", "--weekdays", "mon"}, "hours are 0 to 23"},
		{[]string{"policy", "create", "p1", "--hours", "1", "--weekdays", "8"}, "weekdays are 1 (Monday) to 7"},
		{[]string{"policy", "create", "p1", "--hours", "1", "--weekdays", "mon", "--retain-days", "0"}, "1 to 65536"},
		{[]string{"policy", "create", "p1", "--every", "0m"}, "a minute or more"},
		{[]string{"policy", "create", "p1", "--cron", "nonsense"}, "cron expression"},
		{[]string{"policy", "create", "p1", "--every", "1h", "--timezone", "Nowhere/City"}, "IANA zone"},
		{[]string{"policy", "create", "p1", "--every", "1h", "ghost"}, `volume "ghost"`},
		{[]string{"policy", "create", "often", "--every", "1h"}, "already exists"},
	} {
		if r := rowctl(t, e.sock, c.args...); r.code == 0 || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("rowctl %s: exit %d, %q; want a refusal saying %q", strings.Join(c.args, " "), r.code, r.stderr, c.msg)
		}
	}
	if after := mustRowctl(t, e.sock, "policy", "list", "--json"); after != before {
		t.Errorf("refused commands changed the policies")
	}
	if out := mustRowctl(t, e.sock, "policy", "pause", "often"); !strings.Contains(out, "paused") {
		t.Errorf("pause: %q", out)
	}
	mustRowctl(t, e.sock, "policy", "delete", "often")
	if r := rowctl(t, e.sock, "policy", "info", "often"); r.code != 3 {
		t.Errorf("info of a deleted policy: exit %d", r.code)
	}
}

// rowengineWait waits for the daemon's jobs (the merges pruning starts).
func rowengineWait(t *testing.T, sock string) {
	t.Helper()
	var jobs struct {
		Jobs []api.Job `json:"jobs"`
	}
	rowctlJSON(t, sock, &jobs, "job", "list")
	for _, j := range jobs.Jobs {
		if j.State == "running" {
			mustRowctl(t, sock, "job", "wait", strconv.FormatUint(j.ID, 10))
		}
	}
}

// TestPolicyRunCrash: the daemon dies (kill -9 by the crash switch) in the
// middle of a policy run, between its two volumes' snapshots; after a
// restart the pool checks clean and the policy runs again, once.
func TestPolicyRunCrash(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	d := e.startWith([]string{daemon.CrashEnv + "=snapshot:2"})
	for _, v := range []string{"a", "b"} {
		createVolume(t, e.sock, v, "16M")
	}
	rowctl(t, e.sock, "policy", "create", "often", "--every", "1h", "a", "b")
	if !d.diesSoon() {
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("the crash switch did not fire during the policy run:\n%s", d.log)
		}
	}
	d.kill9() // already dead: clears its mount in cleanup
	e.start()
	if r := rowctl(t, e.sock, "fsck"); r.code != 0 {
		t.Fatalf("fsck after the crash: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var info api.Policy
		rowctlJSON(t, e.sock, &info, "policy", "info", "often")
		if info.Runs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policy did not run again after the restart: %+v", info)
		}
		time.Sleep(100 * time.Millisecond) // polling the scheduler's catch-up run
	}
	for _, v := range []string{"a", "b"} {
		n := 0
		for _, s := range snapshotList(t, e.sock, v).Snapshots {
			if s.Policy == "often" {
				n++
			}
		}
		if n < 1 || n > 2 {
			t.Errorf("%s has %d of the policy's snapshots after the crash and the catch-up run", v, n)
		}
	}
}

// TestGroupE2E: through rowctl and the mount, a group snapshot of three
// volumes, the group rollback that restores all three, group info saying
// why a point is not restorable once a member left, and the group xattr.
func TestGroupE2E(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	e.start()
	vols := []string{"d1", "d2", "d3"}
	for i, v := range vols {
		qemuIO(t, createVolume(t, e.sock, v, "16M"), "none", fmt.Sprintf("write -P 0x%02x 0 1M", 0x10+i))
	}
	mustRowctl(t, e.sock, "group", "create", "vm", "d1", "d2", "d3")
	var snap api.GroupSnapshotResult
	rowctlJSON(t, e.sock, &snap, "group", "snapshot", "vm@before", "--description", "all disks")
	if len(snap.Snapshots) != 3 {
		t.Fatalf("group snapshot: %+v", snap)
	}
	for _, v := range vols {
		qemuIO(t, filepath.Join(e.mnt, v), "none", "write -P 0xee 0 1M")
		if got := getxattr(t, filepath.Join(e.mnt, v), "user.rowfs.group"); got != "vm" {
			t.Errorf("user.rowfs.group of %s: %q", v, got)
		}
	}
	if l := snapshotList(t, e.sock, "d2"); !slices.ContainsFunc(l.Snapshots, func(s api.Snapshot) bool { return s.Name == "before" && s.Group == "vm" }) {
		t.Errorf("snapshot list of d2 does not show the group: %+v", l.Snapshots)
	}
	mustRowctl(t, e.sock, "group", "rollback", "vm@before", "--yes")
	for i, v := range vols {
		qemuIO(t, filepath.Join(e.mnt, v), "none", fmt.Sprintf("read -P 0x%02x 0 1M", 0x10+i))
	}
	mustRowctl(t, e.sock, "group", "remove", "vm", "d3")
	if info := mustRowctl(t, e.sock, "group", "info", "vm"); !strings.Contains(info, "not restorable as a group: volume d3 is no longer in the group") {
		t.Errorf("group info after a member left:\n%s", info)
	}
	if r := rowctl(t, e.sock, "group", "rollback", "vm@before", "--yes"); r.code != 2 || !strings.Contains(r.stderr, "cannot be rolled back as a group") {
		t.Errorf("rollback of an invalid point: exit %d, %q", r.code, r.stderr)
	}
	mustRowctl(t, e.sock, "group", "add", "vm", "d3")
	if r := rowctl(t, e.sock, "group", "create", "other", "d1"); r.code != 2 || !strings.Contains(r.stderr, "one group at a time") {
		t.Errorf("a volume in two groups: exit %d, %q", r.code, r.stderr)
	}
	mustRowctl(t, e.sock, "group", "snapshot", "delete", "vm@before")
	if info := mustRowctl(t, e.sock, "group", "info", "vm"); strings.Contains(info, "before") {
		t.Errorf("group info after deleting the group snapshot:\n%s", info)
	}
}

// TestGroupSnapshotCrash: the daemon dies (kill -9 by the crash switch)
// right after a group snapshot's records are written; after a restart the
// pool checks clean and the point is on every member, restorable.
func TestGroupSnapshotCrash(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	d := e.startWith([]string{daemon.CrashEnv + "=snapshot:1"})
	for _, v := range []string{"d1", "d2", "d3"} {
		createVolume(t, e.sock, v, "16M")
	}
	mustRowctl(t, e.sock, "group", "create", "vm", "d1", "d2", "d3")
	rowctl(t, e.sock, "group", "snapshot", "vm@cut")
	if !d.diesSoon() {
		t.Fatalf("the crash switch did not fire during the group snapshot:\n%s", d.log)
	}
	d.kill9()
	e.start()
	if r := rowctl(t, e.sock, "fsck"); r.code != 0 {
		t.Fatalf("fsck after the crash: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var g api.Group
	rowctlJSON(t, e.sock, &g, "group", "info", "vm")
	if len(g.Points) != 1 || len(g.Points[0].Members) != 3 || !g.Points[0].Valid {
		t.Fatalf("after the crash the group has %+v; want the point on all three members", g.Points)
	}
}

// TestRollbackAsksBeforeDiscarding: a rollback or reset that would throw
// away writes since the last snapshot says how much and, with no terminal
// to confirm on, is refused unless --yes; nothing changes. With nothing
// to lose, or with the pool's automatic snapshot before it, it asks
// nothing.
func TestRollbackAsksBeforeDiscarding(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	e.start()
	vol := createVolume(t, e.sock, "vm", "4M")
	qemuIO(t, vol, "none", "write -P 1 0 1M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm@s1")
	qemuIO(t, vol, "none", "write -P 2 0 2M")
	// Reset keeps what it discards in an automatic snapshot by default.
	mustRowctl(t, e.sock, "pool", "set", "snapshot-before-reset=false")
	for _, args := range [][]string{{"snapshot", "rollback", "vm@s1"}, {"volume", "reset", "vm"}} {
		r := rowctl(t, e.sock, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "vm: 2 MiB written since vm@s1") || !strings.Contains(r.stderr, "pass --yes") {
			t.Errorf("rowctl %v without --yes: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	qemuIO(t, vol, "none", "read -P 2 0 2M") // nothing discarded
	r := rowctl(t, e.sock, "snapshot", "rollback", "vm@s1", "--json")
	var jerr api.Error
	if json.Unmarshal([]byte(lastLine(r.stderr)), &jerr) != nil || jerr.Code != "usage" {
		t.Errorf("--json refusal: %q", r.stderr)
	}
	mustRowctl(t, e.sock, "snapshot", "rollback", "vm@s1", "--yes")
	qemuIO(t, vol, "none", "read -P 1 0 1M", "read -P 0 1M 1M")
	// Right after the rollback the head holds nothing new: no question.
	mustRowctl(t, e.sock, "snapshot", "rollback", "vm@s1")
	// With the automatic snapshot before rollback (or reset) on, the
	// data is kept: no question.
	qemuIO(t, vol, "none", "write -P 3 0 1M")
	mustRowctl(t, e.sock, "pool", "set", "snapshot-before-rollback=true")
	mustRowctl(t, e.sock, "snapshot", "rollback", "vm@s1")
	qemuIO(t, vol, "none", "write -P 3 0 1M")
	mustRowctl(t, e.sock, "pool", "set", "snapshot-before-reset=true")
	mustRowctl(t, e.sock, "volume", "reset", "vm")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestJobWatch: `rowctl job list --watch` follows a merge job from start
// to done, one JSON object per line with --json, and ends with an error
// (exit 69) when the daemon goes away.
func TestJobWatch(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	d := e.start("--block-size", "4K")
	vol := createVolume(t, e.sock, "vm", "64M")
	qemuIO(t, vol, "none", "write -P 5 0 64M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm@big")
	qemuIO(t, vol, "none", "write -P 6 0 1M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm@next")

	watcher := exec.Command(filepath.Join(binDir, "rowctl"), "--socket", e.sock, "job", "list", "--watch", "--interval", "20ms", "--json")
	stdout, err := watcher.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var watcherErr bytes.Buffer
	watcher.Stderr = &watcherErr
	if err := watcher.Start(); err != nil {
		t.Fatal(err)
	}
	defer watcher.Process.Kill()

	var res api.DeleteSnapshotResult
	rowctlJSON(t, e.sock, &res, "snapshot", "delete", "vm@big", "--no-wait")
	if res.Job == nil {
		t.Fatalf("delete of vm@big made no job: %+v", res)
	}
	lines := bufio.NewScanner(stdout)
	var states []string
	for lines.Scan() {
		var j api.Job
		if err := json.Unmarshal(lines.Bytes(), &j); err != nil {
			t.Fatalf("watch line is not a job: %q (%v)", lines.Text(), err)
		}
		if j.ID != res.Job.ID {
			continue
		}
		states = append(states, j.State)
		if j.State != "running" {
			break
		}
	}
	if len(states) == 0 || states[len(states)-1] != "done" {
		t.Fatalf("watched states of job %d: %v\n%s", res.Job.ID, states, watcherErr.String())
	}
	d.stop()
	go io.Copy(io.Discard, stdout)
	err = watcher.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 69 {
		t.Errorf("watcher after the daemon stopped: %v, want exit 69\n%s", err, watcherErr.String())
	}
	t.Logf("job %d seen as %v", res.Job.ID, states)
}
