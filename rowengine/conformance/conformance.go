// Package conformance is the behaviour every kind of volume must show
// through rowengine's API, whatever backend keeps its data: local
// redirect-on-write volumes and RBD images run the same checks (RBD skips
// what only a snapshot tree can do). It is test support: the suites call Run
// from their own tests.
package conformance

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/rowfs/rowfs/rowengine"
)

// Backend is what a suite needs to make volumes of one kind.
type Backend struct {
	Pool *rowengine.Pool
	// Create makes an empty volume of the backend's kind.
	Create func(t *testing.T, name string, size uint64) error
	// Tree says snapshots form a tree (local volumes): a rollback keeps
	// the abandoned branch's snapshots reachable as a branch, deleting a
	// snapshot merges it into its child.
	Tree bool
	// Kind is the backend name VolumeInfo reports.
	Kind string
	// Clock is the pool's Options.Now, frozen by the cases that need many
	// operations within one second.
	Clock *rowengine.TestClock
}

const size = 8 << 20

// Run runs every check on fresh volumes; names are prefixed so that
// several runs can share a pool.
func Run(t *testing.T, b Backend) {
	prefix := fmt.Sprintf("c%d-", time.Now().UnixNano()%1e9)
	fresh := func(t *testing.T, suffix string) (string, *rowengine.Handle) {
		t.Helper()
		name := prefix + suffix
		if err := b.Create(t, name, size); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		h, err := b.Pool.OpenVolume(name, true)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		t.Cleanup(func() { h.Close() })
		return name, h
	}
	t.Run("ReadWrite", func(t *testing.T) { readWrite(t, b, fresh) })
	t.Run("ZeroRange", func(t *testing.T) { zeroRange(t, fresh) })
	t.Run("Resize", func(t *testing.T) { resize(t, b, fresh) })
	t.Run("SnapshotRollbackDelete", func(t *testing.T) { snapshots(t, b, fresh) })
	t.Run("ChainLimit", func(t *testing.T) { chainLimit(t, b, fresh) })
	t.Run("AutoNamesNeverRepeat", func(t *testing.T) { autoNames(t, b, fresh) })
	t.Run("CapacityAgrees", func(t *testing.T) { capacityAgrees(t, b, fresh) })
	t.Run("CloneFlatten", func(t *testing.T) { cloneFlatten(t, b, prefix, fresh) })
	t.Run("BadInput", func(t *testing.T) { badInput(t, b, fresh) })
}

type freshFunc func(t *testing.T, suffix string) (string, *rowengine.Handle)

func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func write(t *testing.T, h *rowengine.Handle, model []byte, off int, data []byte) {
	t.Helper()
	if n, err := h.WriteAt(data, int64(off)); err != nil || n != len(data) {
		t.Fatalf("write %d+%d: n=%d err=%v", off, len(data), n, err)
	}
	copy(model[off:], data)
}

func expect(t *testing.T, h *rowengine.Handle, model []byte, what string) {
	t.Helper()
	got := make([]byte, len(model))
	if n, err := h.ReadAt(got, 0); err != nil || n != len(model) {
		t.Fatalf("%s: read: n=%d err=%v", what, n, err)
	}
	if i := firstDiff(got, model); i >= 0 {
		t.Fatalf("%s: content differs at byte %d: got %#x, want %#x", what, i, got[i], model[i])
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func readWrite(t *testing.T, b Backend, fresh freshFunc) {
	name, h := fresh(t, "rw")
	model := make([]byte, size)
	expect(t, h, model, "new volume")
	for i, w := range []struct{ off, n int }{{0, 4096}, {100, 10}, {4095, 2}, {65536 - 7, 3 * 4096}, {size - 1, 1}, {3 << 20, 1 << 20}} {
		write(t, h, model, w.off, pattern(uint64(i+1), w.n))
	}
	expect(t, h, model, "after writes")
	if err := h.Sync(); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if _, err := h.WriteAt([]byte{1}, size); !errors.Is(err, rowengine.ErrInvalidArgument) {
		t.Fatalf("write past end: %v, want ErrInvalidArgument", err)
	}
	if n, err := h.ReadAt(make([]byte, 10), size-4); n != 4 || err != nil {
		t.Fatalf("read across end: n=%d err=%v, want 4 bytes", n, err)
	}
	if _, err := h.ReadAt(make([]byte, 1), size); err != io.EOF {
		t.Fatalf("read at end: %v, want io.EOF", err)
	}
	ro, err := b.Pool.OpenVolume(name, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.WriteAt([]byte{1}, 0); !errors.Is(err, rowengine.ErrReadOnly) {
		t.Fatalf("write to read-only handle: %v", err)
	}
	expect(t, ro, model, "second handle")
	info, err := b.Pool.Volume(name)
	if err != nil || info.Size != size || info.Backend != b.Kind || info.OpenHandles != 2 || info.Writers != 1 {
		t.Fatalf("volume info %+v, %v", info, err)
	}
}

func zeroRange(t *testing.T, fresh freshFunc) {
	_, h := fresh(t, "zero")
	model := make([]byte, size)
	write(t, h, model, 0, pattern(7, size))
	for _, z := range []struct{ off, n int }{{0, 1 << 20}, {(2 << 20) + 100, 5000}, {4 << 20, 1}, {size - 513, 513}} {
		if err := h.ZeroRange(int64(z.off), uint64(z.n)); err != nil {
			t.Fatalf("zero %d+%d: %v", z.off, z.n, err)
		}
		clear(model[z.off : z.off+z.n])
	}
	expect(t, h, model, "after zeroing")
	if err := h.ZeroRange(size-1, 2); !errors.Is(err, rowengine.ErrInvalidArgument) {
		t.Fatalf("zero past end: %v", err)
	}
}

func resize(t *testing.T, b Backend, fresh freshFunc) {
	name, h := fresh(t, "resize")
	model := pattern(3, size)
	write(t, h, make([]byte, size), 0, model)
	if _, err := b.Pool.ResizeVolume(name, size/2, false); !errors.Is(err, rowengine.ErrInvalidArgument) {
		t.Fatalf("shrink without allowShrink: %v", err)
	}
	if _, err := b.Pool.ResizeVolume(name, size/2, true); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pool.ResizeVolume(name, size, false); err != nil {
		t.Fatal(err)
	}
	if h.Size() != size {
		t.Fatalf("size after grow: %d", h.Size())
	}
	clear(model[size/2:])
	expect(t, h, model, "shrunk and grown")
}

func snapshotNames(t *testing.T, b Backend, name string) []string {
	t.Helper()
	snaps, err := b.Pool.Snapshots(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range snaps {
		if !s.Head && !s.Hidden {
			out = append(out, s.Name)
		}
	}
	return out
}

func snapshots(t *testing.T, b Backend, fresh freshFunc) {
	name, h := fresh(t, "snap")
	model := make([]byte, size)
	write(t, h, model, 0, pattern(11, 1<<20))
	s1 := slices.Clone(model)
	if _, err := b.Pool.CreateSnapshot(name, "s1", rowengine.SnapshotOptions{Description: "first"}); err != nil {
		t.Fatal(err)
	}
	write(t, h, model, 512<<10, pattern(12, 1<<20))
	s2 := slices.Clone(model)
	if _, err := b.Pool.CreateSnapshot(name, "s2", rowengine.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	write(t, h, model, 4<<20, pattern(13, 4096))
	expect(t, h, model, "head")

	info, err := b.Pool.Snapshot(name, "s1")
	if err != nil || info.Description != "first" || info.Kind != rowengine.KindManual || info.Size != size {
		t.Fatalf("snapshot info %+v, %v", info, err)
	}
	if got := snapshotNames(t, b, name); !slices.Equal(got, []string{"s1", "s2"}) {
		t.Fatalf("snapshots %v", got)
	}
	for snap, want := range map[string][]byte{"s1": s1, "s2": s2} {
		sh, err := b.Pool.OpenSnapshot(name, snap)
		if err != nil {
			t.Fatal(err)
		}
		expect(t, sh, want, "snapshot "+snap)
		if _, err := sh.WriteAt([]byte{1}, 0); !errors.Is(err, rowengine.ErrReadOnly) {
			t.Fatalf("write to a snapshot: %v", err)
		}
		sh.Close()
	}
	extents, err := b.Pool.Diff(name, "s2", "")
	if err != nil || !covers(extents, 4<<20, 4096) || covered(extents) > 4<<20 {
		t.Fatalf("diff s2..head %v, %v: want the 4 KiB at 4 MiB covered, little else", extents, err)
	}

	if _, err := b.Pool.RollbackVolume(name, "s1", false); !errors.Is(err, rowengine.ErrBusy) {
		t.Fatalf("rollback while open: %v, want ErrBusy", err)
	}
	h.Close()
	if _, err := b.Pool.RollbackVolume(name, "s1", false); err != nil {
		t.Fatal(err)
	}
	h, err = b.Pool.OpenVolume(name, true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	expect(t, h, s1, "rolled back to s1")
	if got := snapshotNames(t, b, name); !slices.Equal(got, []string{"s1", "s2"}) {
		t.Fatalf("snapshots after rollback %v: the other snapshots stay", got)
	}
	if _, err := b.Pool.DeleteSnapshot(name, "s1", rowengine.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A tree keeps a deleted snapshot that two children read, hidden: the
	// lookup then says why instead of "not found".
	if _, err := b.Pool.Snapshot(name, "s1"); !errors.Is(err, rowengine.ErrNotFound) && !(b.Tree && errors.Is(err, rowengine.ErrInvalidArgument)) {
		t.Fatalf("deleted snapshot: %v", err)
	}
	if got := snapshotNames(t, b, name); !slices.Equal(got, []string{"s2"}) {
		t.Fatalf("snapshots after deleting s1: %v", got)
	}
	waitJobs(t, b.Pool)
	sh, err := b.Pool.OpenSnapshot(name, "s2")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, sh, s2, "s2 after deleting s1")
	sh.Close()
	expect(t, h, s1, "head after deleting s1")
}

func covers(extents []rowengine.Extent, off, n uint64) bool {
	for _, e := range extents {
		if e.Offset <= off && off+n <= e.Offset+e.Length {
			return true
		}
	}
	return false
}

func covered(extents []rowengine.Extent) uint64 {
	var n uint64
	for _, e := range extents {
		n += e.Length
	}
	return n
}

func chainLimit(t *testing.T, b Backend, fresh freshFunc) {
	name, h := fresh(t, "limit")
	h.Close()
	if _, err := b.Pool.SetMaxSnapshots(name, 2); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"m1", "m2"} {
		if _, err := b.Pool.CreateSnapshot(name, s, rowengine.SnapshotOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Pool.CreateSnapshot(name, "m3", rowengine.SnapshotOptions{}); !errors.Is(err, rowengine.ErrChainLimit) {
		t.Fatalf("manual snapshot over the limit: %v, want ErrChainLimit", err)
	}
	// A limit below the chain would delete nothing and leave it over.
	if _, err := b.Pool.SetMaxSnapshots(name, 1); !errors.Is(err, rowengine.ErrInvalidArgument) {
		t.Fatalf("limit 1 under a chain of 2: %v, want ErrInvalidArgument", err)
	}
	if info, _ := b.Pool.Volume(name); info.MaxSnapshots != 2 {
		t.Fatalf("refused limit changed it to %d", info.MaxSnapshots)
	}
	if _, err := b.Pool.CreateSnapshot(name, "", rowengine.SnapshotOptions{Auto: true}); !errors.Is(err, rowengine.ErrChainLimit) {
		t.Fatalf("auto snapshot with only manual ones to rotate: %v, want ErrChainLimit", err)
	}
	if _, err := b.Pool.DeleteSnapshot(name, "m2", rowengine.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, b.Pool)
	for i := range 3 {
		if _, err := b.Pool.CreateSnapshot(name, fmt.Sprintf("auto-%d", i), rowengine.SnapshotOptions{Auto: true}); err != nil {
			t.Fatalf("auto snapshot %d: %v", i, err)
		}
		waitJobs(t, b.Pool)
	}
	if got := snapshotNames(t, b, name); !slices.Equal(got, []string{"m1", "auto-2"}) {
		t.Fatalf("after rotation: %v, want [m1 auto-2]", got)
	}
}

// autoNames: ten automatic snapshots in one second at a chain limit of 3
// all succeed, and no name repeats across the volume's history, although
// the limit rotates the oldest out.
func autoNames(t *testing.T, b Backend, fresh freshFunc) {
	name, h := fresh(t, "autonames")
	h.Close()
	if _, err := b.Pool.SetMaxSnapshots(name, 3); err != nil {
		t.Fatal(err)
	}
	if b.Clock == nil {
		t.Fatal("the suite needs the pool's clock (Backend.Clock)")
	}
	b.Clock.Freeze(time.Now().Truncate(time.Second))
	defer b.Clock.Thaw()
	given := map[string]int{}
	for i := range 10 {
		s, err := b.Pool.CreateSnapshot(name, "", rowengine.SnapshotOptions{Auto: true})
		if err != nil {
			t.Fatalf("automatic snapshot %d: %v", i, err)
		}
		if prev, ok := given[s.Name]; ok {
			t.Fatalf("automatic snapshot %d is named %q, the name snapshot %d had", i, s.Name, prev)
		}
		given[s.Name] = i
		waitJobs(t, b.Pool)
	}
	if got := snapshotNames(t, b, name); len(got) != 3 {
		t.Errorf("after 10 automatic snapshots at a limit of 3: %v", got)
	}
}

// capacityAgrees: write 1 MiB, snapshot, rewrite it, snapshot: each
// snapshot holds its 1 MiB, and the volume's snapshot bytes are their sum
// (RBD said 1 MiB for the two), with a block size to show.
func capacityAgrees(t *testing.T, b Backend, fresh freshFunc) {
	name, h := fresh(t, "capacity")
	model := make([]byte, size)
	for i, snap := range []string{"first", "second"} {
		write(t, h, model, 0, pattern(uint64(40+i), 1<<20))
		if err := h.Sync(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Pool.CreateSnapshot(name, snap, rowengine.SnapshotOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	snaps, err := b.Pool.Snapshots(name)
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, s := range snaps {
		if !s.Head {
			if s.OwnBytes < 1<<20 {
				t.Errorf("snapshot %s owns %d bytes, want at least 1 MiB", s.Name, s.OwnBytes)
			}
			sum += s.OwnBytes
		}
	}
	info, err := b.Pool.VolumeDetail(name)
	if err != nil {
		t.Fatal(err)
	}
	if info.SnapshotBytes != sum || info.TotalBytes != info.SnapshotBytes+info.UsedBytes {
		t.Errorf("volume says snapshots %d, head %d, total %d; its snapshots own %d in all", info.SnapshotBytes, info.UsedBytes, info.TotalBytes, sum)
	}
	if info.BlockSize == 0 {
		t.Errorf("block size 0")
	}
}

func cloneFlatten(t *testing.T, b Backend, prefix string, fresh freshFunc) {
	name, h := fresh(t, "origin")
	model := make([]byte, size)
	write(t, h, model, 1<<20, pattern(21, 2<<20))
	if _, err := b.Pool.CreateSnapshot(name, "base", rowengine.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	base := slices.Clone(model)
	write(t, h, model, 1<<20, pattern(22, 4096))
	cloneName := prefix + "clone"
	info, err := b.Pool.CloneVolume(name, "base", cloneName)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size {
		t.Fatalf("clone size %d", info.Size)
	}
	if info, err := b.Pool.VolumeDetail(cloneName); err != nil || info.Parent == "" {
		t.Fatalf("clone has no parent: %+v, %v", info, err)
	}
	c, err := b.Pool.OpenVolume(cloneName, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expect(t, c, base, "clone")
	cloneModel := slices.Clone(base)
	write(t, c, cloneModel, 0, pattern(23, 8192))
	expect(t, h, model, "origin after the clone's write")
	if _, err := b.Pool.DeleteSnapshot(name, "base", rowengine.DeleteOptions{}); b.Kind == rowengine.BackendRBD && !errors.Is(err, rowengine.ErrBusy) {
		t.Fatalf("deleting a snapshot with clones: %v, want ErrBusy", err)
	}
	job, err := b.Pool.FlattenVolume(cloneName)
	if err != nil {
		t.Fatal(err)
	}
	if job, err = b.Pool.WaitJob(t.Context(), job.ID); err != nil || job.State != rowengine.JobDone {
		t.Fatalf("flatten job %+v, %v", job, err)
	}
	if info, err := b.Pool.VolumeDetail(cloneName); err != nil || info.Parent != "" {
		t.Fatalf("flattened clone still has a parent: %+v, %v", info, err)
	}
	expect(t, c, cloneModel, "flattened clone")
	if b.Kind == rowengine.BackendRBD {
		if _, err := b.Pool.DeleteSnapshot(name, "base", rowengine.DeleteOptions{}); err != nil {
			t.Fatalf("delete the snapshot once its clone is flat: %v", err)
		}
	}
	if _, err := b.Pool.FlattenVolume(cloneName); b.Kind == rowengine.BackendRBD && !errors.Is(err, rowengine.ErrInvalidArgument) {
		t.Fatalf("flatten of a volume that is not a clone: %v", err)
	}
	waitJobs(t, b.Pool)
}

func badInput(t *testing.T, b Backend, fresh freshFunc) {
	name, h := fresh(t, "bad")
	defer h.Close()
	for what, err := range map[string]error{
		"snapshot of a missing volume": second(b.Pool.CreateSnapshot(name+"-missing", "s1", rowengine.SnapshotOptions{})),
		"bad snapshot name":            second(b.Pool.CreateSnapshot(name, "a/b", rowengine.SnapshotOptions{})),
		"manual name in auto space":    second(b.Pool.CreateSnapshot(name, "auto-x", rowengine.SnapshotOptions{})),
		"rollback to a missing one":    second(b.Pool.RollbackVolume(name, "nope", true)),
		"delete a missing one":         second(b.Pool.DeleteSnapshot(name, "nope", rowengine.DeleteOptions{})),
		"clone from a missing one":     second(b.Pool.CloneVolume(name, "nope", name+"-c")),
		"clone onto an existing name":  second(b.Pool.CloneVolume(name, "nope", name)),
	} {
		if err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	if err := b.Create(t, name, size); !errors.Is(err, rowengine.ErrExists) {
		t.Fatalf("second volume of the same name: %v, want ErrExists", err)
	}
	if got := snapshotNames(t, b, name); len(got) != 0 {
		t.Fatalf("bad input left snapshots: %v", got)
	}
}

func second[T any](_ T, err error) error { return err }

func waitJobs(t *testing.T, p *rowengine.Pool) {
	t.Helper()
	for _, j := range p.Jobs() {
		if j.State == rowengine.JobRunning {
			if _, err := p.WaitJob(t.Context(), j.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}
