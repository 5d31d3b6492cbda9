package rowengine

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupSnapshotOneCut: three writers, one a volume, each writing
// numbered records in order; the record numbers come from one counter, and
// each writer notes the counter once its write completed. For every group
// snapshot taken meanwhile: no record that completed before another record
// was even numbered may be missing while that other one is present, on
// any member (one cut across the volumes).
func TestGroupSnapshotOneCut(t *testing.T) {
	p := TestPool(t, Options{})
	vols := []string{"d1", "d2", "d3"}
	const slots = 32768
	handles := map[string]*Handle{}
	for _, v := range vols {
		handles[v] = mustCreate(t, p, v, slots*512)
	}
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	if _, err := p.CreateGroup("vm", vols, GroupHooks{}); err != nil {
		t.Fatal(err)
	}
	var counter atomic.Uint64
	completed := make([][]uint64, len(vols)) // per writer, per slot: counter after completion
	numbers := make([][]uint64, len(vols))   // per writer, per slot: the record's number
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w, v := range vols {
		completed[w], numbers[w] = make([]uint64, slots), make([]uint64, slots)
		wg.Go(func() {
			rec := make([]byte, 512)
			for slot := range slots {
				select {
				case <-stop:
					return
				default:
				}
				n := counter.Add(1)
				binary.BigEndian.PutUint64(rec, n)
				if _, err := handles[v].WriteAt(rec, int64(slot)*512); err != nil {
					t.Error(err)
					return
				}
				numbers[w][slot], completed[w][slot] = n, counter.Load()
			}
		})
	}
	var points []string
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 8 {
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Microsecond) // let the writers get on
		name := "p" + string(rune('a'+i))
		if _, err := p.GroupSnapshot("vm", name, SnapshotOptions{}); err != nil {
			t.Fatal(err)
		}
		points = append(points, name)
	}
	close(stop)
	wg.Wait()
	for _, pt := range points {
		minMissing, maxPresent := ^uint64(0), uint64(0)
		for w, v := range vols {
			h, err := p.OpenSnapshot(v, pt)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, slots*512)
			h.ReadAt(buf, 0)
			h.Close()
			for slot := range slots {
				got := binary.BigEndian.Uint64(buf[slot*512:])
				switch {
				case numbers[w][slot] == 0:
				case got == numbers[w][slot]:
					maxPresent = max(maxPresent, numbers[w][slot])
				default:
					minMissing = min(minMissing, completed[w][slot])
				}
			}
		}
		if minMissing < maxPresent {
			t.Errorf("group snapshot %s: a record completed when the counter was %d is missing, while record %d (numbered later) is in it", pt, minMissing, maxPresent)
		}
	}
	for _, v := range vols {
		if s, err := p.Snapshot(v, points[0]); err != nil || s.Group != "vm" {
			t.Errorf("%s@%s: group %q, %v", v, points[0], s.Group, err)
		}
	}
}

// TestGroupValidity: ZStack's rules, case by case, and group rollback.
func TestGroupValidity(t *testing.T) {
	p := TestPool(t, Options{})
	for _, v := range []string{"a", "b", "c", "x"} {
		h := mustCreate(t, p, v, 1<<20)
		h.WriteAt([]byte("before "+v), 0)
		h.Close()
	}
	if _, err := p.CreateGroup("vm", []string{"a", "b", "c"}, GroupHooks{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateGroup("other", []string{"a"}, GroupHooks{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a volume in two groups: %v", err)
	}
	if _, err := p.CreateGroup("ghosts", []string{"nope"}, GroupHooks{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("a group of a missing volume: %v", err)
	}
	if _, err := p.GroupSnapshot("vm", "p1", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	valid := func(want bool, what string) {
		t.Helper()
		pt, err := p.groupPoint("vm", "p1")
		if err != nil {
			t.Fatal(err)
		}
		if pt.Valid != want {
			t.Errorf("%s: valid %v (%s), want %v", what, pt.Valid, pt.Why, want)
		}
	}
	valid(true, "just taken")
	for _, v := range []string{"a", "b", "c"} {
		h, _ := p.OpenVolume(v, true)
		h.WriteAt([]byte("after!!"), 0)
		h.Close()
	}
	if _, err := p.RollbackGroup("vm", "p1", false); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"a", "b", "c"} {
		h, _ := p.OpenVolume(v, false)
		got := make([]byte, 8)
		h.ReadAt(got, 0)
		h.Close()
		if string(got) != "before "+v {
			t.Errorf("%s after the group rollback reads %q", v, got)
		}
	}
	if _, err := p.ChangeGroup("vm", []string{"c"}, false); err != nil {
		t.Fatal(err)
	}
	valid(false, "a member removed")
	if _, err := p.RollbackGroup("vm", "p1", false); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("rollback of an invalid point: %v", err)
	}
	if _, err := p.ChangeGroup("vm", []string{"c"}, true); err != nil {
		t.Fatal(err)
	}
	valid(true, "removed and added back")
	if _, err := p.ChangeGroup("vm", []string{"x"}, true); err != nil {
		t.Fatal(err)
	}
	valid(false, "a volume joined after the point")
	if _, err := p.ChangeGroup("vm", []string{"x"}, false); err != nil {
		t.Fatal(err)
	}
	valid(true, "the new volume left again")
	if _, err := p.DeleteSnapshot("b", "p1", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	valid(false, "a member snapshot deleted")
	if _, err := p.DeleteGroupSnapshot("vm", "p1"); err != nil {
		t.Fatal(err)
	}
	WaitJobs(t, p)
	if points, _ := p.GroupPoints("vm"); len(points) != 0 {
		t.Errorf("points after deleting the group snapshot: %+v", points)
	}
	// An automatic group snapshot: one name, not used on any member.
	infos, err := p.GroupSnapshot("vm", "", SnapshotOptions{Auto: true})
	if err != nil || len(infos) != 3 || infos[0].Name != infos[2].Name {
		t.Fatalf("automatic group snapshot: %+v, %v", infos, err)
	}
	// A name taken on one member refuses the whole group snapshot.
	mustSnapshot(t, p, "c", "taken")
	if _, err := p.GroupSnapshot("vm", "taken", SnapshotOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("group snapshot with a name a member has: %v", err)
	}
	if _, err := p.Snapshot("a", "taken"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused group snapshot left a member snapshot: %v", err)
	}
	if _, err := p.DeleteVolume("c", false); err != nil {
		t.Fatal(err)
	}
	if g, _ := p.Group("vm"); !slices.Equal(g.Volumes, []string{"a", "b"}) {
		t.Errorf("after deleting c the group is %v", g.Volumes)
	}
}
