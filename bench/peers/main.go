// Command peers measures rowfs against what users would otherwise run, in
// one invocation (make bench):
//
//   - fio: the matrix of issue 5 on a raw file, a go-fuse passthrough,
//     qemu-storage-daemon exporting a raw file and qcow2 images (flat and on
//     backing chains), and rowfs volumes (flat and on snapshot chains), with
//     the configurations interleaved round by round and medians reported;
//   - snapshot operations: rowfs create/rollback/delete-merge against
//     qemu-img snapshot -c/-a/-d and qemu-img commit;
//   - memory: rowfsd's RSS against the number of mapped blocks;
//   - memory against the number of snapshots kept (64 rounds of a snapshot
//     and 20,000 random writes);
//   - the snapshots.json xattr of a volume with up to 2,000 snapshots.
//
// It writes bench/results/<date>-<host>.md and a chart of random-read IOPS
// against chain depth beside it.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

func main() {
	var b bench
	bin := flag.String("bin", "bin", "directory with rowfsd, rowctl and passthrough")
	work := flag.String("work", "", "scratch directory on the local disk (default: a new one in /var/tmp)")
	rounds := flag.Int("rounds", 3, "interleaved rounds; medians are reported")
	runtime := flag.Float64("runtime", 2.5, "seconds measured per fio run")
	ramp := flag.Float64("ramp", 0.5, "seconds of warm-up before each fio run")
	size := flag.String("size", "1G", "working set of each fio target")
	big := flag.Uint64("big", 16, "GiB written for the large snapshot-operation case")
	sections := flag.String("sections", "fio,snapshots,keep,scale,xattr,metrics,backup", "what to run: fio, snapshots (memory is measured with snapshots), keep (memory against snapshots kept), scale, xattr, metrics (their cost on the I/O path), backup (dir:// and s3:// on a test RGW)")
	backupSize := flag.String("backup-size", "4G", "volume size of the backup section's dir:// run")
	backupS3Size := flag.String("backup-s3-size", "1G", "volume size of its s3:// run (the test RGW keeps data in memory)")
	scaleVolumes := flag.Int("scale-volumes", 1000, "volumes of the scale section")
	scaleSnapshots := flag.Int("scale-snapshots", 100, "snapshots of each volume in the scale section")
	keepGiB := flag.Uint64("keep-size", 16, "GiB of the volume the keep section fills")
	keepHeap := flag.String("keep-heap-profile", "", "write rowfsd's heap profile after the keep section's last round to this file")
	keepBlockSize := flag.String("keep-block-size", "64K", "block size of the keep section's pool (the section needs ~21 GiB of scratch space)")
	out := flag.String("out", "bench/results", "results directory")
	flag.Parse()

	n, err := api.ParseSize(*size)
	check(err)
	b.size, b.bin = int64(n), *bin
	if b.work = *work; b.work == "" {
		b.work, err = os.MkdirTemp("/var/tmp", "rowfs-bench-")
		check(err)
		atExit(func() { os.RemoveAll(b.work) })
	}
	defer cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		cleanup()
		os.Exit(1)
	}()
	check(b.checkSpace(*big))
	rev, _ := exec.Command("git", "describe", "--always", "--dirty").Output()
	rep := report{revision: strings.TrimSpace(string(rev)), args: os.Args[1:], started: time.Now(), rounds: *rounds, runtime: *runtime, ramp: *ramp, size: b.size, big: *big}
	check(os.MkdirAll(*out, 0o755))
	host, _ := os.Hostname()
	base := filepath.Join(*out, rep.started.UTC().Format("2006-01-02")+"-"+host)
	save := func() { // after each section, so a late failure keeps what was measured
		rep.finished = time.Now()
		chart := ""
		if rep.fio != nil {
			chart = base + "-chain-depth.svg"
			check(rep.chart(chart))
		}
		check(os.WriteFile(base+".md", []byte(rep.markdown(filepath.Base(chart))), 0o644))
		log.Printf("wrote %s.md after %s", base, rep.finished.Sub(rep.started).Round(time.Second))
	}
	if strings.Contains(*sections, "fio") {
		rep.fio, rep.targets = b.fioMatrix(*rounds, *ramp, *runtime)
		save()
	}
	if strings.Contains(*sections, "snapshots") {
		rep.rowfsOps, rep.memory = b.rowfsSnapshotOps([]uint64{1, *big})
		rep.qemuOps = b.qemuSnapshotOps([]uint64{1, *big})
		save()
	}
	if strings.Contains(*sections, "keep") {
		rep.keepGiB, rep.keepBlockSize = *keepGiB, *keepBlockSize
		rep.keep = b.keepSnapshots(*keepGiB, *keepBlockSize, *keepHeap)
		save()
	}
	if strings.Contains(*sections, "scale") {
		s := b.poolScale(*scaleVolumes, *scaleSnapshots)
		rep.scale = &s
		save()
	}
	if strings.Contains(*sections, "xattr") {
		rep.xattr = b.snapshotsXattr()
		save()
	}
	if strings.Contains(*sections, "backup") {
		bs, err := api.ParseSize(*backupSize)
		check(err)
		s3s, err := api.ParseSize(*backupS3Size)
		check(err)
		rep.backups = b.backupSection(int64(bs), int64(s3s))
		save()
	}
	if strings.Contains(*sections, "metrics") {
		c := b.metricsCost(max(*rounds, 5), *ramp, *runtime)
		rep.metrics = &c
		save()
	}
	fmt.Print(rep.markdown(filepath.Base(base) + "-chain-depth.svg"))
}

// checkSpace refuses to start without room for every target: the fio
// targets, and for the snapshot operations a rowfs pool, then a qcow2 image
// and a layer of big GiB each.
func (b *bench) checkSpace(big uint64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(b.work, &st); err != nil {
		return err
	}
	need := uint64(len(chainDepths)*2+3)*uint64(b.size) + (2*big+2)<<30
	if free := st.Bavail * uint64(st.Bsize); free < need {
		return fmt.Errorf("%s has %s free; the benchmark needs %s (use --work elsewhere or a smaller --big)",
			b.work, api.FormatSize(free), api.FormatSize(need))
	}
	return nil
}

// chainDepths are the qcow2 and rowfs targets: flat, then chains. Depth 1
// separates what the first write after any snapshot costs (copy-on-write of
// a 64 KiB cluster or block) from what depth itself costs.
var chainDepths = []int{0, 1, 32, 128}

// fioMatrix starts every target, lays down its data, and runs the matrix
// round by round, each line on every target in turn (A B C … A B C …).
func (b *bench) fioMatrix(rounds int, ramp, runtime float64) (map[string]map[string][]float64, []*target) {
	setup := time.Now()
	var targets []*target
	defer func() {
		for _, t := range targets {
			t.stop()
		}
	}()
	add := func(t *target) {
		t.stop = atExit(t.stop)
		targets = append(targets, t)
		log.Printf("target %-22s %s", t.name(), t.file)
	}
	add(b.rawFile())
	add(b.passthrough())
	add(b.qsdRaw())
	for _, depth := range chainDepths {
		add(b.qcow2Chain(depth))
	}
	d := b.startRowfsd("rowfs")
	defer d.stop()
	for _, depth := range chainDepths {
		add(d.volume(fmt.Sprintf("d%d", depth), b.size, depth))
	}
	for _, t := range targets {
		if t.depth == 0 { // flat targets: every block written, so reads hit data
			_, err := fio(t.file, prefill, b.size, 0, 0)
			check(err)
		}
	}
	log.Printf("targets ready in %s", time.Since(setup).Round(time.Millisecond))

	results := map[string]map[string][]float64{} // job → target → one value per round
	total, done, start := rounds*len(jobs)*len(targets), 0, time.Now()
	for r := range rounds {
		for _, j := range jobs {
			if results[j.name()] == nil {
				results[j.name()] = map[string][]float64{}
			}
			for _, t := range targets {
				check(t.prepare(j))
				v, err := fio(t.file, j, b.size, ramp, runtime)
				check(err)
				results[j.name()][t.name()] = append(results[j.name()][t.name()], v)
				done++
				eta := time.Duration(float64(time.Since(start)) / float64(done) * float64(total-done))
				log.Printf("[%3d/%d, %s left] round %d %-28s %-18s %10.0f %s",
					done, total, eta.Round(time.Second), r+1, j.name(), t.name(), v, j.unit())
			}
		}
	}
	return results, targets
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// cleanups stop what the run started, newest first, on every exit path.
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

// atExit registers f to run at exit and returns it made idempotent, so the
// caller may also run it as soon as it is done with what f stops.
func atExit(f func()) func() {
	once := sync.OnceFunc(f)
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, once)
	return once
}

func cleanup() {
	cleanupMu.Lock()
	fs := cleanups
	cleanups = nil
	cleanupMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func check(err error) {
	if err != nil {
		cleanup()
		log.Fatal(err)
	}
}
