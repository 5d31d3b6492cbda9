package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pkg/xattr"

	"github.com/rowfs/rowfs/ctl/api"
)

// scaleResult is the pool-scale section: per-volume questions on a pool of
// many volumes with many snapshots each, and the daemon's start.
type scaleResult struct {
	volumes, snapshots int
	mapEntries         uint64
	statP50, statP99   time.Duration
	infoP50, infoP99   time.Duration
	xattrP50           time.Duration
	startToReady       time.Duration
	createdIn          time.Duration
}

// Goals of issue 15.
const (
	goalScaleStat = 5 * time.Millisecond
	goalScaleInfo = 10 * time.Millisecond
)

// poolScale builds a pool of volumes × snapshots (each snapshot over one
// 4 KiB write), then times stat of volume files, volume info and the
// snapshots xattr, and the daemon's restart to ready.
func (b *bench) poolScale(volumes, snapshots int) scaleResult {
	ctx := context.Background()
	d := b.startRowfsd("scale", "--max-snapshots", "4096")
	defer os.RemoveAll(b.path("scale-pool"))
	r := scaleResult{volumes: volumes, snapshots: snapshots}
	start := time.Now()
	buf := make([]byte, 4096)
	for v := range volumes {
		name := fmt.Sprintf("v%04d", v)
		_, err := d.client.CreateVolume(ctx, api.CreateVolumeRequest{Name: name, Size: 64 << 20})
		check(err)
		f, err := os.OpenFile(d.path(name), os.O_RDWR, 0)
		check(err)
		for s := range snapshots {
			buf[0] = byte(s)
			_, err := f.WriteAt(buf, int64(s%1024)*65536)
			check(err)
			_, err = d.client.CreateSnapshot(ctx, name, api.CreateSnapshotRequest{Name: fmt.Sprintf("s%03d", s)})
			check(err)
		}
		check(f.Close())
		if v%100 == 99 {
			log.Printf("scale: %d of %d volumes with %d snapshots each, %s", v+1, volumes, snapshots, time.Since(start).Round(time.Second))
		}
	}
	r.createdIn = time.Since(start)
	p, err := d.client.Pool(ctx)
	check(err)
	r.mapEntries = p.UsedBytes / p.BlockSize
	var stats, infos, xattrs []time.Duration
	for i := range 200 {
		name := fmt.Sprintf("v%04d", (i*37)%volumes)
		t0 := time.Now()
		_, err := os.Stat(filepath.Join(d.mount, name))
		check(err)
		stats = append(stats, time.Since(t0))
		t0 = time.Now()
		_, err = d.client.Volume(ctx, name)
		check(err)
		infos = append(infos, time.Since(t0))
		if i < 20 {
			t0 = time.Now()
			_, err = xattr.Get(filepath.Join(d.mount, name), "user.rowfs.snapshots.json")
			check(err)
			xattrs = append(xattrs, time.Since(t0))
		}
	}
	r.statP50, r.statP99 = percentiles(stats)
	r.infoP50, r.infoP99 = percentiles(infos)
	slices.Sort(xattrs)
	r.xattrP50 = xattrs[len(xattrs)/2]
	d.stop()
	t0 := time.Now()
	d = b.startRowfsd("scale", "--max-snapshots", "4096")
	r.startToReady = time.Since(t0)
	d.stop()
	log.Printf("scale: %d volumes × %d snapshots: stat p99 %s, volume info p99 %s, snapshots.json p50 %s, start to ready %s",
		volumes, snapshots, r.statP99, r.infoP99, r.xattrP50, r.startToReady)
	return r
}

func (r *report) scaleTable(w func(string, ...any)) {
	s := r.scale
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	w("## Pool scale\n\n%d volumes × %d snapshots (each over a 4 KiB write), %d mapped blocks, built through the API in %s. 200 samples each.\n\n",
		s.volumes, s.snapshots, s.mapEntries, s.createdIn.Round(time.Second))
	w("| measurement | p50 | p99 | goal |\n|---|---:|---:|---|\n")
	w("| stat of a volume file | %s | %s | p99 ≤ %s: %s |\n", ms(s.statP50), ms(s.statP99), goalScaleStat, verdict(s.statP99 <= goalScaleStat))
	w("| rowctl volume info (API) | %s | %s | p99 ≤ %s: %s |\n", ms(s.infoP50), ms(s.infoP99), goalScaleInfo, verdict(s.infoP99 <= goalScaleInfo))
	w("| getxattr user.rowfs.snapshots.json | %s | | |\n", ms(s.xattrP50))
	w("| daemon start to ready (sd_notify) | %s | | reported |\n\n", ms(s.startToReady))
}
