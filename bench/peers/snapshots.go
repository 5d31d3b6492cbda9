package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

// snapshotCreates is how many snapshots each case takes for the create
// latency percentiles; qemu-img pays a process start for each, so it gets
// fewer.
const (
	rowfsCreates = 100
	qemuCreates  = 10
)

// opsResult is one system's snapshot operations with gib GiB written.
type opsResult struct {
	gib                  uint64
	createP50, createP99 time.Duration
	rollback             time.Duration // rowfs rollback / qemu-img snapshot -a
	delete               time.Duration // rowfs delete-merge / qemu-img snapshot -d
	deleteBytes          uint64        // data bytes written by the delete
	commit               time.Duration // qemu-img commit of a gib GiB layer
	commitBytes          uint64
	processFloor         time.Duration // qemu-img's cost of starting at all
}

// memoryPoint is rowfsd's resident memory at one moment.
type memoryPoint struct {
	moment        string
	mappedBlocks  uint64
	rss, peakRSS  uint64
	blockSize     uint64
	snapshotCount int
}

// rowfsSnapshotOps times snapshot create, rollback and delete-merge through
// the control API of a real rowfsd, after writing each size through the
// mount, and samples the daemon's memory as the pool fills.
func (b *bench) rowfsSnapshotOps(gibs []uint64) ([]opsResult, []memoryPoint) {
	ctx := context.Background()
	d := b.startRowfsd("snap")
	defer os.RemoveAll(b.path("snap-pool"))
	defer d.stop() // before the removal: deferred calls run last first
	var mem []memoryPoint
	snapshots := 0
	sample := func(moment string) {
		p, err := d.client.Pool(ctx)
		check(err)
		rss, peak := residentMemory(d.cmd.Process.Pid)
		mem = append(mem, memoryPoint{moment: moment, mappedBlocks: p.UsedBytes / p.BlockSize, rss: rss, peakRSS: peak,
			blockSize: p.BlockSize, snapshotCount: snapshots})
	}
	sample("empty pool")
	var results []opsResult
	for _, gib := range gibs {
		name := fmt.Sprintf("v%dg", gib)
		_, err := d.client.CreateVolume(ctx, api.CreateVolumeRequest{Name: name, Size: gib << 30})
		check(err)
		f, err := os.OpenFile(d.path(name), os.O_RDWR, 0)
		check(err)
		fill(f, gib)
		sample(fmt.Sprintf("%d GiB written", gib))

		r := opsResult{gib: gib}
		var times []time.Duration
		for i := range rowfsCreates {
			if i > 0 { // each snapshot holds a change
				_, err := f.WriteAt([]byte{byte(i)}, int64(i)*clusterSize*7)
				check(err)
			}
			start := time.Now()
			_, err := d.client.CreateSnapshot(ctx, name, api.CreateSnapshotRequest{Name: fmt.Sprintf("s%d", i)})
			check(err)
			times = append(times, time.Since(start))
		}
		snapshots += rowfsCreates
		r.createP50, r.createP99 = percentiles(times)
		check(f.Close())
		sample(fmt.Sprintf("%d GiB written, %d snapshots", gib, rowfsCreates))

		start := time.Now()
		res, err := d.client.Rollback(ctx, name, api.RollbackRequest{Snapshot: fmt.Sprintf("s%d", rowfsCreates/2)})
		check(err)
		r.rollback = time.Since(start)
		if res.Job != nil {
			_, err = d.client.WaitJob(ctx, res.Job.ID, nil)
			check(err)
		}

		before, err := d.client.Pool(ctx)
		check(err)
		start = time.Now()
		del, err := d.client.DeleteSnapshot(ctx, name, "s0", false, false) // s0 owns the fill
		check(err)
		if del.Job != nil {
			j, err := d.client.WaitJob(ctx, del.Job.ID, nil)
			check(err)
			r.delete = j.Finished.Sub(start) // not the poll that saw it finish
		} else {
			r.delete = time.Since(start)
		}
		after, err := d.client.Pool(ctx)
		check(err)
		r.deleteBytes = after.DataBytesWritten - before.DataBytesWritten
		snapshots--
		log.Printf("rowfs, %d GiB: create p50 %s p99 %s, rollback %s, delete-merge %s (%d data bytes written)",
			gib, r.createP50, r.createP99, r.rollback, r.delete, r.deleteBytes)
		results = append(results, r)
	}
	return results, mem
}

func (d *rowfsd) path(volume string) string { return d.mount + "/" + volume }

// fill writes gib GiB from offset 0 in 4 MiB writes and syncs.
func fill(f *os.File, gib uint64) {
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	start := time.Now()
	for off := uint64(0); off < gib<<30; off += uint64(len(buf)) {
		_, err := f.WriteAt(buf, int64(off))
		check(err)
		if done := off + uint64(len(buf)); done%(4<<30) == 0 {
			log.Printf("filling %s: %d of %d GiB", f.Name(), done>>30, gib)
		}
	}
	check(f.Sync())
	log.Printf("filled %s with %d GiB in %s", f.Name(), gib, time.Since(start).Round(time.Millisecond))
}

// residentMemory reads VmRSS and VmHWM of pid, in bytes.
func residentMemory(pid int) (rss, peak uint64) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, line := range strings.Split(string(status), "\n") {
		key, value, _ := strings.Cut(line, ":")
		kib, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch key {
		case "VmRSS":
			rss = kib << 10
		case "VmHWM":
			peak = kib << 10
		}
	}
	return rss, peak
}

func percentiles(times []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(times)
	slices.Sort(s)
	return s[len(s)/2], s[(len(s)*99+99)/100-1]
}

// qemuSnapshotOps times qemu-img's internal snapshots (-c, -a, -d) on a
// qcow2 image with each size written, and qemu-img commit of an external
// layer of that size into it.
func (b *bench) qemuSnapshotOps(gibs []uint64) []opsResult {
	timed := func(name string, args ...string) time.Duration {
		start := time.Now()
		check(run(name, args...))
		return time.Since(start)
	}
	var results []opsResult
	for _, gib := range gibs {
		r := opsResult{gib: gib}
		img, overlay := b.path(fmt.Sprintf("qemu-%dg.qcow2", gib)), b.path(fmt.Sprintf("qemu-%dg-layer.qcow2", gib))
		check(run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=64k", img, fmt.Sprintf("%dG", gib)))
		b.qemuFill(img, gib)

		r.processFloor = timed("qemu-img", "snapshot", "-l", img)
		for range 2 {
			r.processFloor = min(r.processFloor, timed("qemu-img", "snapshot", "-l", img))
		}
		var times []time.Duration
		for i := range qemuCreates {
			if i > 0 {
				check(run("qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -q -P %d %d 512", i, int64(i)*clusterSize*7), img))
			}
			times = append(times, timed("qemu-img", "snapshot", "-c", fmt.Sprintf("s%d", i), img))
		}
		r.createP50, r.createP99 = percentiles(times)
		r.rollback = timed("qemu-img", "snapshot", "-a", fmt.Sprintf("s%d", qemuCreates/2), img)
		r.delete = timed("qemu-img", "snapshot", "-d", "s0", img)
		for i := 1; i < qemuCreates; i++ { // so commit writes in place, not copy-on-write
			check(run("qemu-img", "snapshot", "-d", fmt.Sprintf("s%d", i), img))
		}

		check(run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=64k", "-b", img, "-F", "qcow2", overlay))
		b.qemuFill(overlay, gib)
		r.commit = timed("qemu-img", "commit", "-q", overlay)
		r.commitBytes = gib << 30
		log.Printf("qemu-img, %d GiB: snapshot -c p50 %s p99 %s, -a %s, -d %s, commit %s (process floor %s)",
			gib, r.createP50, r.createP99, r.rollback, r.delete, r.commit, r.processFloor)
		check(os.Remove(overlay))
		check(os.Remove(img))
		results = append(results, r)
	}
	return results
}

// qemuFill writes gib GiB into a qcow2 image through qemu-storage-daemon's
// FUSE export with fio (qemu-io writes about 170 MB/s here; this is ~20x faster).
func (b *bench) qemuFill(image string, gib uint64) {
	start := time.Now()
	q := &qsd{image: image, format: "qcow2", mountpoint: image + ".export", pidfile: image + ".pid"}
	check(q.start())
	_, err := fio(q.mountpoint, prefill, int64(gib<<30), 0, 0)
	q.stop()
	check(err)
	check(os.Remove(q.mountpoint))
	log.Printf("filled %s with %d GiB in %s", image, gib, time.Since(start).Round(time.Millisecond))
}
