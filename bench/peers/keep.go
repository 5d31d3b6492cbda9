package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/ctl/api"
)

// keepPoint is rowfsd's memory after a number of {snapshot, random writes}
// rounds: what keeping snapshots costs.
type keepPoint struct {
	rounds        int
	rss, anon     uint64 // VmRSS, and RssAnon: what is not a mapped file
	badgerFiles   uint64 // resident pages of Badger's mapped files (tables, logs)
	settledRSS    uint64 // VmRSS keepSettle later, the round's work long done
	heap          uint64 // the Go heap live after a forced GC (HeapAlloc)
	mappedBlocks  uint64
	snapshotBytes uint64 // what the snapshots own (stored bytes)
}

const (
	keepWrites = 20000 // random 4 KiB writes after each snapshot
	keepRounds = 64
	// keepSettle is how long after the first sample the settled one is
	// taken: a round's commit, compaction and Badger flush finish within
	// seconds, and rowfsd returns the heap's free pages within a few more.
	keepSettle = 10 * time.Second
)

// keepSampled are the rounds after which memory is sampled.
var keepSampled = []int{1, 16, 32, 64}

// keepSnapshots fills a volume of gib GiB, then takes 64 rounds of a
// snapshot and 20,000 random 4 KiB O_DIRECT writes through the mount,
// sampling rowfsd's RSS after rounds 1, 16, 32 and 64 (issue 15).
func (b *bench) keepSnapshots(gib uint64, blockSize, heapProfile string) []keepPoint {
	ctx := context.Background()
	bs, err := api.ParseSize(blockSize)
	check(err)
	// Each random write after a snapshot redirects a block but writes only
	// its sector (at least 4 KiB, at most 32 a block): the data file is
	// sparse, so that is what it takes of the disk.
	sector := max(4<<10, bs/32)
	need := gib<<30 + keepRounds*keepWrites*sector
	var st unix.Statfs_t
	check(unix.Statfs(b.work, &st))
	if free := st.Bavail * uint64(st.Bsize); free < need {
		check(fmt.Errorf("keep: %s has %s free and the section needs %s (%d GiB filled + %d rounds × %d writes × %s sectors): use a smaller --keep-size, or --work elsewhere",
			b.work, api.FormatSize(free), api.FormatSize(need), gib, keepRounds, keepWrites, api.FormatSize(sector)))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	pprofAddr := ln.Addr().String()
	ln.Close()
	d := b.startRowfsd("keep", "--max-snapshots", "256", "--block-size", blockSize, "--pprof", pprofAddr)
	defer os.RemoveAll(b.path("keep-pool"))
	defer d.stop()
	_, err = d.client.CreateVolume(ctx, api.CreateVolumeRequest{Name: "keep", Size: gib << 30})
	check(err)
	f, err := os.OpenFile(d.path("keep"), os.O_RDWR|unix.O_DIRECT, 0)
	check(err)
	defer f.Close()
	fill(f, gib)
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE) // aligned for O_DIRECT
	check(err)
	defer unix.Munmap(buf)
	rng := rand.New(rand.NewPCG(15, 15))
	pages := int64(gib<<30) / 4096
	var out []keepPoint
	start := time.Now()
	for round := 1; round <= keepRounds; round++ {
		_, err := d.client.CreateSnapshot(ctx, "keep", api.CreateSnapshotRequest{Name: fmt.Sprintf("k%02d", round)})
		check(err)
		for range keepWrites {
			buf[0], buf[1] = byte(round), byte(rng.Uint32())
			_, err := f.WriteAt(buf, rng.Int64N(pages)*4096)
			check(err)
		}
		if !containsInt(keepSampled, round) {
			continue
		}
		check(f.Sync())
		time.Sleep(2 * time.Second) // let the background compaction of the newest snapshot run
		p, err := d.client.Pool(ctx)
		check(err)
		v, err := d.client.Volume(ctx, "keep")
		check(err)
		rss, _ := residentMemory(d.cmd.Process.Pid)
		pt := keepPoint{rounds: round, rss: rss, anon: anonMemory(d.cmd.Process.Pid), badgerFiles: residentUnder(d.cmd.Process.Pid, b.path("keep-pool")),
			mappedBlocks: p.UsedBytes / p.BlockSize, snapshotBytes: v.SnapshotBytes}
		time.Sleep(keepSettle)
		pt.settledRSS, _ = residentMemory(d.cmd.Process.Pid)
		pt.heap = liveHeap(pprofAddr) // last: it forces a collection
		log.Printf("keeping snapshots: round %d of %d after %s: RSS %s (anonymous %s, Badger's files %s; %s later %s; live heap %s), %d mapped blocks, snapshots own %s",
			round, keepRounds, time.Since(start).Round(time.Second), api.FormatSize(rss), api.FormatSize(pt.anon), api.FormatSize(pt.badgerFiles), keepSettle, api.FormatSize(pt.settledRSS), api.FormatSize(pt.heap), pt.mappedBlocks, api.FormatSize(pt.snapshotBytes))
		out = append(out, pt)
	}
	if heapProfile != "" { // what the memory is, after the last round
		resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap?gc=1")
		check(err)
		defer resp.Body.Close()
		f, err := os.Create(heapProfile)
		check(err)
		defer f.Close()
		_, err = io.Copy(f, resp.Body)
		check(err)
		log.Printf("rowfsd's heap profile after round %d: %s (go tool pprof bin/rowfsd %s)", keepRounds, heapProfile, heapProfile)
	}
	return out
}

// liveHeap is the daemon's Go heap after a forced collection: its heap
// profile with gc=1 (net/http/pprof collects first) ends with the
// runtime's MemStats, HeapAlloc among them. RSS moves by tens of MiB with
// when the collector last ran; this does not.
func liveHeap(addr string) uint64 {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1&debug=1")
	check(err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			check(err)
			return n
		}
	}
	check(fmt.Errorf("no HeapAlloc in rowfsd's heap profile"))
	return 0
}

// residentUnder sums the resident pages of pid's mappings of files under
// dir, from /proc/pid/smaps: Badger's tables and write-ahead logs.
func residentUnder(pid int, dir string) uint64 {
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	check(err)
	var sum uint64
	in := false
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && strings.HasPrefix(f[5], dir+"/")
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			kib, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			sum += kib << 10
		}
	}
	return sum
}

// anonMemory reads RssAnon of pid: resident memory that is not a mapped
// file (not rowfsd's text, its libraries' or Badger's tables and logs).
func anonMemory(pid int) uint64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kib, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib << 10
		}
	}
	return 0
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (r *report) keepTable(w func(string, ...any)) {
	w("## Memory against snapshots kept\n\nA %d GiB volume (%s blocks) filled, then rounds of {snapshot, %d random 4 KiB O_DIRECT writes through the mount}; rowfsd's VmRSS, RssAnon (VmRSS less every mapped file: rowfsd's text, its libraries, Badger's files) and the resident pages of Badger's mapped files (tables, write-ahead logs) after the round, 2 s after an fsync, so the background compaction of the newest snapshot has run; VmRSS again %s later (settled: the round's Badger flush done and the heap's free pages returned); the live heap after that, by a forced collection.\n\n",
		r.keepGiB, r.keepBlockSize, keepWrites, keepSettle)
	w("| rounds | RSS | anonymous | Badger's files | RSS settled | live heap | mapped blocks | snapshots own | goal: RSS ≤ 64 MiB + 16 B/mapped block |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, p := range r.keep {
		limit := uint64(goalRSSBase) + goalRSSPerBlock*p.mappedBlocks
		w("| %d | %s | %s | %s | %s | %s | %d | %s | %s of %s: %s; settled: %s |\n", p.rounds, api.FormatSize(p.rss), api.FormatSize(p.anon), api.FormatSize(p.badgerFiles), api.FormatSize(p.settledRSS), api.FormatSize(p.heap), p.mappedBlocks, api.FormatSize(p.snapshotBytes),
			api.FormatSize(p.rss), api.FormatSize(limit), verdict(p.rss <= limit), verdict(p.settledRSS <= limit))
	}
	if n := len(r.keep); n >= 2 {
		first, last := r.keep[0], r.keep[n-1]
		grown := int64(last.rss) - int64(first.rss)
		// The new blocks are the mapped ones: what the snapshots own is
		// counted in stored bytes (partly written blocks by their
		// sectors), and the head owns one round's blocks at both points.
		ownedBlocks := last.mappedBlocks - first.mappedBlocks
		limit := int64(16*ownedBlocks) + 4096*int64(last.rounds-first.rounds)
		anon := int64(last.anon) - int64(first.anon)
		heap := int64(last.heap) - int64(first.heap)
		w("\nRSS(%d) − RSS(%d) = %s (anonymous: %s); goal ≤ 16 B per block the snapshots own (%d more) + 4 KiB per snapshot = %s: %s\n\n",
			last.rounds, first.rounds, api.FormatSize(uint64(max(grown, 0))), api.FormatSize(uint64(max(anon, 0))), ownedBlocks, api.FormatSize(uint64(limit)), verdict(grown <= limit))
		settled := int64(last.settledRSS) - int64(first.settledRSS)
		w("Settled RSS(%d) − settled RSS(%d) = %s, the same goal: %s.\n\n",
			last.rounds, first.rounds, api.FormatSize(uint64(max(settled, 0))), verdict(settled <= limit))
		w("Live heap(%d) − live heap(%d) = %s, the same goal: %s (RSS moves by tens of MiB with when the collector last ran; the live heap after a forced collection does not).\n\n",
			last.rounds, first.rounds, api.FormatSize(uint64(max(heap, 0))), verdict(heap <= limit))
	}
}
