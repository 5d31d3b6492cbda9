//go:build ceph

package rbd

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/conformance"
)

// testCluster returns the cluster make test started (CEPH_CONF). Without
// one the test is skipped, loudly, unless ROWFS_REQUIRE_CEPH says the
// cluster must be there (make test sets it).
func testCluster(t *testing.T) rowengine.RBDCluster {
	t.Helper()
	conf := os.Getenv("CEPH_CONF")
	if conf == "" {
		if os.Getenv("ROWFS_REQUIRE_CEPH") != "" {
			t.Fatal("CEPH_CONF is not set but ROWFS_REQUIRE_CEPH is: the test cluster did not start")
		}
		t.Skip("SKIPPED: no Ceph cluster (set CEPH_CONF, or run make test, which starts one)")
	}
	return New(Options{Conf: conf, Timeout: 20 * time.Second})
}

func TestRBDVolumesConform(t *testing.T) {
	c := testCluster(t)
	clock := &rowengine.TestClock{}
	p := rowengine.TestPool(t, rowengine.Options{RBD: c, Now: clock.Now})
	run := time.Now().UnixNano() % 1e9
	conformance.Run(t, conformance.Backend{
		Pool: p, Kind: rowengine.BackendRBD, Clock: clock,
		Create: func(t *testing.T, name string, size uint64) error {
			_, err := p.CreateRBDVolume(name, "rbd", fmt.Sprintf("%s-%d", name, run), size)
			return err
		},
	})
}

// TestPoolSyncFlushesRBD: a barrier without a handle (an fsync the kernel
// sends with no file handle) flushes RBD volumes too: what was written
// before it is in the cluster, where another client reads it, not in
// librbd's writeback cache.
func TestPoolSyncFlushesRBD(t *testing.T) {
	testCluster(t)
	// This client caches writes until a flush (librbd's default policy,
	// writearound, sends them at once, and the test could not tell).
	conf, err := os.ReadFile(os.Getenv("CEPH_CONF"))
	if err != nil {
		t.Fatal(err)
	}
	cachingConf := filepath.Join(t.TempDir(), "ceph.conf")
	conf = append(conf, "\n[client]\nrbd cache = true\nrbd cache policy = writeback\nrbd cache writethrough until flush = false\nrbd cache max dirty age = 60\n"...)
	if err := os.WriteFile(cachingConf, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	c := New(Options{Conf: cachingConf, Timeout: 20 * time.Second})
	p := rowengine.TestPool(t, rowengine.Options{RBD: c})
	image := fmt.Sprintf("sync-%d", time.Now().UnixNano()%1e9)
	if _, err := p.CreateRBDVolume("sync", "rbd", image, 8<<20); err != nil {
		t.Fatal(err)
	}
	h, err := p.OpenVolume("sync", true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	if _, err := h.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	other := New(Options{Conf: os.Getenv("CEPH_CONF"), Timeout: 20 * time.Second})
	img, err := other.OpenSnapshot("rbd", image, "")
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	got := make([]byte, len(data))
	if _, err := img.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("another client does not read what was written before Pool.Sync: the RBD image was not flushed")
	}
}

// TestRBDGroupOnCluster: a group of two RBD volumes makes an RBD group
// snapshot (the rbd CLI lists it) and rolls both back.
func TestRBDGroupOnCluster(t *testing.T) {
	c := testCluster(t)
	p := rowengine.TestPool(t, rowengine.Options{RBD: c})
	run := time.Now().UnixNano() % 1e9
	group := fmt.Sprintf("g%d", run)
	for i, v := range []string{"r1", "r2"} {
		image := fmt.Sprintf("%s-%s", group, v)
		if _, err := p.CreateRBDVolume(v, "rbd", image, 8<<20); err != nil {
			t.Fatal(err)
		}
		h, err := p.OpenVolume(v, true)
		if err != nil {
			t.Fatal(err)
		}
		h.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 4096), 0)
		h.Close()
	}
	if _, err := p.CreateGroup(group, []string{"r1", "r2"}, rowengine.GroupHooks{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GroupSnapshot(group, "cut", rowengine.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("rbd", "-c", os.Getenv("CEPH_CONF"), "group", "snap", "ls", "rbd/rowfs-"+group).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("cut")) {
		t.Fatalf("rbd group snap ls: %v\n%s", err, out)
	}
	for _, v := range []string{"r1", "r2"} {
		h, _ := p.OpenVolume(v, true)
		h.WriteAt(bytes.Repeat([]byte{0xee}, 4096), 0)
		h.Close()
	}
	if _, err := p.RollbackGroup(group, "cut", false); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"r1", "r2"} {
		h, _ := p.OpenVolume(v, false)
		got := make([]byte, 4096)
		h.ReadAt(got, 0)
		h.Close()
		if !bytes.Equal(got, bytes.Repeat([]byte{byte(i + 1)}, 4096)) {
			t.Errorf("%s after the group rollback reads %#x…", v, got[0])
		}
	}
	if _, err := p.DeleteGroupSnapshot(group, "cut"); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteGroup(group); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"r1", "r2"} {
		if _, err := p.DeleteVolume(v, false); err != nil {
			t.Errorf("delete %s: %v", v, err)
		}
	}
}

// TestMixedGroupOnCluster: a group of a local and an RBD volume, with a
// freeze hook, takes a local cut and an RBD group snapshot of one name
// (the rbd CLI lists it) and rolls both back.
func TestMixedGroupOnCluster(t *testing.T) {
	c := testCluster(t)
	p := rowengine.TestPool(t, rowengine.Options{RBD: c})
	run := time.Now().UnixNano() % 1e9
	group := fmt.Sprintf("m%d", run)
	if _, err := p.CreateRBDVolume("r", "rbd", group+"-r", 8<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateVolume("l", 8<<20); err != nil {
		t.Fatal(err)
	}
	fill := func(b byte) {
		for _, v := range []string{"r", "l"} {
			h, err := p.OpenVolume(v, true)
			if err != nil {
				t.Fatal(err)
			}
			h.WriteAt(bytes.Repeat([]byte{b}, 4096), 0)
			h.Close()
		}
	}
	fill(1)
	if _, err := p.CreateGroup(group, []string{"r", "l"}, rowengine.GroupHooks{FreezeCmd: "true", ThawCmd: "true"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GroupSnapshot(group, "cut", rowengine.SnapshotOptions{Consistency: "frozen"}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("rbd", "-c", os.Getenv("CEPH_CONF"), "group", "snap", "ls", "rbd/rowfs-"+group).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("cut")) {
		t.Fatalf("rbd group snap ls: %v\n%s", err, out)
	}
	fill(0xee)
	if _, err := p.RollbackGroup(group, "cut", false); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"r", "l"} {
		h, _ := p.OpenVolume(v, false)
		got := make([]byte, 4096)
		h.ReadAt(got, 0)
		h.Close()
		if !bytes.Equal(got, bytes.Repeat([]byte{1}, 4096)) {
			t.Errorf("%s after the group rollback reads %#x…", v, got[0])
		}
	}
	if _, err := p.DeleteGroupSnapshot(group, "cut"); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteGroup(group); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DeleteVolume("r", false); err != nil {
		t.Errorf("delete r: %v", err)
	}
}
