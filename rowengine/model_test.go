package rowengine

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

var (
	modelSteps = flag.Int("model.steps", 20000, "steps of the randomized model test")
	modelSeed  = flag.Uint64("model.seed", 0, "seed of the randomized model test (0: from the clock)")
)

// model is the naive reference: every volume is a byte slice.
type model map[string][]byte

// TestModelRandomized drives the engine with random writes, zero ranges,
// resizes, syncs, reopens and volume creates/deletes, and compares every
// volume with the naive model after each step that touched it and in full
// every 500 steps, followed by the checker.
func TestModelRandomized(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	if s := os.Getenv("ROWFS_MODEL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (rerun with -model.seed=%d)", seed, seed)
	defer func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: go test ./rowengine -run TestModelRandomized -model.seed=%d", seed, seed)
		}
	}()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	opts := Options{BlockSize: 4096, CommitInterval: time.Hour, CommitBatch: 64, Logger: quiet}
	p, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Close() }()
	m := model{}
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
	names := []string{"a", "b", "c"}
	sizes := []uint64{64 << 10, 256 << 10, 1 << 20}
	verify := func(step int, name string) {
		h := open(name)
		got := make([]byte, len(m[name]))
		if n, err := h.ReadAt(got, 0); n != len(got) || err != nil {
			t.Fatalf("step %d: read %s: n=%d err=%v", step, name, n, err)
		}
		if !bytes.Equal(got, m[name]) {
			i := 0
			for got[i] == m[name][i] {
				i++
			}
			t.Fatalf("step %d: volume %s differs from the model at byte %d (got %d want %d)", step, name, i, got[i], m[name][i])
		}
	}
	for step := range *modelSteps {
		name := names[rng.IntN(len(names))]
		if m[name] == nil {
			size := sizes[rng.IntN(len(sizes))]
			if _, err := p.CreateVolume(name, size); err != nil {
				t.Fatalf("step %d: create %s: %v", step, name, err)
			}
			m[name] = make([]byte, size)
			continue
		}
		size := uint64(len(m[name]))
		op := rng.IntN(100)
		switch {
		case op < 55: // write, often unaligned, sometimes several blocks
			off := rng.Uint64N(size)
			n := min(1+rng.Uint64N(3*4096), size-off)
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(rng.IntN(255) + 1)
			}
			if _, err := open(name).WriteAt(data, int64(off)); err != nil {
				t.Fatalf("step %d: write %s %d+%d: %v", step, name, off, n, err)
			}
			copy(m[name][off:], data)
		case op < 70: // zero range / discard
			off := rng.Uint64N(size)
			n := min(1+rng.Uint64N(8*4096), size-off)
			if err := open(name).ZeroRange(int64(off), n); err != nil {
				t.Fatalf("step %d: zero %s %d+%d: %v", step, name, off, n, err)
			}
			clear(m[name][off : off+n])
		case op < 76: // resize, grow or shrink, 512-aligned
			newSize := (1 + rng.Uint64N(2<<20/512)) * 512
			if _, err := p.ResizeVolume(name, newSize, true); err != nil {
				t.Fatalf("step %d: resize %s to %d: %v", step, name, newSize, err)
			}
			grown := make([]byte, newSize)
			copy(grown, m[name])
			m[name] = grown
		case op < 85:
			if err := open(name).Sync(); err != nil {
				t.Fatalf("step %d: sync: %v", step, err)
			}
		case op < 87: // delete and forget the volume
			if h := handles[name]; h != nil {
				h.Close()
				delete(handles, name)
			}
			if err := p.DeleteVolume(name, false); err != nil {
				t.Fatalf("step %d: delete %s: %v", step, name, err)
			}
			delete(m, name)
			continue
		case op < 88: // reopen the pool
			for n, h := range handles {
				h.Close()
				delete(handles, n)
			}
			if err := p.Close(); err != nil {
				t.Fatalf("step %d: close: %v", step, err)
			}
			if p, err = Open(dir, opts); err != nil {
				t.Fatalf("step %d: reopen: %v", step, err)
			}
		default: // read a random range
			off := rng.Uint64N(size)
			n := min(1+rng.Uint64N(4*4096), size-off)
			got := make([]byte, n)
			if _, err := open(name).ReadAt(got, int64(off)); err != nil {
				t.Fatalf("step %d: read: %v", step, err)
			}
			if !bytes.Equal(got, m[name][off:off+n]) {
				t.Fatalf("step %d: read %s %d+%d differs from the model", step, name, off, n)
			}
		}
		if step%500 == 499 {
			for n := range m {
				verify(step, n)
			}
			checkClean(t, p, step)
			checkUsage(t, p, m, step)
		}
	}
	for n := range m {
		verify(*modelSteps, n)
	}
	checkClean(t, p, *modelSteps)
}

func checkClean(t *testing.T, p *Pool, step int) {
	t.Helper()
	rep, err := p.Check()
	if err != nil {
		t.Fatalf("step %d: checker: %v", step, err)
	}
	if !rep.Clean() {
		t.Fatalf("step %d: checker: corruptions %v leaks %v", step, rep.Corruptions, rep.Leaks)
	}
}

// checkUsage: used bytes equal the blocks holding at least one written
// non-zero byte or written zero inside a block that was written — a bound
// the model can state exactly is "no more than the blocks the volumes can hold".
func checkUsage(t *testing.T, p *Pool, m model, step int) {
	t.Helper()
	var limit uint64
	for _, data := range m {
		limit += (uint64(len(data)) + 4095) / 4096 * 4096
	}
	if used := p.Info().UsedBytes; used > limit {
		t.Fatalf("step %d: %s", step, fmt.Sprintf("pool uses %d bytes for volumes of %d bytes", used, limit))
	}
}
