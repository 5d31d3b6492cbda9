package rowengine

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// memRBDPool is a pool whose RBD volumes live in an in-memory cluster.
func memRBDPool(t *testing.T) (*Pool, *MemoryRBD) {
	t.Helper()
	c := NewMemoryRBD()
	return TestPool(t, Options{RBD: c}), c
}

// TestPoolSyncFlushesRBDImages: a barrier without a handle (an fsync the
// kernel sends with no file handle) flushes RBD volumes too: another
// client reads what was written before it.
func TestPoolSyncFlushesRBDImages(t *testing.T) {
	p, c := memRBDPool(t)
	if _, err := p.CreateRBDVolume("r", "rbd", "r-img", 1<<20); err != nil {
		t.Fatal(err)
	}
	h, err := p.OpenVolume("r", true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	data := bytes.Repeat([]byte{7}, 8192)
	if _, err := h.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	other, err := c.Client().OpenSnapshot("rbd", "r-img", "")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	got := make([]byte, len(data))
	if other.ReadAt(got, 4096); bytes.Equal(got, data) {
		t.Fatal("another client reads unflushed writes: the memory cluster does not model librbd's cache")
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	if other.ReadAt(got, 4096); !bytes.Equal(got, data) {
		t.Fatal("Pool.Sync did not flush the RBD image: another client does not read the write")
	}
}

// TestRBDRollbackRefusedWhileAnotherClientWrites: rollback is refused while
// another client (another host) holds the image's exclusive lock, naming
// it, and allowed once that client closes the image.
func TestRBDRollbackRefusedWhileAnotherClientWrites(t *testing.T) {
	p, c := memRBDPool(t)
	if _, err := p.CreateRBDVolume("r", "rbd", "r-img", 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateSnapshot("r", "s1", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	img, err := c.Client().OpenImage("rbd", "r-img")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte("other host"), 0); err != nil {
		t.Fatal(err)
	}
	_, err = p.RollbackVolume("r", "s1", false)
	if !errors.Is(err, ErrBusy) || !bytes.Contains([]byte(err.Error()), []byte("client.2")) {
		t.Fatalf("rollback under another client's lock: %v, want ErrBusy naming client.2", err)
	}
	img.Close()
	if _, err := p.RollbackVolume("r", "s1", false); err != nil {
		t.Fatalf("rollback once the other client closed: %v", err)
	}
}

// TestRBDVolumeLifecycle: create, clone, flatten, detach, attach, reopen
// and delete RBD volumes, with the refusals on the way.
func TestRBDVolumeLifecycle(t *testing.T) {
	c := NewMemoryRBD()
	dir := t.TempDir()
	opts := Options{RBD: c, CommitInterval: 1 << 40, CloseGrace: 1}
	p, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateRBDVolume("r", "rbd", "", 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateRBDVolume("r", "rbd", "other", 1<<20); !errors.Is(err, ErrExists) {
		t.Errorf("second volume named r: %v, want ErrExists", err)
	}
	if _, err := p.CreateRBDVolume("x", "nopool", "", 1<<20); !errors.Is(err, ErrNotFound) {
		t.Errorf("volume in a missing Ceph pool: %v, want ErrNotFound", err)
	}
	h, err := p.OpenVolume("r", true)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("rbd!"), 1024)
	if _, err := h.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := p.CreateSnapshot("r", "base", SnapshotOptions{Description: "before the clone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CloneVolume("r", "base", "copy"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DeleteVolume("r", false); !errors.Is(err, ErrBusy) {
		t.Errorf("delete of a volume whose snapshot has a clone: %v, want ErrBusy", err)
	}
	job, err := p.FlattenVolume("copy")
	if err != nil {
		t.Fatal(err)
	}
	WaitJobs(t, p)
	if info, _ := p.VolumeDetail("copy"); info.Parent != "" {
		t.Errorf("clone still has parent %q after flatten job %d", info.Parent, job.ID)
	}
	if err := p.DetachVolume("copy", false); err != nil {
		t.Fatal(err)
	}
	if _, err := p.AttachRBDVolume("again", "rbd", "copy"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	// The records survive a restart; sizes are learned from the cluster.
	if p, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h, err = p.OpenVolume("again", false)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := h.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the flattened clone, attached again after a restart, reads %q…, %v", got[:8], err)
	}
	if _, err := p.DeleteVolume("again", false); !errors.Is(err, ErrBusy) {
		t.Errorf("delete of an open volume: %v, want ErrBusy", err)
	}
	h.Close()
	for _, name := range []string{"again", "r"} {
		if _, err := p.DeleteVolume(name, false); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
	if vols := p.Volumes(); len(vols) != 0 {
		t.Errorf("volumes left: %v", vols)
	}
	if err := c.RemoveImage("rbd", "r"); !errors.Is(err, ErrNotFound) {
		t.Errorf("image of the deleted volume: %v, want it gone", err)
	}
	MustCheck(t, p)
}

// TestRBDReset: a plain RBD volume resets to zeros, after an automatic
// snapshot keeping what it held; an RBD clone is refused, saying why.
func TestRBDReset(t *testing.T) {
	p, _ := memRBDPool(t)
	if _, err := p.CreateRBDVolume("r", "rbd", "r-img", 1<<20); err != nil {
		t.Fatal(err)
	}
	h, _ := p.OpenVolume("r", true)
	h.WriteAt([]byte("rbd data"), 0)
	h.Close()
	if _, err := p.ResetVolume("r", false); err != nil {
		t.Fatal(err)
	}
	h, _ = p.OpenVolume("r", false)
	got := make([]byte, 8)
	h.ReadAt(got, 0)
	h.Close()
	if !bytes.Equal(got, make([]byte, 8)) {
		t.Errorf("reset RBD volume reads %q", got)
	}
	snaps, _ := p.Snapshots("r")
	if len(snaps) != 2 || !bytes.HasPrefix([]byte(snaps[0].Name), []byte("auto-pre-reset-")) {
		t.Fatalf("snapshots after the reset: %+v", snaps)
	}
	if _, err := p.CloneVolume("r", snaps[0].Name, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ResetVolume("c", false); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("reset of an RBD clone: %v, want ErrInvalidArgument", err)
	}
	if snaps, _ := p.Snapshots("c"); len(snaps) != 1 {
		t.Errorf("a refused reset took a snapshot: %+v", snaps)
	}
	if _, err := p.Diff("r", snaps[0].Name, ""); err != nil {
		t.Errorf("diff: %v", err)
	}
}

// TestRBDGroup: a group of RBD volumes uses RBD's group snapshots: one
// snapshot of both, a rollback of both, deletion; a group mixing local and
// RBD volumes is refused.
func TestRBDGroup(t *testing.T) {
	p, c := memRBDPool(t)
	for _, v := range []string{"r1", "r2"} {
		if _, err := p.CreateRBDVolume(v, "rbd", v+"-img", 1<<20); err != nil {
			t.Fatal(err)
		}
		h, _ := p.OpenVolume(v, true)
		h.WriteAt([]byte("before "+v), 0)
		h.Close()
	}
	mustCreate(t, p, "local", 1<<20).Close()
	if _, err := p.CreateGroup("mixed", []string{"r1", "local"}, GroupHooks{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a group of local and RBD volumes: %v", err)
	}
	if _, err := p.CreateGroup("vm", []string{"r1", "r2"}, GroupHooks{}); err != nil {
		t.Fatal(err)
	}
	if names, err := c.GroupSnapshots("rbd", "rowfs-vm"); err != nil || len(names) != 0 {
		t.Fatalf("the RBD group behind it: %v, %v", names, err)
	}
	if _, err := p.GroupSnapshot("vm", "cut", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if names, _ := c.GroupSnapshots("rbd", "rowfs-vm"); !slices.Equal(names, []string{"cut"}) {
		t.Errorf("RBD group snapshots %v", names)
	}
	for _, v := range []string{"r1", "r2"} {
		h, _ := p.OpenVolume(v, true)
		h.WriteAt([]byte("after!!!!"), 0)
		h.Close()
	}
	if _, err := p.RollbackGroup("vm", "cut", false); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"r1", "r2"} {
		h, _ := p.OpenVolume(v, false)
		got := make([]byte, 9)
		h.ReadAt(got, 0)
		h.Close()
		if string(got) != "before "+v {
			t.Errorf("%s after the group rollback: %q", v, got)
		}
	}
	if _, err := p.DeleteVolume("r1", false); !errors.Is(err, ErrBusy) {
		t.Errorf("delete of an RBD volume in a group: %v", err)
	}
	if _, err := p.DeleteGroupSnapshot("vm", "cut"); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteGroup("vm"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GroupSnapshots("rbd", "rowfs-vm"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the RBD group after the group's delete: %v", err)
	}
}

// TestMixedGroup: a group of local and RBD volumes needs a freeze hook
// (the daemon holds it around the two cuts) and cannot lose it; then one
// point is a local cut and an RBD group snapshot of one name, valid only
// while both halves are, rolled back and deleted together. A point the
// RBD half refuses leaves no local member snapshot behind.
func TestMixedGroup(t *testing.T) {
	p, c := memRBDPool(t)
	if _, err := p.CreateRBDVolume("r1", "rbd", "r1-img", 1<<20); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, p, "l1", 1<<20).Close()
	mustCreate(t, p, "l2", 1<<20).Close()
	write := func(v, s string) {
		h, err := p.OpenVolume(v, true)
		if err != nil {
			t.Fatal(err)
		}
		h.WriteAt([]byte(s), 0)
		h.Close()
	}
	read := func(v string) string {
		h, _ := p.OpenVolume(v, false)
		defer h.Close()
		got := make([]byte, 9)
		h.ReadAt(got, 0)
		return string(got)
	}
	for _, v := range []string{"r1", "l1", "l2"} {
		write(v, "before "+v)
	}
	if _, err := p.CreateGroup("vm", []string{"r1", "l1"}, GroupHooks{}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "freeze hook") {
		t.Fatalf("a mixed group without a hook: %v", err)
	}
	if _, err := p.CreateGroup("local", []string{"l2"}, GroupHooks{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ChangeGroup("local", []string{"r1"}, true); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("adding an RBD volume to a local group without a hook: %v", err)
	}
	hooks := GroupHooks{FreezeCmd: "true", ThawCmd: "true"}
	if _, err := p.CreateGroup("vm", []string{"r1", "l1"}, hooks); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SetGroupHooks("vm", GroupHooks{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("clearing the hook of a mixed group: %v", err)
	}
	infos, err := p.GroupSnapshot("vm", "cut", SnapshotOptions{Consistency: "frozen"})
	if err != nil || len(infos) != 2 {
		t.Fatalf("mixed group snapshot: %+v, %v", infos, err)
	}
	if names, _ := c.GroupSnapshots("rbd", "rowfs-vm"); !slices.Equal(names, []string{"cut"}) {
		t.Errorf("RBD group snapshots %v", names)
	}
	if s, err := p.Snapshot("l1", "cut"); err != nil || s.Group != "vm" {
		t.Errorf("l1@cut: %+v, %v", s, err)
	}
	points, err := p.GroupPoints("vm")
	if err != nil || len(points) != 1 || !points[0].Valid || !slices.Equal(points[0].Members, []string{"l1", "r1"}) {
		t.Fatalf("points: %+v, %v", points, err)
	}
	auto, err := p.GroupSnapshot("vm", "", SnapshotOptions{Auto: true})
	if err != nil || auto[0].Name != auto[1].Name {
		t.Fatalf("automatic mixed group snapshot: %+v, %v", auto, err)
	}
	write("r1", "after!!!!")
	write("l1", "after!!!!")
	if _, err := p.RollbackGroup("vm", "cut", false); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"r1", "l1"} {
		if got := read(v); got != "before "+v {
			t.Errorf("%s after the group rollback: %q", v, got)
		}
	}
	// A name the RBD half has already: refused, and no local snapshot made.
	if err := c.GroupSnapshot("rbd", "rowfs-vm", "taken"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GroupSnapshot("vm", "taken", SnapshotOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("a name the RBD half has: %v", err)
	}
	if _, err := p.Snapshot("l1", "taken"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused mixed snapshot left l1@taken: %v", err)
	}
	if pt, _ := p.groupPoint("vm", "taken"); pt.Valid {
		t.Errorf("a point only the RBD half has is valid: %+v", pt)
	}
	// Deleting the local member's snapshot alone invalidates the point.
	if _, err := p.DeleteSnapshot("l1", auto[0].Name, DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if pt, _ := p.groupPoint("vm", auto[0].Name); pt.Valid {
		t.Errorf("a point missing its local member snapshot is valid: %+v", pt)
	}
	if _, err := p.DeleteGroupSnapshot("vm", "cut"); err != nil {
		t.Fatal(err)
	}
	WaitJobs(t, p)
	if names, _ := c.GroupSnapshots("rbd", "rowfs-vm"); slices.Contains(names, "cut") {
		t.Errorf("the RBD half of the deleted point stays: %v", names)
	}
	if _, err := p.Snapshot("l1", "cut"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the local half of the deleted point stays: %v", err)
	}
	if _, err := p.ChangeGroup("vm", []string{"r1"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GroupSnapshots("rbd", "rowfs-vm"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the RBD group after its last RBD member left: %v", err)
	}
	MustCheck(t, p)
}

// countingRBD counts the opens the engine asks of its cluster.
type countingRBD struct {
	*MemoryRBD
	heads, views, snaps atomic.Int64
}

func (c *countingRBD) OpenImage(pool, image string) (RBDImage, error) {
	c.heads.Add(1)
	return c.MemoryRBD.OpenImage(pool, image)
}

func (c *countingRBD) OpenSnapshot(pool, image, snap string) (RBDImage, error) {
	if snap == "" {
		c.views.Add(1)
	} else {
		c.snaps.Add(1)
	}
	return c.MemoryRBD.OpenSnapshot(pool, image, snap)
}

// TestRBDInfoOpensLittle: a volume's details (its xattrs, rowctl volume
// info) open the head read-only once, and each snapshot only the first
// time its own bytes are needed, or when the one before it went; the
// figures stay what a fresh computation gives.
func TestRBDInfoOpensLittle(t *testing.T) {
	c := &countingRBD{MemoryRBD: NewMemoryRBD()}
	p := TestPool(t, Options{RBD: c})
	if _, err := p.CreateRBDVolume("r", "rbd", "", 1<<20); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"s1", "s2", "s3"} {
		h, err := p.OpenVolume("r", true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, (i+1)*8192), int64(i)*65536); err != nil {
			t.Fatal(err)
		}
		h.Close()
		if _, err := p.CreateSnapshot("r", name, SnapshotOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	detail := func() VolumeInfo {
		t.Helper()
		c.heads.Store(0)
		c.views.Store(0)
		c.snaps.Store(0)
		info, err := p.VolumeDetail("r")
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	opens := func(step string, views, snaps int64) {
		t.Helper()
		if c.heads.Load() != 0 || c.views.Load() != views || c.snaps.Load() != snaps {
			t.Fatalf("%s: %d read-write opens, %d read-only heads, %d snapshots; want 0, %d, %d",
				step, c.heads.Load(), c.views.Load(), c.snaps.Load(), views, snaps)
		}
	}
	first := detail()
	opens("first detail", 1, 3)
	if first.Snapshots != 3 || first.SnapshotBytes != (1+2+3)*8192 {
		t.Fatalf("detail %+v: want 3 snapshots holding %d bytes", first, (1+2+3)*8192)
	}
	if again := detail(); again.SnapshotBytes != first.SnapshotBytes || again.TotalBytes != first.TotalBytes {
		t.Fatalf("cached detail %+v differs from the first %+v", again, first)
	}
	opens("second detail", 1, 0)
	if _, err := p.DeleteSnapshot("r", "s2", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// s3 now follows s1: its own bytes are s2's and its own.
	if got := detail(); got.Snapshots != 2 || got.SnapshotBytes != (1+2+3)*8192 {
		t.Fatalf("after deleting s2: %+v, want 2 snapshots holding %d bytes", got, (1+2+3)*8192)
	}
	opens("detail after a delete", 1, 1)
	// With the volume open, its head serves the details.
	h, err := p.OpenVolume("r", false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	detail()
	opens("detail of an open volume", 0, 0)
}
