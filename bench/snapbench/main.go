// Command snapbench measures the snapshot operations of the engine
// directly (no FUSE): snapshot create latency against data written,
// random 4 KiB read rate against chain depth, and delete-merge time of a
// snapshot owning 1 GiB. It prints a Markdown table; make bench runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/rowfs/rowfs/rowengine"
)

func main() {
	dir := flag.String("dir", "", "scratch directory (default: a new temporary one)")
	big := flag.Uint64("big", 16, "GiB written for the large snapshot-create case")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "snapbench-")
		check(err)
		*dir = d
	}
	defer os.RemoveAll(*dir)
	fmt.Println("| measurement | result |")
	fmt.Println("|---|---|")
	for _, gib := range []uint64{1, *big} {
		p50, p99 := createLatency(*dir+fmt.Sprintf("/create%d", gib), gib)
		fmt.Printf("| snapshot create, %d GiB written (64 KiB blocks) | p50 %s, p99 %s |\n", gib, p50, p99)
	}
	flat, deep := readRates(*dir + "/reads")
	fmt.Printf("| random 4 KiB reads, 1 GiB spread over 1 snapshot | %.0f reads/s |\n", flat)
	fmt.Printf("| random 4 KiB reads, 1 GiB spread over 128 snapshots | %.0f reads/s (%.0f%% of 1 snapshot) |\n", deep, 100*deep/flat)
	d, written := deleteMerge(*dir + "/merge")
	fmt.Printf("| delete-merge of a snapshot owning 1 GiB | %s, %d data bytes written |\n", d, written)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "snapbench:", err)
		os.Exit(1)
	}
}

func openPool(dir string) *rowengine.Pool {
	p, err := rowengine.Open(dir, rowengine.Options{Logger: slog.New(slog.DiscardHandler), MaxSnapshots: 1024})
	check(err)
	return p
}

// fill writes gib GiB from offset 0 in 4 MiB writes.
func fill(p *rowengine.Pool, vol string, gib uint64, tag byte) {
	h, err := p.OpenVolume(vol, true)
	check(err)
	defer h.Close()
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = tag + byte(i)
	}
	for off := uint64(0); off < gib<<30; off += uint64(len(buf)) {
		_, err := h.WriteAt(buf, int64(off))
		check(err)
	}
	check(p.Sync())
}

func createLatency(dir string, gib uint64) (time.Duration, time.Duration) {
	p := openPool(dir)
	defer p.Close()
	_, err := p.CreateVolume("vm", gib<<30)
	check(err)
	fill(p, "vm", gib, 1)
	h, err := p.OpenVolume("vm", true)
	check(err)
	defer h.Close()
	var times []time.Duration
	for i := range 100 {
		_, err := h.WriteAt([]byte{byte(i)}, int64(i)<<16) // each snapshot holds a change
		check(err)
		start := time.Now()
		_, err = p.CreateSnapshot("vm", fmt.Sprintf("s%d", i), rowengine.SnapshotOptions{})
		check(err)
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	return times[len(times)/2], times[len(times)*99/100]
}

func readRates(dir string) (flat, deep float64) {
	measure := func(snapshots int) float64 {
		p := openPool(fmt.Sprintf("%s-%d", dir, snapshots))
		defer p.Close()
		const size = 1 << 30
		_, err := p.CreateVolume("vm", size)
		check(err)
		h, err := p.OpenVolume("vm", true)
		check(err)
		defer h.Close()
		block := make([]byte, 64<<10)
		blocks := size / len(block)
		for s := range snapshots {
			for b := s; b < blocks; b += snapshots {
				_, err := h.WriteAt(block, int64(b*len(block)))
				check(err)
			}
			_, err := p.CreateSnapshot("vm", fmt.Sprintf("s%d", s), rowengine.SnapshotOptions{})
			check(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 4096)
		const reads = 400000
		start := time.Now()
		for range reads {
			_, err := h.ReadAt(buf, int64(rng.IntN(size/4096))*4096)
			check(err)
		}
		return reads / time.Since(start).Seconds()
	}
	return measure(1), measure(128)
}

func deleteMerge(dir string) (time.Duration, uint64) {
	p := openPool(dir)
	defer p.Close()
	_, err := p.CreateVolume("vm", 2<<30)
	check(err)
	fill(p, "vm", 1, 3)
	_, err = p.CreateSnapshot("vm", "big", rowengine.SnapshotOptions{})
	check(err)
	_, err = p.CreateSnapshot("vm", "next", rowengine.SnapshotOptions{})
	check(err)
	before := p.Info().DataBytesWritten
	start := time.Now()
	res, err := p.DeleteSnapshot("vm", "big", rowengine.DeleteOptions{})
	check(err)
	_, err = p.WaitJob(context.Background(), res.Job.ID)
	check(err)
	return time.Since(start), p.Info().DataBytesWritten - before
}
