package rowengine

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

var (
	modelSteps = flag.Int("model.steps", 100000, "steps of the randomized model test")
	modelSeed  = flag.Uint64("model.seed", 0, "seed of the randomized model test (0: from the clock)")
)

// The naive reference: every volume and snapshot is a byte slice, and the
// tree is parent pointers between snapshots.
type (
	modelSnap struct {
		vol    *modelVol
		name   string
		auto   bool
		data   []byte
		parent *modelSnap
		gone   bool
	}
	modelVol struct {
		name       string
		data       []byte
		headParent *modelSnap
	}
	model struct {
		vols  map[string]*modelVol
		snaps []*modelSnap // every live snapshot
	}
)

func (m *model) snapsOf(v *modelVol) []*modelSnap {
	var out []*modelSnap
	for _, s := range m.snaps {
		if s.vol == v {
			out = append(out, s)
		}
	}
	return out
}

// chain is what the chain limit counts: v's snapshots on its head's path.
func (m *model) chain(v *modelVol) []*modelSnap {
	var out []*modelSnap
	for s := v.headParent; s != nil; s = s.parent {
		if s.vol == v {
			out = append(out, s)
		}
	}
	return out
}

// readsThrough reports whether volume's head has snapshot vol@snap among
// its ancestors in the engine.
func (p *Pool) readsThrough(volume, vol, snap string) bool {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	for n := p.volumes[volume].head; n != nil; n = n.parent {
		if n.vol != nil && n.vol.rec.Name == vol && n.rec.Name == snap && !n.rec.Hidden {
			return true
		}
	}
	return false
}

// origin is the first snapshot of another volume on v's head's path, or nil.
func (m *model) origin(v *modelVol) *modelSnap {
	for s := v.headParent; s != nil; s = s.parent {
		if s.vol != v {
			return s
		}
	}
	return nil
}

// cutOrigin ends v's tie to its origin, as a flatten does.
func (m *model) cutOrigin(v *modelVol) {
	root := m.origin(v)
	if root == nil {
		return
	}
	if v.headParent == root {
		v.headParent = nil
	}
	for _, s := range m.snapsOf(v) {
		if s.parent == root {
			s.parent = nil
		}
	}
}

// remove deletes s from the model; its children and heads move up to its parent.
func (m *model) remove(s *modelSnap) {
	s.gone = true
	m.snaps = slices.DeleteFunc(m.snaps, func(o *modelSnap) bool { return o == s })
	for _, o := range m.snaps {
		if o.parent == s {
			o.parent = s.parent
		}
	}
	for _, v := range m.vols {
		if v.headParent == s {
			v.headParent = s.parent
		}
	}
}

func (m *model) inSubtree(s, root *modelSnap) bool {
	for ; s != nil; s = s.parent {
		if s == root {
			return true
		}
	}
	return false
}

// TestModelRandomized drives the engine with random writes, zero ranges,
// resizes, syncs, reopens, volume create/delete, and snapshot create,
// rollback, delete, recursive delete, clone and flatten, against the naive
// model. After every step every volume and snapshot touched by the step's
// volume tree reads as the model says, and the checker passes.
func TestModelRandomized(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	if s := os.Getenv("ROWFS_MODEL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	steps := *modelSteps
	if testing.Short() {
		steps = min(steps, 5000)
	}
	t.Logf("seed %d, %d steps (rerun with -model.seed=%d)", seed, steps, seed)
	defer func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: go test ./rowengine -run TestModelRandomized -model.seed=%d", seed, seed)
		}
	}()
	// Half the steps on blocks of one sector, half on blocks of four
	// 4 KiB sectors, where writes of part of a block leave partly written
	// blocks (sectors.go) for every later operation to meet.
	for _, bs := range []uint32{4096, 16384} {
		t.Run(fmt.Sprintf("block=%d", bs), func(t *testing.T) { modelRun(t, seed, steps/2, bs) })
	}
}

func modelRun(t *testing.T, seed uint64, steps int, blockSize uint32) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dir := fastTempDir(t)
	clock := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	opts := Options{BlockSize: blockSize, CommitInterval: time.Hour, CommitBatch: 64, MaxSnapshots: 5, CloseGrace: time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return clock }}
	p, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The model has no snapshots before resizes (settings_test.go covers them).
	if _, err := p.SetSetting("snapshot-before-resize", "false"); err != nil {
		t.Fatal(err)
	}
	defer func() { p.Close() }()
	m := &model{vols: map[string]*modelVol{}}
	handles := map[string]*Handle{}
	open := func(name string) *Handle {
		if h := handles[name]; h != nil {
			return h
		}
		h, err := p.OpenVolume(name, true)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		handles[name] = h
		return h
	}
	closeHandle := func(name string) {
		if h := handles[name]; h != nil {
			h.Close()
			delete(handles, name)
		}
	}
	lastOp := ""
	counts := map[string]int{}
	did := func(op string) { counts[op]++; lastOp = op }
	wait := func(step int, what string, job *JobInfo) {
		if job == nil {
			return
		}
		if _, err := p.WaitJob(context.Background(), job.ID); err != nil {
			t.Fatalf("step %d: %s: %v", step, what, err)
		}
	}
	readAll := func(step int, what string, h *Handle, want []byte) {
		got := make([]byte, len(want)+1)
		n, err := h.ReadAt(got, 0)
		if n != len(want) || err != nil && n != len(want) {
			t.Fatalf("step %d: read %s: n=%d err=%v, want %d bytes", step, what, n, err, len(want))
		}
		if !bytes.Equal(got[:n], want) {
			i := 0
			for got[i] == want[i] {
				i++
			}
			t.Fatalf("step %d (after %s): %s differs from the model at byte %d (got %d want %d)", step, lastOp, what, i, got[i], want[i])
		}
	}
	verifyAll := func(step int) {
		for name, v := range m.vols {
			readAll(step, name, open(name), v.data)
		}
		for _, s := range m.snaps {
			h, err := p.OpenSnapshot(s.vol.name, s.name)
			if err != nil {
				t.Fatalf("step %d: open snapshot %s@%s: %v", step, s.vol.name, s.name, err)
			}
			readAll(step, s.vol.name+"@"+s.name, h, s.data)
			h.Close()
		}
		for name, v := range m.vols {
			list, err := p.Snapshots(name)
			if err != nil {
				t.Fatalf("step %d: list %s: %v", step, name, err)
			}
			var visible []string
			for _, s := range list {
				if !s.Hidden && !s.Head {
					visible = append(visible, s.Name)
				}
			}
			var want []string
			for _, s := range m.snapsOf(v) {
				want = append(want, s.name)
			}
			slices.Sort(visible)
			slices.Sort(want)
			if !slices.Equal(visible, want) {
				t.Fatalf("step %d: snapshots of %s: %v, model %v", step, name, visible, want)
			}
		}
	}
	names := []string{"a", "b", "c"}
	sizes := []uint64{16 << 10, 32 << 10, 64 << 10}
	snapSeq := 0
	for step := range steps {
		clock = clock.Add(time.Second)
		name := names[rng.IntN(len(names))]
		v := m.vols[name]
		if v == nil {
			if len(m.snaps) > 0 && rng.IntN(2) == 0 { // clone a random snapshot
				s := m.snaps[rng.IntN(len(m.snaps))]
				if _, err := p.CloneVolume(s.vol.name, s.name, name); err != nil {
					t.Fatalf("step %d: clone %s@%s to %s: %v", step, s.vol.name, s.name, name, err)
				}
				m.vols[name] = &modelVol{name: name, data: slices.Clone(s.data), headParent: s}
				did("clone")
			} else {
				size := sizes[rng.IntN(len(sizes))]
				if _, err := p.CreateVolume(name, size); err != nil {
					t.Fatalf("step %d: create %s: %v", step, name, err)
				}
				m.vols[name] = &modelVol{name: name, data: make([]byte, size)}
			}
			verifyAll(step)
			continue
		}
		size := uint64(len(v.data))
		snaps := m.snapsOf(v)
		op := rng.IntN(100)
		switch {
		case op < 35: // write, often unaligned, sometimes several blocks
			off := rng.Uint64N(size)
			n := min(1+rng.Uint64N(3*4096), size-off)
			switch rng.IntN(4) {
			case 0: // 4 KiB, aligned
				off, n = off/4096*4096, min(4096, size-off/4096*4096)
			case 1: // 512-byte sectors, as a guest with 512-byte logical blocks
				off = off / 512 * 512
				n = min((1+rng.Uint64N(16))*512, size-off)
			}
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(rng.IntN(255) + 1)
			}
			h, kind := open(name), "write"
			write := h.WriteAt
			if rng.IntN(8) == 0 { // as an O_DSYNC write
				write, kind = h.WriteAtSync, "write-sync"
			}
			if _, err := write(data, int64(off)); err != nil {
				t.Fatalf("step %d: %s %s %d+%d: %v", step, kind, name, off, n, err)
			}
			copy(v.data[off:], data)
			did(kind)
		case op < 42: // zero range / discard
			off := rng.Uint64N(size)
			n := min(1+rng.Uint64N(6*4096), size-off)
			if err := open(name).ZeroRange(int64(off), n); err != nil {
				t.Fatalf("step %d: zero %s %d+%d: %v", step, name, off, n, err)
			}
			clear(v.data[off : off+n])
			did("zero")
		case op < 45: // resize, grow or shrink, 512-aligned
			newSize := (1 + rng.Uint64N(96<<10/512)) * 512
			if _, err := p.ResizeVolume(name, newSize, true); err != nil {
				t.Fatalf("step %d: resize %s to %d: %v", step, name, newSize, err)
			}
			grown := make([]byte, newSize)
			copy(grown, v.data)
			v.data = grown
			did("resize")
		case op < 48:
			if err := open(name).Sync(); err != nil {
				t.Fatalf("step %d: sync: %v", step, err)
			}
		case op < 62: // snapshot, manual or automatic
			auto := rng.IntN(3) == 0
			snapName := ""
			if !auto {
				snapSeq++
				snapName = fmt.Sprintf("s%d", snapSeq)
			}
			chain := m.chain(v)
			var rotate *modelSnap
			refuse := false
			if len(chain) >= opts.MaxSnapshots {
				for _, s := range chain {
					if s.auto {
						rotate = s
					}
				}
				refuse = !auto || rotate == nil
			}
			info, err := p.CreateSnapshot(name, snapName, SnapshotOptions{Auto: auto})
			if refuse {
				if !errors.Is(err, ErrChainLimit) {
					t.Fatalf("step %d: snapshot of %s at the chain limit: %v, want ErrChainLimit", step, name, err)
				}
				did("chain-limit")
				break
			}
			if err != nil {
				t.Fatalf("step %d: snapshot %s@%s: %v", step, name, snapName, err)
			}
			if rotate != nil {
				m.remove(rotate)
				did("rotate")
			}
			s := &modelSnap{vol: v, name: info.Name, auto: auto, data: slices.Clone(v.data), parent: v.headParent}
			m.snaps = append(m.snaps, s)
			v.headParent = s
			did("snapshot")
		case op < 68 && len(snaps) > 0: // rollback
			s := snaps[rng.IntN(len(snaps))]
			if rng.IntN(10) == 0 {
				open(name)
				if _, err := p.RollbackVolume(name, s.name, false); !errors.Is(err, ErrBusy) {
					t.Fatalf("step %d: rollback of open %s: %v, want ErrBusy", step, name, err)
				}
			}
			closeHandle(name)
			res, err := p.RollbackVolume(name, s.name, false)
			if err != nil {
				t.Fatalf("step %d: rollback %s@%s: %v", step, name, s.name, err)
			}
			wait(step, "rollback", res.Job)
			v.data, v.headParent = slices.Clone(s.data), s
			did("rollback")
		case op < 78 && len(snaps) > 0: // delete, sometimes recursive, sometimes a dry run first
			s := snaps[rng.IntN(len(snaps))]
			recursive := rng.IntN(4) == 0
			var doomed []*modelSnap
			headInside := false
			for _, o := range m.snaps {
				if recursive && m.inSubtree(o, s) || o == s {
					doomed = append(doomed, o)
				}
			}
			for _, o := range m.vols {
				headInside = headInside || recursive && m.inSubtree(o.headParent, s)
			}
			opt := DeleteOptions{Recursive: recursive}
			// Every delete is planned dry first: the delete must execute
			// that very plan, and free what it says.
			var plan DeletePlan
			if dry, err := p.DeleteSnapshot(name, s.name, DeleteOptions{Recursive: recursive, DryRun: true}); err == nil {
				plan = dry.Plan
			}
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			storedBefore := p.Info().StoredBytes
			res, err := p.DeleteSnapshot(name, s.name, opt)
			if headInside {
				if !errors.Is(err, ErrBusy) {
					t.Fatalf("step %d: recursive delete of %s@%s over a head: %v, want ErrBusy", step, name, s.name, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: delete %s@%s: %v", step, name, s.name, err)
			}
			if !reflect.DeepEqual(res.Plan.Steps, plan.Steps) {
				t.Fatalf("step %d: delete %s@%s executes\n%v\nthe dry run planned\n%v", step, name, s.name, res.Plan.Steps, plan.Steps)
			}
			wait(step, "delete", res.Job)
			if plan.Deleted != nil {
				if err := p.Sync(); err != nil {
					t.Fatal(err)
				}
				if freed := int64(storedBefore) - int64(p.Info().StoredBytes); freed != int64(plan.FreedBytes)-int64(plan.FilledBytes) {
					t.Fatalf("step %d: delete %s@%s freed %d bytes net, dry run said %d less %d filled", step, name, s.name, freed, plan.FreedBytes, plan.FilledBytes)
				}
			}
			slices.Reverse(doomed)
			for _, o := range doomed {
				m.remove(o)
			}
			did("delete")
		case op < 80: // flatten
			root := m.origin(v)
			// The engine may still share blocks through deleted (hidden)
			// snapshots the model no longer has: ask it whether this is a clone.
			info, err := p.Volume(name)
			if err != nil {
				t.Fatal(err)
			}
			if (info.Parent != "") != (root != nil) && root != nil {
				t.Fatalf("step %d: %s: model has origin %s@%s, engine none", step, name, root.vol.name, root.name)
			}
			job, err := p.FlattenVolume(name)
			if info.Parent == "" {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("step %d: flatten of non-clone %s: %v", step, name, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: flatten %s: %v", step, name, err)
			}
			wait(step, "flatten", &job)
			if info, _ := p.Volume(name); info.Parent != "" {
				t.Fatalf("step %d: %s still has origin %s after flatten", step, name, info.Parent)
			}
			// Cut the model's tie to the origin the same way. The engine
			// cuts a node, and another clone may read through it: one made
			// from a snapshot of this volume that is deleted but kept hidden,
			// which the model no longer has. That clone stops being one too.
			m.cutOrigin(v)
			for _, w := range m.vols {
				if o := m.origin(w); w != v && o != nil && !p.readsThrough(w.name, o.vol.name, o.name) {
					m.cutOrigin(w)
				}
			}
			did("flatten")
		case op < 82: // delete the volume; its snapshots go with it
			closeHandle(name)
			res, err := p.DeleteVolume(name, false)
			if err != nil {
				t.Fatalf("step %d: delete %s: %v", step, name, err)
			}
			wait(step, "delete volume", res.Job)
			for _, s := range snaps {
				m.remove(s)
			}
			delete(m.vols, name)
			did("volume-delete")
		case op < 83: // reopen the pool
			for n := range handles {
				closeHandle(n)
			}
			if err := p.Close(); err != nil {
				t.Fatalf("step %d: close: %v", step, err)
			}
			if p, err = Open(dir, opts); err != nil {
				t.Fatalf("step %d: reopen: %v", step, err)
			}
			did("reopen")
		default: // read a random range
			off := rng.Uint64N(size)
			n := min(1+rng.Uint64N(4*4096), size-off)
			got := make([]byte, n)
			if _, err := open(name).ReadAt(got, int64(off)); err != nil {
				t.Fatalf("step %d: read: %v", step, err)
			}
			if !bytes.Equal(got, v.data[off:off+n]) {
				t.Fatalf("step %d: read %s %d+%d differs from the model", step, name, off, n)
			}
		}
		if rng.IntN(3) == 0 {
			// Frozen nodes drop their tables in the background; here at
			// random points, so both states meet every operation.
			p.compactFrozen()
		}
		verifyAll(step)
		partial := p.partialEntries()
		counts["steps with partly written blocks"] += min(partial, 1)
		if rep, err := p.Check(); err != nil || !rep.Clean() {
			t.Fatalf("step %d (after %s): checker: %v corruptions %v leaks %v", step, lastOp, err, rep.Corruptions, rep.Leaks)
		}
	}
	t.Logf("operations: %v", counts)
	if blockSize > 4096 && steps >= 1000 && counts["steps with partly written blocks"] < steps/10 {
		t.Fatalf("partly written blocks in only %d of %d steps: the test misses them", counts["steps with partly written blocks"], steps)
	}
}

// partialEntries counts the partly written blocks the nodes own.
func (p *Pool) partialEntries() int {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	n := 0
	for _, nd := range p.nodes {
		ownEachLocked(nd, func(index, _ uint64) {
			if ownValidLocked(nd, index) != 0 {
				n++
			}
		})
	}
	return n
}

// fastTempDir is a temporary directory on tmpfs when there is one: the
// model test checks logic after every step, and syncs on a disk would
// dominate its run time. Durability is the crash tests' business.
func fastTempDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "rowfs-model-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}
