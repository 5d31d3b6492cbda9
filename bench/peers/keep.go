package main

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/ctl/api"
)

// keepPoint is rowfsd's memory after a number of {snapshot, random writes}
// rounds: what keeping snapshots costs.
type keepPoint struct {
	rounds        int
	rss           uint64
	mappedBlocks  uint64
	snapshotBytes uint64 // what the snapshots own
	blockSize     uint64
}

const (
	keepWrites = 20000 // random 4 KiB writes after each snapshot
	keepRounds = 64
)

// keepSampled are the rounds after which memory is sampled.
var keepSampled = []int{1, 16, 32, 64}

// keepSnapshots fills a volume of gib GiB, then takes 64 rounds of a
// snapshot and 20,000 random 4 KiB O_DIRECT writes through the mount,
// sampling rowfsd's RSS after rounds 1, 16, 32 and 64 (issue 15).
func (b *bench) keepSnapshots(gib uint64) []keepPoint {
	ctx := context.Background()
	d := b.startRowfsd("keep", "--max-snapshots", "256")
	defer os.RemoveAll(b.path("keep-pool"))
	defer d.stop()
	_, err := d.client.CreateVolume(ctx, api.CreateVolumeRequest{Name: "keep", Size: gib << 30})
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
		pt := keepPoint{rounds: round, rss: rss, mappedBlocks: p.UsedBytes / p.BlockSize, snapshotBytes: v.SnapshotBytes, blockSize: p.BlockSize}
		log.Printf("keeping snapshots: round %d of %d after %s: RSS %s, %d mapped blocks, snapshots own %s",
			round, keepRounds, time.Since(start).Round(time.Second), api.FormatSize(rss), pt.mappedBlocks, api.FormatSize(pt.snapshotBytes))
		out = append(out, pt)
	}
	return out
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
	w("## Memory against snapshots kept\n\nA %d GiB volume filled, then rounds of {snapshot, %d random 4 KiB O_DIRECT writes through the mount}; rowfsd's VmRSS after the round (2 s after an fsync, so the background compaction of the newest snapshot has run).\n\n",
		r.keepGiB, keepWrites)
	w("| rounds | RSS | mapped blocks | snapshots own | goal: RSS ≤ 64 MiB + 16 B/mapped block |\n|---:|---:|---:|---:|---|\n")
	for _, p := range r.keep {
		limit := uint64(goalRSSBase) + goalRSSPerBlock*p.mappedBlocks
		w("| %d | %s | %d | %s | %s of %s: %s |\n", p.rounds, api.FormatSize(p.rss), p.mappedBlocks, api.FormatSize(p.snapshotBytes),
			api.FormatSize(p.rss), api.FormatSize(limit), verdict(p.rss <= limit))
	}
	if n := len(r.keep); n >= 2 {
		first, last := r.keep[0], r.keep[n-1]
		grown := int64(last.rss) - int64(first.rss)
		ownedBlocks := (last.snapshotBytes - first.snapshotBytes) / last.blockSize
		limit := int64(16*ownedBlocks) + 4096*int64(last.rounds-first.rounds)
		w("\nRSS(%d) − RSS(%d) = %s; goal ≤ 16 B per block the snapshots own (%d more) + 4 KiB per snapshot = %s: %s\n\n",
			last.rounds, first.rounds, api.FormatSize(uint64(max(grown, 0))), ownedBlocks, api.FormatSize(uint64(limit)), verdict(grown <= limit))
	}
}
