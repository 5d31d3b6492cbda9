package rowengine

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentWritersAndAdmin runs guest writes into the same blocks
// from several goroutines (each owning every fourth sector, so partly
// written blocks fill from several writers at once) while snapshots are
// taken and deleted (merges that fill partial blocks), clones are made and
// flattened, the pool commits and the checker runs. No step may wait
// forever: a watchdog dumps every goroutine if the test stops moving. At
// the end the volume reads as the writers' model and the checker passes.
func TestConcurrentWritersAndAdmin(t *testing.T) {
	duration := 8 * time.Second
	if testing.Short() {
		duration = 2 * time.Second
	}
	const (
		blockSize = 16 << 10
		sector    = 4 << 10
		size      = 64 * blockSize
		writers   = 4
	)
	p := TestPool(t, Options{BlockSize: blockSize, CommitBatch: 64})
	h := mustCreate(t, p, "vm", size)
	model := make([]byte, size) // each writer changes only its own sectors

	var progress, adminSteps atomic.Uint64
	stop := make(chan struct{})
	watchdogDone := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		last, still := progress.Load(), time.Now()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			if now := progress.Load(); now != last {
				last, still = now, time.Now()
			} else if time.Since(still) > 60*time.Second {
				pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
				panic("TestConcurrentWritersAndAdmin: no progress for 60 s (goroutines above)")
			}
		}
	}()

	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for time.Now().Before(deadline) {
				s := rnd.IntN(size/sector/writers)*writers + w // one of w's sectors
				off := s*sector + rnd.IntN(8)*512
				n := 512 * (1 + rnd.IntN((s*sector+sector-off)/512))
				data := bytes.Repeat([]byte{byte(rnd.Uint32())}, n)
				if rnd.IntN(10) == 0 {
					if err := h.ZeroRange(int64(off), uint64(n)); err != nil {
						errs <- fmt.Errorf("writer %d: zero %d+%d: %w", w, off, n, err)
						return
					}
					clear(data)
				} else if _, err := h.WriteAt(data, int64(off)); err != nil {
					errs <- fmt.Errorf("writer %d: write %d+%d: %w", w, off, n, err)
					return
				}
				copy(model[off:], data)
				progress.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rnd := rand.New(rand.NewPCG(99, 1))
		var snaps []string
		fail := func(err error) { errs <- err }
		for i := 0; time.Now().Before(deadline); i++ {
			switch op := rnd.IntN(10); {
			case op < 4 || len(snaps) == 0:
				name := fmt.Sprintf("s%d", i)
				if _, err := p.CreateSnapshot("vm", name, SnapshotOptions{}); err != nil {
					fail(fmt.Errorf("snapshot %s: %w", name, err))
					return
				}
				snaps = append(snaps, name)
			case op < 7:
				k := rnd.IntN(len(snaps))
				if _, err := p.DeleteSnapshot("vm", snaps[k], DeleteOptions{}); err != nil {
					fail(fmt.Errorf("delete %s: %w", snaps[k], err))
					return
				}
				snaps = append(snaps[:k], snaps[k+1:]...)
			case op < 8:
				clone := fmt.Sprintf("c%d", i)
				if _, err := p.CloneVolume("vm", snaps[rnd.IntN(len(snaps))], clone); err != nil {
					fail(fmt.Errorf("clone %s: %w", clone, err))
					return
				}
				c, err := p.OpenVolume(clone, true)
				if err != nil {
					fail(err)
					return
				}
				c.WriteAt(bytes.Repeat([]byte{7}, 1024), int64(rnd.IntN(size-1024)))
				job, err := p.FlattenVolume(clone)
				if err == nil {
					_, err = p.WaitJob(context.Background(), job.ID)
				}
				c.Close()
				if err == nil {
					_, err = p.DeleteVolume(clone, false)
				}
				if err != nil {
					fail(fmt.Errorf("flatten and delete %s: %w", clone, err))
					return
				}
			case op < 9:
				if err := p.Sync(); err != nil {
					fail(err)
					return
				}
			default:
				if rep, err := p.Check(); err != nil || !rep.Clean() {
					fail(fmt.Errorf("check during writes: %v %v %v", err, rep.Corruptions, rep.Leaks))
					return
				}
			}
			progress.Add(1)
			adminSteps.Add(1)
		}
	}()
	wg.Wait()
	close(stop)
	<-watchdogDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := readAll(t, h); !bytes.Equal(got, model) {
		t.Fatal("the volume does not read as its writers wrote")
	}
	if rep, err := p.Check(); err != nil || !rep.Clean() {
		t.Fatalf("check: %v %v %v", err, rep.Corruptions, rep.Leaks)
	}
	t.Logf("%d steps, %d of them snapshots, deletes, clones, syncs and checks", progress.Load(), adminSteps.Load())
}
