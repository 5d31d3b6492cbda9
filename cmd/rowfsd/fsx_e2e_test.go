package main

// A randomized file-interface test in the manner of xfstests' fsx: random
// operations on a volume file through the real mount, each checked against
// an in-memory copy of the file. The seed is printed; ROWFS_FSX_SEED
// replays one and ROWFS_FSX_OPS sets the count (default 100,000).

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fsx is one run: the volume opened three ways, and the model.
type fsx struct {
	t        *testing.T
	rng      *rand.Rand
	size     int64
	model    []byte
	buffered *os.File // O_RDWR
	direct   *os.File // O_RDWR|O_DIRECT: sector-aligned offsets, lengths and buffers
	log      []string // the last operations, shown on a failure
	counts   map[string]int
}

const fsxMaxLen = 256 << 10

// fsxOps are the operations and their weights.
var fsxOps = []struct {
	name   string
	weight int
	do     func(x *fsx, off, n int64)
}{
	{"write", 20, (*fsx).write},
	{"read", 15, (*fsx).read},
	{"write-direct", 10, (*fsx).writeDirect},
	{"read-direct", 10, (*fsx).readDirect},
	{"mapwrite", 10, (*fsx).mapWrite},
	{"mapread", 10, (*fsx).mapRead},
	{"punch", 8, (*fsx).punch},
	{"zero", 8, (*fsx).zero},
	{"copy", 9, (*fsx).copyRange},
}

func TestFsx(t *testing.T) {
	requireE2E(t)
	ops := 100_000
	if s := os.Getenv("ROWFS_FSX_OPS"); s != "" {
		ops, _ = strconv.Atoi(s)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ROWFS_FSX_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (ROWFS_FSX_SEED=%d replays it), %d operations", seed, seed, ops)
	e := newEnv(t)
	e.start("--block-size", "16K") // partial blocks at every size the ops use
	const size = 8 << 20
	vol := createVolume(t, e.sock, "fsx", strconv.Itoa(size))
	x := &fsx{t: t, rng: rand.New(rand.NewPCG(seed, 0x5eed)), size: size, model: make([]byte, size), counts: map[string]int{}}
	var err error
	if x.buffered, err = os.OpenFile(vol, os.O_RDWR, 0); err != nil {
		t.Fatal(err)
	}
	defer x.buffered.Close()
	if x.direct, err = os.OpenFile(vol, os.O_RDWR|unix.O_DIRECT, 0); err != nil {
		t.Fatal(err)
	}
	defer x.direct.Close()

	total := 0
	for _, op := range fsxOps {
		total += op.weight
	}
	for step := range ops {
		pick := x.rng.IntN(total)
		for _, op := range fsxOps {
			if pick -= op.weight; pick < 0 {
				off := x.rng.Int64N(size)
				n := 1 + x.rng.Int64N(min(fsxMaxLen, size-off))
				x.note(fmt.Sprintf("%d %s %d+%d", step, op.name, off, n))
				op.do(x, off, n)
				x.counts[op.name]++
				break
			}
		}
		if step%10_000 == 9_999 {
			x.checkAll(fmt.Sprintf("after operation %d", step))
		}
	}
	x.checkAll("at the end")
	t.Logf("operations: %v", x.counts)
}

func (x *fsx) note(s string) {
	x.log = append(x.log, s)
	if len(x.log) > 20 {
		x.log = x.log[1:]
	}
}

func (x *fsx) fail(format string, args ...any) {
	x.t.Helper()
	x.t.Fatalf("%s\nlast operations:\n%s", fmt.Sprintf(format, args...), bytes.Join(func() [][]byte {
		var out [][]byte
		for _, l := range x.log {
			out = append(out, []byte("  "+l))
		}
		return out
	}(), []byte("\n")))
}

func (x *fsx) data(n int64) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(x.rng.Uint32())
	}
	return b
}

// expect compares what was read at off with the model.
func (x *fsx) expect(got []byte, off int64, how string) {
	x.t.Helper()
	want := x.model[off : off+int64(len(got))]
	if !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		x.fail("%s at %d+%d: byte %d (offset %d) is %#x, want %#x", how, off, len(got), i, off+int64(i), got[i], want[i])
	}
}

func (x *fsx) checkAll(when string) {
	x.t.Helper()
	got := make([]byte, x.size)
	if _, err := x.buffered.ReadAt(got, 0); err != nil {
		x.fail("read of the whole file %s: %v", when, err)
	}
	x.expect(got, 0, "whole-file read "+when)
}

func (x *fsx) write(off, n int64) {
	b := x.data(n)
	if _, err := x.buffered.WriteAt(b, off); err != nil {
		x.fail("write: %v", err)
	}
	copy(x.model[off:], b)
}

func (x *fsx) read(off, n int64) {
	got := make([]byte, n)
	if _, err := x.buffered.ReadAt(got, off); err != nil {
		x.fail("read: %v", err)
	}
	x.expect(got, off, "read")
}

// aligned rounds a range to whole 4 KiB pages inside the file, as O_DIRECT
// needs, and returns a page-aligned buffer for it.
func (x *fsx) aligned(off, n int64) (int64, int64, []byte) {
	const page = 4096
	off = off / page * page
	n = max(page, (n+page-1)/page*page)
	n = min(n, x.size-off)
	buf := make([]byte, n+page)
	shift := int((page - uintptr(unsafe.Pointer(&buf[0]))%page) % page)
	return off, n, buf[shift : shift+int(n)]
}

func (x *fsx) writeDirect(off, n int64) {
	off, n, buf := x.aligned(off, n)
	copy(buf, x.data(n))
	if _, err := x.direct.WriteAt(buf, off); err != nil {
		x.fail("O_DIRECT write: %v", err)
	}
	copy(x.model[off:], buf)
}

func (x *fsx) readDirect(off, n int64) {
	off, _, buf := x.aligned(off, n)
	if _, err := x.direct.ReadAt(buf, off); err != nil {
		x.fail("O_DIRECT read: %v", err)
	}
	x.expect(buf, off, "O_DIRECT read")
}

// mapping maps the pages around off+n shared and returns the mapping and
// where off falls in it.
func (x *fsx) mapping(off, n int64, prot int) ([]byte, int64) {
	start := off / 4096 * 4096
	m, err := unix.Mmap(int(x.buffered.Fd()), start, int(off+n-start), prot, unix.MAP_SHARED)
	if err != nil {
		x.fail("mmap: %v", err)
	}
	return m, off - start
}

func (x *fsx) mapWrite(off, n int64) {
	m, at := x.mapping(off, n, unix.PROT_READ|unix.PROT_WRITE)
	b := x.data(n)
	copy(m[at:], b)
	// As fsx does: msync before munmap, so the pages reach the file.
	if err := unix.Msync(m, unix.MS_SYNC); err != nil {
		x.fail("msync: %v", err)
	}
	if err := unix.Munmap(m); err != nil {
		x.fail("munmap: %v", err)
	}
	copy(x.model[off:], b)
}

func (x *fsx) mapRead(off, n int64) {
	m, at := x.mapping(off, n, unix.PROT_READ)
	got := bytes.Clone(m[at : at+n])
	if err := unix.Munmap(m); err != nil {
		x.fail("munmap: %v", err)
	}
	x.expect(got, off, "mapped read")
}

func (x *fsx) punch(off, n int64) {
	if err := unix.Fallocate(int(x.buffered.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
		x.fail("punch hole: %v", err)
	}
	clear(x.model[off : off+n])
}

func (x *fsx) zero(off, n int64) {
	if err := unix.Fallocate(int(x.buffered.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
		x.fail("zero range: %v", err)
	}
	clear(x.model[off : off+n])
}

// copyRange copies n bytes at off to another place in the file with
// copy_file_range (the ranges may not overlap).
func (x *fsx) copyRange(off, n int64) {
	dst := x.rng.Int64N(x.size - n + 1)
	if dst < off+n && off < dst+n {
		return
	}
	src, to := off, dst
	for done := int64(0); done < n; {
		c, err := unix.CopyFileRange(int(x.buffered.Fd()), &src, int(x.buffered.Fd()), &to, int(n-done), 0)
		if err != nil {
			x.fail("copy_file_range %d+%d to %d: %v", off, n, dst, err)
		}
		if c == 0 {
			x.fail("copy_file_range %d+%d to %d: copied nothing after %d bytes", off, n, dst, done)
		}
		done += int64(c)
	}
	copy(x.model[dst:dst+n], x.model[off:off+n])
}
