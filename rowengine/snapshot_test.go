package rowengine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func mustSnapshot(t *testing.T, p *Pool, vol, name string) SnapshotInfo {
	t.Helper()
	info, err := p.CreateSnapshot(vol, name, SnapshotOptions{})
	if err != nil {
		t.Fatalf("snapshot %s@%s: %v", vol, name, err)
	}
	return info
}

// Deleting a snapshot that owns 256 MiB hands what its child still reads
// to the child and frees the rest, without writing a byte of data.
func TestDeleteMovesOwnershipWithoutCopy(t *testing.T) {
	p := TestPool(t, Options{BlockSize: DefaultBlockSize})
	h := mustCreate(t, p, "vm", 512<<20)
	chunk := make([]byte, 4<<20)
	for off := int64(0); off < 256<<20; off += int64(len(chunk)) {
		for i := range chunk {
			chunk[i] = byte(off>>20) + byte(i)
		}
		if _, err := h.WriteAt(chunk, off); err != nil {
			t.Fatal(err)
		}
	}
	mustSnapshot(t, p, "vm", "full")
	if _, err := h.WriteAt(make([]byte, 64<<20), 0); err != nil { // the child overwrites a quarter
		t.Fatal(err)
	}
	mustSnapshot(t, p, "vm", "later")
	h.Close()
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	dry, err := p.DeleteSnapshot("vm", "full", DeleteOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Plan.FreedBytes != 64<<20 || dry.Plan.MovedBytes != 192<<20 {
		t.Fatalf("dry run: frees %d, moves %d; want 64 MiB and 192 MiB", dry.Plan.FreedBytes, dry.Plan.MovedBytes)
	}
	before := p.Info()
	st, _ := os.Stat(filepath.Join(p.Dir(), "data"))
	res, err := p.DeleteSnapshot("vm", "full", DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitJob(context.Background(), res.Job.ID); err != nil {
		t.Fatal(err)
	}
	after := p.Info()
	if written := after.DataBytesWritten - before.DataBytesWritten; written != 0 {
		t.Fatalf("delete wrote %d bytes to the data file", written)
	}
	if freed := before.UsedBytes - after.UsedBytes; freed != dry.Plan.FreedBytes {
		t.Fatalf("delete freed %d bytes, dry run said %d", freed, dry.Plan.FreedBytes)
	}
	st2, _ := os.Stat(filepath.Join(p.Dir(), "data"))
	if st.Size() != st2.Size() {
		t.Fatalf("data file changed size: %d → %d", st.Size(), st2.Size())
	}
	later, err := p.Snapshot("vm", "later")
	if err != nil || later.OwnBytes != 256<<20 {
		t.Fatalf("later owns %d bytes (%v), want 256 MiB", later.OwnBytes, err)
	}
	t.Logf("moved %d MiB and freed %d MiB with %d data bytes written", dry.Plan.MovedBytes>>20, dry.Plan.FreedBytes>>20, after.DataBytesWritten-before.DataBytesWritten)
}

// Writers append sequence-numbered records while snapshots are taken:
// every snapshot holds a prefix of each writer's sequence, at least every
// record completed before the snapshot started and none started after it
// returned.
func TestSnapshotPointInTime(t *testing.T) {
	p := TestPool(t, Options{BlockSize: 16 << 10})
	const writers, records, recSize = 4, 3000, 512
	region := uint64(records * recSize)
	h := mustCreate(t, p, "vm", writers*region)
	var completed, started [writers]atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := make([]byte, recSize)
			for seq := range records {
				binary.LittleEndian.PutUint64(rec, uint64(seq+1))
				started[w].Store(int64(seq + 1))
				if _, err := h.WriteAt(rec, int64(uint64(w)*region+uint64(seq)*recSize)); err != nil {
					t.Error(err)
					return
				}
				completed[w].Store(int64(seq + 1))
			}
		}()
	}
	type bounds struct{ low, high [writers]int64 }
	var taken []bounds
	for i := 0; completed[0].Load() < records && i < 200; i++ {
		var b bounds
		for w := range writers {
			b.low[w] = completed[w].Load()
		}
		mustSnapshot(t, p, "vm", fmt.Sprintf("s%d", i))
		for w := range writers {
			b.high[w] = started[w].Load()
		}
		taken = append(taken, b)
	}
	wg.Wait()
	h.Close()
	for i, b := range taken {
		sh, err := p.OpenSnapshot("vm", fmt.Sprintf("s%d", i))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, writers*region)
		if _, err := sh.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		for w := range writers {
			n := int64(0)
			for seq := range records {
				got := int64(binary.LittleEndian.Uint64(buf[uint64(w)*region+uint64(seq)*recSize:]))
				switch {
				case got == int64(seq+1) && n == int64(seq):
					n++
				case got != 0:
					if n != int64(seq) || got != int64(seq+1) {
						t.Fatalf("snapshot s%d, writer %d: record %d holds %d after a prefix of %d: not point in time", i, w, seq, got, n)
					}
				}
			}
			if n < b.low[w] || n > b.high[w] {
				t.Fatalf("snapshot s%d, writer %d: prefix %d outside [%d, %d]", i, w, n, b.low[w], b.high[w])
			}
		}
	}
	t.Logf("%d snapshots checked", len(taken))
}

func TestChainLimit(t *testing.T) {
	p := TestPool(t, Options{MaxSnapshots: 3})
	mustCreate(t, p, "vm", 1<<20).Close()
	for _, n := range []string{"m1", "m2", "m3"} {
		mustSnapshot(t, p, "vm", n)
	}
	if _, err := p.CreateSnapshot("vm", "m4", SnapshotOptions{}); !errors.Is(err, ErrChainLimit) {
		t.Fatalf("manual snapshot past the limit: %v, want ErrChainLimit", err)
	}
	if _, err := p.CreateSnapshot("vm", "", SnapshotOptions{Auto: true}); !errors.Is(err, ErrChainLimit) {
		t.Fatalf("automatic snapshot with none to rotate: %v, want ErrChainLimit", err)
	}
	if _, err := p.SetMaxSnapshots("vm", 5); err != nil {
		t.Fatal(err)
	}
	a1, err := p.CreateSnapshot("vm", "", SnapshotOptions{Auto: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateSnapshot("vm", "", SnapshotOptions{Auto: true}); err != nil {
		t.Fatal(err)
	}
	// At 5: the next automatic snapshot rotates out a1, the oldest automatic one.
	if _, err := p.CreateSnapshot("vm", "", SnapshotOptions{Auto: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Snapshot("vm", a1.Name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("oldest automatic snapshot %s still there: %v", a1.Name, err)
	}
	info, _ := p.Volume("vm")
	if info.ChainLength != 5 || info.Snapshots != 5 {
		t.Fatalf("chain %d, snapshots %d; want 5 and 5", info.ChainLength, info.Snapshots)
	}
}

// Refused requests change nothing and say why.
func TestSnapshotBadInput(t *testing.T) {
	p := TestPool(t, Options{MaxSnapshots: 2})
	mustCreate(t, p, "vm", 1<<20).Close()
	mustSnapshot(t, p, "vm", "sa")
	mustSnapshot(t, p, "vm", "sb")
	if _, err := p.RollbackVolume("vm", "sa", false); err != nil {
		t.Fatal(err)
	}
	mustSnapshot(t, p, "vm", "sc")
	if _, err := p.DeleteSnapshot("vm", "sa", DeleteOptions{}); err != nil { // two children: hidden
		t.Fatal(err)
	}
	mustSnapshot(t, p, "vm", "sd")
	WaitJobs(t, p)
	before, _ := p.Snapshots("vm")
	cases := []struct {
		name string
		do   func() error
		want error
	}{
		{"reserved name", func() error { _, err := p.CreateSnapshot("vm", "auto-x", SnapshotOptions{}); return err }, ErrInvalidArgument},
		{"reserved name, capitals", func() error { _, err := p.CreateSnapshot("vm", "Auto-x", SnapshotOptions{}); return err }, ErrInvalidArgument},
		{"reserved name, no dash", func() error { _, err := p.CreateSnapshot("vm", "AUTOx", SnapshotOptions{}); return err }, ErrInvalidArgument},
		{"one character", func() error { _, err := p.CreateSnapshot("vm", "x", SnapshotOptions{}); return err }, ErrInvalidArgument},
		{"129 characters", func() error {
			_, err := p.CreateSnapshot("vm", strings.Repeat("x", 129), SnapshotOptions{})
			return err
		}, ErrInvalidArgument},
		{"bad name", func() error { _, err := p.CreateSnapshot("vm", "sa/sb", SnapshotOptions{}); return err }, ErrInvalidArgument},
		{"duplicate", func() error { _, err := p.CreateSnapshot("vm", "sb", SnapshotOptions{}); return err }, ErrExists},
		{"chain limit", func() error { _, err := p.CreateSnapshot("vm", "se", SnapshotOptions{}); return err }, ErrChainLimit},
		{"unknown volume", func() error { _, err := p.CreateSnapshot("nope", "x", SnapshotOptions{}); return err }, ErrNotFound},
		{"unknown snapshot", func() error { _, err := p.DeleteSnapshot("vm", "zz", DeleteOptions{}); return err }, ErrNotFound},
		{"rollback to hidden", func() error { _, err := p.RollbackVolume("vm", "sa", false); return err }, ErrInvalidArgument},
		{"recursive over head", func() error { _, err := p.DeleteSnapshot("vm", "sc", DeleteOptions{Recursive: true}); return err }, ErrBusy},
		{"clone to existing", func() error { _, err := p.CloneVolume("vm", "sb", "vm"); return err }, ErrExists},
		{"flatten non-clone", func() error { _, err := p.FlattenVolume("vm"); return err }, ErrInvalidArgument},
		{"diff unknown", func() error { _, err := p.Diff("vm", "sb", "zz"); return err }, ErrNotFound},
	}
	for _, c := range cases {
		err := c.do()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		t.Logf("%s: %v", c.name, err)
		after, _ := p.Snapshots("vm")
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("%s changed the tree", c.name)
		}
	}
}

func TestDiffFromMaps(t *testing.T) {
	p := TestPool(t, Options{})
	h := mustCreate(t, p, "vm", 1<<20)
	h.WriteAt(make([]byte, 100), 0)
	h.WriteAt([]byte{1}, 8192)
	mustSnapshot(t, p, "vm", "sa")
	h.WriteAt([]byte{2}, 8192)
	h.WriteAt([]byte{3}, 12288)
	h.WriteAt([]byte{4}, 40960)
	h.Close()
	got, err := p.Diff("vm", "sa", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Extent{{8192, 8192}, {40960, 4096}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("diff %v, want %v", got, want)
	}
}

// A job interrupted by Close resumes when the pool opens again.
func TestJobResumesAfterClose(t *testing.T) {
	dir := t.TempDir()
	opts := Options{BlockSize: 4096, CommitInterval: 1 << 40}
	p, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateVolume("vm", 64<<20); err != nil {
		t.Fatal(err)
	}
	vh, _ := p.OpenVolume("vm", true)
	vh.WriteAt(make([]byte, 64<<20), 0)
	for i := int64(0); i < 64<<20; i += 4096 {
		vh.WriteAt([]byte{1}, i)
	}
	vh.Close()
	mustSnapshot(t, p, "vm", "big")
	mustSnapshot(t, p, "vm", "next")
	res, err := p.DeleteSnapshot("vm", "big", DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	job, err := p.WaitJob(context.Background(), res.Job.ID)
	if err != nil || job.State != JobDone {
		t.Fatalf("job after reopen: %+v, %v", job, err)
	}
	if info, err := p.Snapshot("vm", "next"); err != nil || info.OwnBytes != 64<<20 {
		t.Fatalf("next owns %d bytes after the resumed merge (%v)", info.OwnBytes, err)
	}
	MustCheck(t, p)
}
