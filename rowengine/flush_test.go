package rowengine

import (
	"bytes"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestMergeRuns(t *testing.T) {
	got := mergeRuns([]blockRun{{9, 1}, {0, 2}}, []blockRun{{2, 1}, {5, 3}, {6, 1}, {20, 1}})
	want := []blockRun{{0, 3}, {5, 3}, {9, 1}, {20, 1}}
	if !slices.Equal(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
}

// TestDirtyRuns: repeats and neighbours coalesce, a full record compacts
// before it gives up, and past the bound the next flush is whole; take
// hands over and empties, restore gives back.
func TestDirtyRuns(t *testing.T) {
	var d dirtyRuns
	d.addBytes(0, 4096, 65536)
	d.addBytes(100, 10, 65536)      // the same block
	d.addBytes(65536, 65537, 65536) // blocks 1 and 2, after block 0
	d.addBytes(10*65536, 0, 65536)  // nothing
	runs, whole, gen := d.take()
	if want := []blockRun{{0, 3}}; !slices.Equal(runs, want) || whole || gen != 1 {
		t.Fatalf("took %v whole=%v gen %d, want %v, false, 1", runs, whole, gen, want)
	}
	if runs, _, _ := d.take(); len(runs) != 0 {
		t.Fatalf("a second take got %v", runs)
	}
	for i := range uint64(maxDirtyRuns + 10) { // the same 10 blocks over and over
		d.add(i%10*2, 1)
	}
	if runs, whole, _ := d.take(); whole || len(runs) > 20 || len(mergeRuns(runs, nil)) != 10 {
		t.Fatalf("repeated blocks: took %d runs whole=%v, want the 10 blocks, compacted", len(runs), whole)
	}
	for i := range uint64(maxDirtyRuns + 1) {
		d.add(i*2, 1)
	}
	runs, whole, _ = d.take()
	if !whole || runs != nil {
		t.Fatalf("past the bound: took %d runs whole=%v, want a whole flush", len(runs), whole)
	}
	d.add(7, 1)
	d.restore([]blockRun{{3, 2}}, false)
	if runs, whole, _ := d.take(); whole || !slices.Equal(runs, []blockRun{{3, 2}, {7, 1}}) {
		t.Fatalf("after restore took %v whole=%v", runs, whole)
	}
}

// TestWriteAtSync: an O_DSYNC overwrite of a block the head owns by a
// durable map entry is written through (its pages clean when it returns,
// with the page cache as the witness) without a commit, whatever other
// volumes have pending, and leaves nothing for the volume's next flush.
// Into a block whose redirect is not committed yet, or one a snapshot
// owns, it commits before it returns. Everything reads back.
func TestWriteAtSync(t *testing.T) {
	const bs = 64 << 10
	var commits atomic.Int64
	p := TestPool(t, Options{BlockSize: bs, CommitObserver: func(time.Duration, error) { commits.Add(1) }})
	dirtyPages := pageCacheWitness(t, p)
	h, other := mustCreate(t, p, "vm", 16*bs), mustCreate(t, p, "other", 16*bs)
	want := make([]byte, 16*bs)
	write := func(what string, commitsWanted int64, data byte, off int64, length int) {
		t.Helper()
		buf := bytes.Repeat([]byte{data}, length)
		before := commits.Load()
		if _, err := h.WriteAtSync(buf, off); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := commits.Load() - before; got != commitsWanted {
			t.Errorf("%s: %d commits, want %d", what, got, commitsWanted)
		}
		copy(want[off:], buf)
	}
	phys := func(index uint64) uint64 {
		p.mapMu.RLock()
		defer p.mapMu.RUnlock()
		return p.volumes["vm"].head.table.get(index).phys
	}

	if _, err := h.WriteAt(bytes.Repeat([]byte{1}, 2*bs), 0); err != nil { // two redirects, not committed
		t.Fatal(err)
	}
	copy(want, bytes.Repeat([]byte{1}, 2*bs))
	write("an O_DSYNC write into a block whose redirect is pending", 1, 2, 4096, 4096)
	if _, err := other.WriteAt(make([]byte, bs), 0); err != nil { // another volume's pending redirect
		t.Fatal(err)
	}
	for i := range 3 {
		write("an O_DSYNC overwrite in place", 0, byte(3+i), int64(i)*8192, 4096)
		if n := dirtyPages(phys(0)); n != 0 {
			t.Fatalf("block 0 has %d dirty pages after an O_DSYNC overwrite", n)
		}
	}
	if phys(0)+1 == phys(1) {
		write("an O_DSYNC overwrite across two blocks in one run of the data file", 0, 6, bs-4096, 8192)
	} else {
		write("an O_DSYNC overwrite across two blocks apart in the data file", 1, 6, bs-4096, 8192)
	}
	v := p.volumes["vm"]
	v.dirty.mu.Lock()
	left := len(v.dirty.runs)
	v.dirty.mu.Unlock()
	if left != 0 {
		t.Errorf("O_DSYNC overwrites left %d runs for the next flush", left)
	}

	if _, err := p.CreateSnapshot("vm", "s1", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	snap := slices.Clone(want)
	write("an O_DSYNC write into a block the snapshot owns", 1, 7, 3*4096, 4096)
	write("an O_DSYNC write of a whole block never written", 1, 8, 5*bs, bs)
	write("an O_DSYNC overwrite of it in place", 0, 9, 5*bs+4096, 4096)

	for _, c := range []struct {
		name string
		open func() (*Handle, error)
		want []byte
	}{
		{"vm", func() (*Handle, error) { return p.OpenVolume("vm", false) }, want},
		{"vm@s1", func() (*Handle, error) { return p.OpenSnapshot("vm", "s1") }, snap},
	} {
		r, err := c.open()
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(c.want))
		if _, err := r.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s does not read back what was written", c.name)
		}
	}
	MustCheck(t, p)
}
