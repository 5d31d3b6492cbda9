package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/ctl"
	"github.com/rowfs/rowfs/ctl/api"
)

func createVolume(t *testing.T, sock, name, size string) string {
	t.Helper()
	var v api.Volume
	rowctlJSON(t, sock, &v, "volume", "create", name, "--size", size)
	return v.Path
}

func poolInfo(t *testing.T, sock string) api.Pool {
	t.Helper()
	var p api.Pool
	rowctlJSON(t, sock, &p, "pool", "info")
	return p
}

// TestQemuIOPatterns: random pattern writes through qemu-io with
// cache=none (aligned) and cache=writeback (unaligned too), each read back
// with -P, then qemu-img compare against a reference file written the same way.
func TestQemuIOPatterns(t *testing.T) {
	requireE2E(t, "qemu-io", "qemu-img")
	e := newEnv(t)
	e.start()
	for _, cache := range []string{"none", "writeback"} {
		t.Run(cache, func(t *testing.T) {
			checkQemuPatterns(t, createVolume(t, e.sock, "vm-"+cache, "256M"), 256<<20, cache)
		})
	}
}

// checkQemuPatterns writes 60 random patterns through qemu-io with the
// given cache mode (aligned for O_DIRECT, unaligned otherwise), reads each
// back, and compares the file with a reference written the same way.
func checkQemuPatterns(t *testing.T, vol string, size int64, cache string) {
	t.Helper()
	aligned := cache == "none"
	ref := filepath.Join(t.TempDir(), "ref.raw")
	runCmd(t, "qemu-img", "create", "-q", "-f", "raw", ref, strconv.FormatInt(size, 10))
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var writes, reads []string
	for range 60 {
		length := 4096 + rng.Int64N(min(size/4, 1<<20)-4096+1)
		off := rng.Int64N(size - length)
		if aligned {
			length = length / 4096 * 4096
			off = off / 4096 * 4096
		}
		c := fmt.Sprintf("write -P 0x%02x %d %d", 1+rng.IntN(254), off, length)
		writes = append(writes, c)
		reads = append(reads, c, strings.Replace(c, "write", "read", 1))
	}
	qemuIO(t, vol, cache, append(reads, "flush")...)
	qemuIO(t, ref, "writeback", writes...)
	out := runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", vol, ref)
	if !strings.Contains(out, "identical") {
		t.Fatalf("qemu-img compare: %s", out)
	}
}

// TestConvertSkipsHoles: a 10 GiB volume with three small regions converts
// quickly because SEEK_DATA/SEEK_HOLE let qemu-img skip the holes.
func TestConvertSkipsHoles(t *testing.T) {
	requireE2E(t, "qemu-io", "qemu-img")
	e := newEnv(t)
	e.start()
	vol := createVolume(t, e.sock, "big", "10G")
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref.raw")
	runCmd(t, "qemu-img", "create", "-q", "-f", "raw", ref, "10G")
	regions := []string{"write -P 0x11 0 1M", "write -P 0x22 5G 64K", "write -P 0x33 10239M 1M"}
	qemuIO(t, vol, "none", regions...)
	qemuIO(t, ref, "writeback", regions...)

	var extents []struct {
		Start, Length int64
		Data          bool
	}
	if err := json.Unmarshal([]byte(runCmd(t, "qemu-img", "map", "--output=json", "-f", "raw", vol)), &extents); err != nil {
		t.Fatal(err)
	}
	var data []string
	for _, x := range extents {
		if x.Data {
			data = append(data, fmt.Sprintf("%d+%d", x.Start, x.Length))
		}
	}
	if want := []string{"0+1048576", "5368709120+65536", "10736369664+1048576"}; strings.Join(data, " ") != strings.Join(want, " ") {
		t.Fatalf("data extents %v, want %v", data, want)
	}
	out := filepath.Join(dir, "out.raw")
	start := time.Now()
	runCmd(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", vol, out)
	t.Logf("qemu-img convert of a 10 GiB volume with 2.06 MiB written: %v", time.Since(start))
	if got := runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", out, ref); !strings.Contains(got, "identical") {
		t.Fatalf("converted image differs: %s", got)
	}
}

// TestDiscardAndWriteZeroesFreeSpace: discard and write-zeroes through
// qemu-io drop the pool's used bytes and statfs's, and read as zeros.
func TestDiscardAndWriteZeroesFreeSpace(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	e.start()
	vol := createVolume(t, e.sock, "vm1", "64M")
	qemuIO(t, vol, "none", "write -P 0xaa 0 32M", "flush")
	statfsUsed := func() uint64 {
		var st unix.Statfs_t
		if err := unix.Statfs(e.mnt, &st); err != nil {
			t.Fatal(err)
		}
		return (st.Blocks - st.Bfree) * uint64(st.Bsize)
	}
	usedBefore, fsBefore := poolInfo(t, e.sock).UsedBytes, statfsUsed()
	if usedBefore < 32<<20 {
		t.Fatalf("pool used %d after writing 32 MiB", usedBefore)
	}
	qemuIO(t, vol, "none", "discard 0 16M", "write -z 16M 8M", "flush")
	qemuIO(t, vol, "none", "read -P 0 0 24M", "read -P 0xaa 24M 8M")
	usedAfter, fsAfter := poolInfo(t, e.sock).UsedBytes, statfsUsed()
	if usedBefore-usedAfter < 24<<20 {
		t.Fatalf("pool used %d → %d bytes: discard freed less than 24 MiB", usedBefore, usedAfter)
	}
	if fsBefore-fsAfter < 24<<20 {
		t.Fatalf("statfs used %d → %d bytes: discard freed less than 24 MiB", fsBefore, fsAfter)
	}
	var v api.Volume
	rowctlJSON(t, e.sock, &v, "volume", "info", "vm1")
	if v.UsedBytes != 8<<20 {
		t.Fatalf("volume uses %d bytes, want 8 MiB", v.UsedBytes)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// TestRestartKeepsData: SIGTERM, start again, checksums unchanged.
func TestRestartKeepsData(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	d := e.start()
	vols := map[string]string{}
	for i, name := range []string{"a", "b"} {
		vols[name] = createVolume(t, e.sock, name, "128M")
		qemuIO(t, vols[name], "none", fmt.Sprintf("write -P 0x%d1 0 8M", i+1), fmt.Sprintf("write -P 0x%d2 100M 3M", i+1))
	}
	sums := map[string][32]byte{}
	for name, path := range vols {
		sums[name] = fileSum(t, path)
	}
	d.stop()
	e.start()
	for name, path := range vols {
		if fileSum(t, path) != sums[name] {
			t.Errorf("volume %s changed across a restart", name)
		}
	}
}

// record layout for the crash test: a 4 KiB record holds its volume tag,
// index and write sequence number, then bytes derived from all three.
const recordSize = 4096

func makeRecord(tag byte, index int, seq uint64) []byte {
	b := make([]byte, recordSize)
	copy(b, "ROWR")
	b[4] = tag
	binaryPut(b[8:], uint64(index))
	binaryPut(b[16:], seq)
	for i := 24; i < recordSize; i++ {
		b[i] = byte(seq*31 + uint64(i)*7 + uint64(tag))
	}
	return b
}

func binaryPut(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

// parseRecord returns the record's sequence (0 for all zeros), or an error
// for anything that was never written to this volume at this index.
func parseRecord(b []byte, tag byte, index int) (uint64, error) {
	if bytes.Equal(b, make([]byte, recordSize)) {
		return 0, nil
	}
	var seq uint64
	for i := range 8 {
		seq |= uint64(b[16+i]) << (8 * i)
	}
	if !bytes.Equal(b, makeRecord(tag, index, seq)) {
		return 0, fmt.Errorf("record %d holds data never written there (tag %d, header %q)", index, b[4], b[:4])
	}
	return seq, nil
}

// crashVolume is the writer's knowledge of one volume: what the last
// completed fsync covered, and what was written after it.
type crashVolume struct {
	tag     byte
	path    string
	durable []uint64         // per record: seq covered by a completed fsync
	pending map[int][]uint64 // per record: seqs written since
}

// TestCrashKill9 runs 20 cycles of: start rowfsd, random writes with
// periodic fsync on two volumes, kill -9 at a random moment, restart; then
// everything a completed fsync covered must read back exactly, and no
// record may hold data never written to that volume at that place.
func TestCrashKill9(t *testing.T) {
	requireE2E(t)
	const records = 2048 // 8 MiB per volume
	e := newEnv(t)
	d := e.start()
	vols := []*crashVolume{}
	for i, name := range []string{"c1", "c2"} {
		vols = append(vols, &crashVolume{tag: byte(i + 1), path: createVolume(t, e.sock, name, "8M"),
			durable: make([]uint64, records), pending: map[int][]uint64{}})
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	var seq uint64
	for cycle := range 20 {
		files := make([]*os.File, len(vols))
		for i, v := range vols {
			f, err := os.OpenFile(v.path, os.O_RDWR, 0)
			if err != nil {
				t.Fatalf("cycle %d: open: %v", cycle, err)
			}
			files[i] = f
		}
		stop := make(chan struct{})
		done := make(chan error, 1)
		writerSeed := rng.Uint64()
		go func() {
			wr := rand.New(rand.NewPCG(writerSeed, 3))
			for n := 0; ; n++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				if n%16 == 15 {
					for i, v := range vols {
						if err := files[i].Sync(); err != nil {
							done <- err
							return
						}
						for idx, seqs := range v.pending {
							v.durable[idx] = seqs[len(seqs)-1]
						}
						clear(v.pending)
					}
					continue
				}
				v := wr.IntN(len(vols))
				idx := wr.IntN(records)
				seq++
				vols[v].pending[idx] = append(vols[v].pending[idx], seq)
				if _, err := files[v].WriteAt(makeRecord(vols[v].tag, idx, seq), int64(idx)*recordSize); err != nil {
					done <- err
					return
				}
			}
		}()
		time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond) // a random crash moment, not a wait
		d.kill9()
		close(stop)
		werr := <-done
		if werr != nil && !errors.Is(werr, syscall.ENOTCONN) && !errors.Is(werr, syscall.ECONNABORTED) && !errors.Is(werr, syscall.EIO) {
			t.Fatalf("cycle %d: writer: %v", cycle, werr)
		}
		for _, f := range files {
			f.Close()
		}
		d = e.start()
		checked := 0
		for _, v := range vols {
			data, err := os.ReadFile(v.path)
			if err != nil {
				t.Fatalf("cycle %d: read %s: %v", cycle, v.path, err)
			}
			for idx := range records {
				got, err := parseRecord(data[idx*recordSize:(idx+1)*recordSize], v.tag, idx)
				if err != nil {
					t.Fatalf("cycle %d: volume %d: %v", cycle, v.tag, err)
				}
				allowed := append([]uint64{v.durable[idx]}, v.pending[idx]...)
				ok := false
				for _, a := range allowed {
					ok = ok || got == a
				}
				if !ok {
					t.Fatalf("cycle %d: volume %d record %d: read seq %d, but fsync covered seq %d (later writes %v)",
						cycle, v.tag, idx, got, v.durable[idx], v.pending[idx])
				}
				v.durable[idx] = got
				checked++
			}
			clear(v.pending)
		}
		if cycle == 0 {
			t.Logf("cycle 0: %d records checked, %d writes so far", checked, seq)
		}
	}
	t.Logf("20 kill -9 cycles, %d writes, all fsync-covered data intact", seq)
}

// TestTwoVolumesConcurrently: two qemu-io processes at once, each verified.
func TestTwoVolumesConcurrently(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	e.start()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, name := range []string{"p", "q"} {
		vol := createVolume(t, e.sock, name, "128M")
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"-f", "raw", "-t", "none"}
			for j := range 32 {
				args = append(args, "-c", fmt.Sprintf("write -P 0x%x%x %dM 1M", i+1, j%16, j*4))
			}
			for j := range 32 {
				args = append(args, "-c", fmt.Sprintf("read -P 0x%x%x %dM 1M", i+1, j%16, j*4))
			}
			out, err := exec.Command("qemu-io", append(args, vol)...).CombinedOutput()
			if err != nil || strings.Contains(string(out), "failed") {
				errs <- fmt.Errorf("qemu-io on %s: %v\n%s", name, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestXattrs: values computed on demand, read-only, not listed.
func TestXattrs(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	e.start()
	vol := createVolume(t, e.sock, "vm1", "1G")
	f, err := os.OpenFile(vol, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(bytes.Repeat([]byte{1}, 128<<10))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, name string) (string, error) {
		buf := make([]byte, 64<<10)
		n, err := unix.Getxattr(path, name, buf)
		return string(buf[:max(n, 0)]), err
	}
	want := map[string]string{"user.rowfs.kind": "volume", "user.rowfs.size": "1073741824",
		"user.rowfs.used": "131072", "user.rowfs.block_size": "65536"}
	for name, w := range want {
		if got, err := get(vol, name); err != nil || got != w {
			t.Errorf("%s = %q, %v; want %q", name, got, err, w)
		}
	}
	keys, _ := get(vol, "user.rowfs.keys")
	var info string
	for name := range want {
		if !strings.Contains(keys, name+"\n") {
			t.Errorf("user.rowfs.keys lacks %s: %q", name, keys)
		}
	}
	info, err = get(vol, "user.rowfs.info.json")
	if err != nil {
		t.Fatal(err)
	}
	var fromXattr, fromCLI api.Volume
	json.Unmarshal([]byte(info), &fromXattr)
	rowctlJSON(t, e.sock, &fromCLI, "volume", "info", "vm1")
	// Open handles are live counts: the kernel sends the RELEASE of the
	// writer that just exited asynchronously, between the two reads.
	fromXattr.OpenHandles, fromXattr.Writers, fromCLI.OpenHandles, fromCLI.Writers = 0, 0, 0, 0
	if fromXattr != fromCLI {
		t.Errorf("info.json xattr %+v differs from rowctl volume info --json %+v", fromXattr, fromCLI)
	}
	if pool, err := get(e.mnt, "user.rowfs.pool.json"); err != nil || !strings.Contains(pool, `"block_size":65536`) {
		t.Errorf("pool.json on the mount root: %q, %v", pool, err)
	}
	if _, err := get(vol, "user.rowfs.nope"); !errors.Is(err, unix.ENODATA) {
		t.Errorf("unknown xattr: %v, want ENODATA", err)
	}
	if err := unix.Setxattr(vol, "user.rowfs.kind", []byte("x"), 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("setxattr user.rowfs.kind: %v, want EPERM", err)
	}
	if n, err := unix.Listxattr(vol, make([]byte, 4096)); err != nil || n != 0 {
		t.Errorf("listxattr lists %d bytes (%v); rowfs attributes must not be listed", n, err)
	}
}

// TestBadInput: each refusal has a clear message and a non-zero exit, and
// changes nothing.
func TestBadInput(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	e.start()
	vol := createVolume(t, e.sock, "keep", "1G")
	before := mustRowctl(t, e.sock, "volume", "list", "--json")
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"volume", "create", "bad/name", "--size", "1G"}, 2, "names are 1–128 characters"},
		{[]string{"volume", "create", ".hidden", "--size", "1G"}, 2, "not starting with '.'"},
		{[]string{"volume", "create", strings.Repeat("x", 129), "--size", "1G"}, 2, "names are"},
		{[]string{"volume", "create", "v", "--size", "0"}, 2, "positive multiple of 512"},
		{[]string{"volume", "create", "v", "--size", "lots"}, 2, "want a number of bytes"},
		{[]string{"volume", "create", "v", "--size", "17T"}, 2, "at most"},
		{[]string{"volume", "create", "v"}, 2, "--size is required"},
		{[]string{"volume", "create", "keep", "--size", "1G"}, 1, "already exists"},
		{[]string{"volume", "info", "ghost"}, 3, `volume "ghost"`},
		{[]string{"volume", "delete", "ghost"}, 3, `volume "ghost"`},
		{[]string{"volume", "resize", "ghost", "--size", "2G"}, 3, `volume "ghost"`},
		{[]string{"volume", "resize", "keep", "--size", "512M"}, 2, "--shrink"},
		{[]string{"volume", "frobnicate"}, 2, "unknown command"},
	}
	// With --json the same refusal is one JSON object on stderr whose code
	// (docs/cli.md) goes with the exit code.
	jsonCodes := map[int][]string{2: {api.CodeInvalidArgument, ctl.CodeUsage}, 3: {api.CodeNotFound}, 1: {api.CodeExists}}
	for _, c := range cases {
		r := rowctl(t, e.sock, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("rowctl %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), r.code, r.stderr, c.code, c.msg)
		}
		r = rowctl(t, e.sock, append(c.args, "--json")...)
		var jerr api.Error
		if err := json.Unmarshal([]byte(r.stderr), &jerr); err != nil {
			t.Errorf("rowctl %s --json: stderr is not JSON (%v): %q", strings.Join(c.args, " "), err, r.stderr)
			continue
		}
		if r.code != c.code || !slices.Contains(jsonCodes[c.code], jerr.Code) || !strings.Contains(jerr.Message, c.msg) {
			t.Errorf("rowctl %s --json: exit %d, %+v; want exit %d, a code of %v and %q", strings.Join(c.args, " "), r.code, jerr, c.code, jsonCodes[c.code], c.msg)
		}
	}
	// Deleting an open volume is refused.
	f, err := os.OpenFile(vol, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := rowctl(t, e.sock, "volume", "delete", "keep")
	f.Close()
	if r.code != 1 || !strings.Contains(r.stderr, "is open") {
		t.Errorf("delete of an open volume: exit %d, %q", r.code, r.stderr)
	}
	if after := mustRowctl(t, e.sock, "volume", "list", "--json"); after != before {
		t.Errorf("refused commands changed the volume list:\nbefore %s\nafter %s", before, after)
	}
	// No daemon on the socket.
	r = rowctl(t, filepath.Join(t.TempDir(), "none.sock"), "volume", "list")
	if r.code != 69 || !strings.Contains(r.stderr, "not reachable") {
		t.Errorf("rowctl without a daemon: exit %d, %q", r.code, r.stderr)
	}
	// A second daemon on the same pool is refused and leaves the first serving.
	second := exec.Command(filepath.Join(binDir, "rowfsd"), "--pool", e.pool, "--mount", filepath.Join(t.TempDir(), "m2"), "--socket", filepath.Join(t.TempDir(), "s2"))
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is held by process") {
		t.Errorf("second rowfsd on the same pool: %v, %s", err, out)
	}
	if after := mustRowctl(t, e.sock, "volume", "list", "--json"); after != before {
		t.Errorf("second daemon changed the volume list")
	}
}

// TestStaleMountCleared: after kill -9 the mount is dead (ENOTCONN); a new
// daemon clears it and serves the same data.
func TestStaleMountCleared(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	d := e.start()
	vol := createVolume(t, e.sock, "vm1", "16M")
	data := bytes.Repeat([]byte("stale"), 1000)
	f, _ := os.OpenFile(vol, os.O_RDWR, 0)
	f.WriteAt(data, 0)
	f.Sync()
	f.Close()
	d.kill9()
	if _, err := os.Stat(vol); !errors.Is(err, syscall.ENOTCONN) {
		t.Logf("after kill -9 stat gives %v (expected ENOTCONN)", err)
	}
	e.start()
	got := make([]byte, len(data))
	f, err := os.Open(vol)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.ReadAt(got, 0)
	if !bytes.Equal(got, data) {
		t.Fatal("data lost across kill -9 and stale mount clearing")
	}
}
