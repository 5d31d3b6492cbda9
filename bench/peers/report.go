package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/rowfs/rowfs/ctl/api"
)

// The goals of issue 5.
const (
	goalFlatOfCeiling   = 0.90 // flat rowfs / the better FUSE ceiling, every line
	goalDeepOverQcow2   = 2.5  // rowfs d128 / qcow2 d128, 4 KiB random read and write
	goalDeepOfFlat      = 0.95 // rowfs d128 / rowfs flat, the same lines
	goalCreateP99       = 2 * time.Millisecond
	goalMergeTime       = time.Second // delete-merge of a snapshot owning 1 GiB
	goalRSSBase         = 64 << 20
	goalRSSPerBlock     = 16
	deepest             = 128
	chartJob, chartJob2 = "4k randread psync qd1", "4k randread libaio qd16"
)

type report struct {
	revision          string   // git describe when the run started
	args              []string // bench/peers's flags: a run of some sections is named as such
	started, finished time.Time
	rounds            int
	runtime, ramp     float64
	size              int64
	big               uint64
	fio               map[string]map[string][]float64 // job → target → rounds
	targets           []*target
	rowfsOps, qemuOps []opsResult
	memory            []memoryPoint
	xattr             []xattrPoint
	keep              []keepPoint
	scale             *scaleResult
	metrics           *metricsCost
	backups           []backupRun
	keepGiB           uint64
	keepBlockSize     string
}

func (r *report) value(j, t string) float64 { return median(r.fio[j][t]) }

func (r *report) markdown(chart string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# rowfs against its peers, %s\n\n", r.started.UTC().Format(time.RFC3339))
	// make bench without BENCH_ARGS runs it with --bin bin; any other
	// run is named by its flags, so a run of one section never reads as
	// the full one.
	cmd := "make bench"
	if !slices.Equal(r.args, []string{"--bin", "bin"}) {
		cmd = strings.TrimSpace("go run ./bench/peers " + strings.Join(r.args, " "))
	}
	w("Written by `%s` in %s.\n\n", cmd, r.finished.Sub(r.started).Round(time.Second))
	r.environment(w)
	if r.fio != nil {
		r.goals(w)
		r.fioTables(w)
		if chart != "" {
			w("## Random reads against chain depth\n\n![random 4 KiB read IOPS against chain depth](%s)\n\n", chart)
		}
	}
	if r.rowfsOps != nil {
		r.snapshotTable(w)
		r.memoryTable(w)
	}
	if r.xattr != nil {
		r.xattrTable(w)
	}
	if r.keep != nil {
		r.keepTable(w)
	}
	if r.scale != nil {
		r.scaleTable(w)
	}
	if r.metrics != nil {
		r.metricsTable(w)
	}
	if r.backups != nil {
		r.backupTable(w)
	}
	return b.String()
}

func (r *report) environment(w func(string, ...any)) {
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			return name + ": not found"
		}
		line, _, _ := strings.Cut(string(out), "\n")
		return strings.TrimSpace(line)
	}
	w("- machine: %d cores, %s, %s RAM, kernel %s%s\n", runtime.NumCPU(), cpuModel(), memTotal(), first("uname", "-r"), pageReporting())
	w("- versions: rowfs %s, %s, %s, %s, %s\n", r.revision, first("fio", "--version"),
		first("qemu-storage-daemon", "--version"), first("qemu-img", "--version"), runtime.Version())
	w("- fio: %d interleaved rounds (every line on every target in turn, then the next round); median of the rounds; "+
		"%.1f s measured after %.1f s of warm-up; O_DIRECT; working set %s per target\n",
		r.rounds, r.runtime, r.ramp, api.FormatSize(uint64(r.size)))
	w("- flat targets are written whole first. A chain of depth N has N layers, layer i holding every 64 KiB cluster whose index is i mod N, " +
		"under an empty active layer: qcow2 backing files (64 KiB clusters) under a fresh overlay, or N rowfs snapshots under the head.\n")
	w("- every write run on a chain starts on a fresh active layer (rowfs: rollback to the newest snapshot; qcow2: a new empty overlay, qemu-storage-daemon restarted), " +
		"so read runs read the chain and write runs measure the first writes after a snapshot at that depth.\n")
	w("- the go-fuse passthrough (`bench/passthrough`) uses rowfs's mount settings and no block map (O_SYNC writes go through an O_DSYNC descriptor); qsd is qemu-storage-daemon's FUSE export (buffered, as rowfs and the passthrough are).\n\n")
}

// pageReporting says whether the guest kernel reports free pages to its
// hypervisor, which then discards them: a page allocated afterwards faults
// on the host, so writes that need new page-cache pages (a redirect to a
// new block, a new overlay cluster) run several times slower than
// overwrites of cached ones, by how much depending on what was freed just
// before (docs/benchmarks.md).
func pageReporting() string {
	const dir = "/sys/module/page_reporting/parameters/"
	order, err := os.ReadFile(dir + "page_reporting_order")
	if err != nil {
		return ""
	}
	s := "; free page reporting to the host on (order " + strings.TrimSpace(string(order))
	if ms, err := os.ReadFile(dir + "min_free_ms"); err == nil {
		s += ", after " + strings.TrimSpace(string(ms)) + " ms free"
	}
	return s + ")"
}

func memTotal() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			var kib uint64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kib)
			return api.FormatSize(kib << 10)
		}
	}
	return "unknown"
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func pct(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }

// ceiling is the better of the two FUSE ceilings for job j.
func (r *report) ceiling(j string) float64 {
	return max(r.value(j, famPassthrough), r.value(j, famQsdRaw))
}

func (r *report) goals(w func(string, ...any)) {
	w("## Goals\n\n| goal | measured | verdict |\n|---|---|---|\n")
	worst, worstJob := 10.0, ""
	for _, j := range jobs {
		if v := r.value(j.name(), famRowfs) / r.ceiling(j.name()); v < worst {
			worst, worstJob = v, j.name()
		}
	}
	w("| every fio line on flat rowfs ≥ %s of the better FUSE ceiling | lowest: %s (%s) | %s |\n",
		pct(goalFlatOfCeiling), pct(worst), worstJob, verdict(worst >= goalFlatOfCeiling))
	deep, deepQcow2 := fmt.Sprintf("%s d%d", famRowfs, deepest), fmt.Sprintf("%s d%d", famQcow2, deepest)
	for _, j := range jobs {
		if j.bs != "4k" || j.fsync || j.sync || (j.rw != "randread" && j.rw != "randwrite") {
			continue
		}
		d := r.value(j.name(), deep)
		over, of := d/r.value(j.name(), deepQcow2), d/r.value(j.name(), famRowfs)
		w("| %s at depth %d ≥ %.1f× qcow2 d%d and ≥ %s of rowfs flat | %.2f× qcow2, %s of flat | %s |\n",
			j.name(), deepest, goalDeepOverQcow2, deepest, pct(goalDeepOfFlat), over, pct(of),
			verdict(over >= goalDeepOverQcow2 && of >= goalDeepOfFlat))
	}
	for _, o := range r.rowfsOps {
		w("| snapshot create p99 ≤ %s, %d GiB written | %s | %s |\n", goalCreateP99, o.gib, o.createP99.Round(time.Microsecond), verdict(o.createP99 <= goalCreateP99))
		if o.gib == 1 {
			w("| delete-merge of a snapshot owning 1 GiB ≤ %s, 0 data bytes copied | %s, %d bytes | %s |\n",
				goalMergeTime, o.delete.Round(time.Millisecond), o.deleteBytes, verdict(o.delete <= goalMergeTime && o.deleteBytes == 0))
		}
	}
	for _, p := range r.xattr {
		if p.snapshots == 2000 {
			w("| user.rowfs.snapshots.json with 2,000 snapshots ≤ %s | %.2f ms | %s |\n", goalSnapshotsXattr,
				float64(p.median)/float64(time.Millisecond), verdict(p.median <= goalSnapshotsXattr))
		}
	}
	for _, m := range r.memory {
		limit := uint64(goalRSSBase) + goalRSSPerBlock*m.mappedBlocks
		w("| RSS ≤ 64 MiB + 16 B per mapped block (%s) | %s of %s | %s |\n", m.moment, api.FormatSize(m.rss), api.FormatSize(limit), verdict(m.rss <= limit))
	}
	w("\n")
}

func (r *report) fioTables(w func(string, ...any)) {
	w("## fio medians\n\n| job | unit |")
	for _, t := range r.targets {
		w(" %s |", t.name())
	}
	w("\n|---|---|%s\n", strings.Repeat("---:|", len(r.targets)))
	for _, j := range jobs {
		w("| %s | %s |", j.name(), j.unit())
		for _, t := range r.targets {
			w(" %.0f |", r.value(j.name(), t.name()))
		}
		w("\n")
	}
	w("\n## Ratios\n\nd1 separates the first write after any snapshot (copy-on-write of a 64 KiB block or cluster) from what depth adds.\n\n")
	w("| job | rowfs / passthrough | rowfs / qsd raw | rowfs / raw file | rowfs d1 / rowfs | rowfs d128 / rowfs d1 | rowfs d128 / rowfs | qcow2 d128 / qcow2 | rowfs d128 / qcow2 d128 |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	deep, deepQcow2 := fmt.Sprintf("%s d%d", famRowfs, deepest), fmt.Sprintf("%s d%d", famQcow2, deepest)
	one := famRowfs + " d1"
	for _, j := range jobs {
		v := func(t string) float64 { return r.value(j.name(), t) }
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %.2f× |\n", j.name(),
			pct(v(famRowfs)/v(famPassthrough)), pct(v(famRowfs)/v(famQsdRaw)), pct(v(famRowfs)/v(famRaw)),
			pct(v(one)/v(famRowfs)), pct(v(deep)/v(one)), pct(v(deep)/v(famRowfs)), pct(v(deepQcow2)/v(famQcow2)), v(deep)/v(deepQcow2))
	}
	w("\n")
}

func (r *report) snapshotTable(w func(string, ...any)) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	w("## Snapshot operations\n\n")
	w("rowfs through the control API of a running rowfsd (a 4 KiB write through the mount before each create); qemu-img as the process users run, " +
		"internal snapshots on a qcow2 image with 64 KiB clusters (a 512-byte qemu-io write before each create). qemu-img's figures include starting the process: " +
		"the floor row is `qemu-img snapshot -l`.\n\n")
	w("| operation | GiB written | rowfs | qemu-img |\n|---|---:|---:|---:|\n")
	for i, o := range r.rowfsOps {
		if i >= len(r.qemuOps) {
			break
		}
		q := r.qemuOps[i]
		w("| snapshot create p50 (rowfs %d / qemu-img %d creates) | %d | %s | %s |\n", rowfsCreates, qemuCreates, o.gib, ms(o.createP50), ms(q.createP50))
		w("| snapshot create p99 | %d | %s | %s |\n", o.gib, ms(o.createP99), ms(q.createP99))
		w("| rollback / `snapshot -a` | %d | %s | %s |\n", o.gib, ms(o.rollback), ms(q.rollback))
		w("| delete the oldest snapshot: delete-merge / `snapshot -d` | %d | %s, %s data written | %s |\n",
			o.gib, ms(o.delete), api.FormatSize(o.deleteBytes), ms(q.delete))
		w("| merge a layer holding it all: delete-merge / `qemu-img commit` | %d | %s, %s data written | %s, %s copied |\n",
			o.gib, ms(o.delete), api.FormatSize(o.deleteBytes), ms(q.commit), api.FormatSize(q.commitBytes))
		w("| qemu-img process floor | %d | | %s |\n", o.gib, ms(q.processFloor))
	}
	w("\n")
}

func (r *report) memoryTable(w func(string, ...any)) {
	w("## rowfsd memory\n\nOne daemon, sampled as the snapshot operations above fill its pool (block size %s).\n\n", api.FormatSize(r.memory[0].blockSize))
	w("| moment | mapped blocks | snapshots | RSS | peak RSS | 64 MiB + 16 B/block |\n|---|---:|---:|---:|---:|---:|\n")
	for _, m := range r.memory {
		w("| %s | %d | %d | %s | %s | %s |\n", m.moment, m.mappedBlocks, m.snapshotCount, api.FormatSize(m.rss), api.FormatSize(m.peakRSS),
			api.FormatSize(goalRSSBase+goalRSSPerBlock*m.mappedBlocks))
	}
	w("\n")
}

// chart plots random-read IOPS against chain depth for rowfs and qcow2.
func (r *report) chart(path string) error {
	p := plot.New()
	p.Title.Text = "random 4 KiB reads against chain depth"
	p.X.Label.Text = "snapshots under the active layer"
	p.Y.Label.Text = "IOPS (median)"
	p.Y.Min = 0
	var lines []any
	for _, fam := range []string{famRowfs, famQcow2} {
		for _, j := range []string{chartJob, chartJob2} {
			var pts plotter.XYs
			for _, t := range r.targets {
				if t.family == fam {
					pts = append(pts, plotter.XY{X: float64(t.depth), Y: r.value(j, t.name())})
				}
			}
			lines = append(lines, fam+", "+j, pts)
		}
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return err
	}
	p.Legend.Top = false
	p.Legend.Left = true
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}
