package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"time"

	"github.com/pkg/xattr"

	"github.com/rowfs/rowfs/ctl/api"
)

// xattrPoint is how long one getxattr of user.rowfs.snapshots.json takes
// on a volume with snapshots snapshots (median of xattrReads).
type xattrPoint struct {
	snapshots int
	median    time.Duration
	bytes     int
}

const (
	xattrReads = 9
	// goalSnapshotsXattr is issue 13's goal for 2,000 snapshots.
	goalSnapshotsXattr = 50 * time.Millisecond
)

// xattrCounts are the snapshot counts the xattr is read at.
var xattrCounts = []int{16, 128, 2000}

// snapshotsXattr times getxattr user.rowfs.snapshots.json through the
// mount of a real rowfsd as one volume's snapshots grow to 2,000.
func (b *bench) snapshotsXattr() []xattrPoint {
	ctx := context.Background()
	d := b.startRowfsd("xattr", "--max-snapshots", "4096")
	defer os.RemoveAll(b.path("xattr-pool"))
	defer d.stop()
	_, err := d.client.CreateVolume(ctx, api.CreateVolumeRequest{Name: "many", Size: 64 << 20})
	check(err)
	var out []xattrPoint
	made := 0
	for _, n := range xattrCounts {
		for ; made < n; made++ {
			_, err := d.client.CreateSnapshot(ctx, "many", api.CreateSnapshotRequest{Name: fmt.Sprintf("s%04d", made),
				Description: "a snapshot among many, with a description as users write them"})
			check(err)
		}
		var times []time.Duration
		size := 0
		for range xattrReads {
			start := time.Now()
			v, err := xattr.Get(d.path("many"), "user.rowfs.snapshots.json")
			check(err)
			times = append(times, time.Since(start))
			size = len(v)
		}
		slices.Sort(times)
		p := xattrPoint{snapshots: n, median: times[len(times)/2], bytes: size}
		log.Printf("snapshots.json with %d snapshots: %s (%d bytes)", n, p.median, p.bytes)
		out = append(out, p)
	}
	return out
}

func (r *report) xattrTable(w func(string, ...any)) {
	w("## Snapshot list as an xattr\n\n`getxattr user.rowfs.snapshots.json` through the mount (median of %d reads; the document keeps the newest snapshots that fit in 64 KiB).\n\n", xattrReads)
	w("| snapshots | time | bytes | goal (2,000: ≤ %s) |\n|---:|---:|---:|---|\n", goalSnapshotsXattr)
	for _, p := range r.xattr {
		goal := ""
		if p.snapshots == 2000 {
			goal = verdict(p.median <= goalSnapshotsXattr)
		}
		w("| %d | %.2f ms | %d | %s |\n", p.snapshots, float64(p.median)/float64(time.Millisecond), p.bytes, goal)
	}
	w("\n")
}
