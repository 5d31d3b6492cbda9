package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rowfs/rowfs/ctl"
	"github.com/rowfs/rowfs/ctl/api"
)

// backupRun is one target's backup figures.
type backupRun struct {
	target                      string
	size                        uint64
	full, incremental, restore  time.Duration
	zstd, zstdRestore           time.Duration
	fullPoint, incrementalPoint api.BackupPoint
	stored                      uint64 // bytes of chunk objects on the target (dir only)
}

// Goals of issue 17.
const (
	goalBackupVsZstd      = 1.3
	goalIncrementalOfFull = 0.05
	goalRestoreVsZstd     = 1.3
)

// fillBackupSource writes a volume of size bytes, as issue 17 asks: half
// random data, a quarter zeros, a quarter one repeated 1 MiB pattern; to
// the volume file and to a local raw file, the same bytes.
func fillBackupSource(volumeFile, rawFile string, size int64) {
	v, err := os.OpenFile(volumeFile, os.O_WRONLY, 0)
	check(err)
	defer v.Close()
	r, err := os.Create(rawFile)
	check(err)
	defer r.Close()
	check(r.Truncate(size))
	buf := make([]byte, 1<<20)
	repeated := make([]byte, 1<<20)
	_, _ = rand.Read(repeated)
	for off := int64(0); off < size; off += int64(len(buf)) {
		switch q := off * 4 / size; q {
		case 0, 1:
			_, _ = rand.Read(buf)
		case 2:
			continue // zeros: a hole in both
		default:
			copy(buf, repeated)
		}
		_, err := v.WriteAt(buf, off)
		check(err)
		_, err = r.WriteAt(buf, off)
		check(err)
	}
	check(v.Sync())
	check(r.Sync())
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func waitJobs(c *ctl.Client, jobs []api.Job) {
	for _, j := range jobs {
		got, err := c.WaitJob(context.Background(), j.ID, nil)
		check(err)
		if got.State != "done" {
			check(fmt.Errorf("job %d: %s %s", got.ID, got.State, got.Error))
		}
	}
}

// backupBench measures a full backup, an incremental after 1% changed
// and a restore on a target, against zstd -1 -T0 of the same raw file.
func (b *bench) backupBench(name, url string, size int64, extra []string, env []string) backupRun {
	ctx := context.Background()
	d := b.startRowfsdEnv(name, env, extra...)
	defer os.RemoveAll(b.path(name + "-pool"))
	defer d.stop()
	_, err := d.client.CreateVolume(ctx, api.CreateVolumeRequest{Name: "vm", Size: uint64(size)})
	check(err)
	raw := b.path(name + "-source.raw")
	defer os.Remove(raw)
	fillBackupSource(filepath.Join(d.mount, "vm"), raw, size)
	run := backupRun{target: url, size: uint64(size)}
	run.full = timed(func() {
		res, err := d.client.CreateBackup(ctx, api.BackupRequest{Volume: "vm"})
		check(err)
		waitJobs(d.client, res.Jobs)
	})
	zst := raw + ".zst"
	defer os.Remove(zst)
	run.zstd = timed(func() { check(runQuiet("zstd", "-q", "-f", "-1", "-T0", raw, "-o", zst)) })
	// 1% changes, in 16 places.
	f, err := os.OpenFile(filepath.Join(d.mount, "vm"), os.O_WRONLY, 0)
	check(err)
	piece := make([]byte, size/100/16)
	for i := range int64(16) {
		_, _ = rand.Read(piece)
		_, err := f.WriteAt(piece, i*(size/16)+12345*4096%(size/16))
		check(err)
	}
	check(f.Sync())
	f.Close()
	run.incremental = timed(func() {
		res, err := d.client.CreateBackup(ctx, api.BackupRequest{Volume: "vm"})
		check(err)
		waitJobs(d.client, res.Jobs)
	})
	points, err := d.client.Backups(ctx, "", "vm")
	check(err)
	run.fullPoint, run.incrementalPoint = points.Points[0], points.Points[len(points.Points)-1]
	run.restore = timed(func() {
		res, err := d.client.RestoreBackup(ctx, run.fullPoint.ID, api.BackupActionRequest{To: "restored"})
		check(err)
		waitJobs(d.client, res.Jobs)
	})
	_, err = d.client.CreateVolume(ctx, api.CreateVolumeRequest{Name: "zstd", Size: uint64(size)})
	check(err)
	run.zstdRestore = timed(func() {
		check(runQuiet("zstd", "-q", "-d", "-f", zst, "-o", filepath.Join(d.mount, "zstd")))
		check(runQuiet("sync", filepath.Join(d.mount, "zstd")))
	})
	if dir, ok := strings.CutPrefix(url, "dir://"); ok {
		_ = filepath.Walk(filepath.Join(dir, "chunks"), func(_ string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				run.stored += uint64(fi.Size())
			}
			return nil
		})
	}
	log.Printf("backup to %s: full %s, incremental %s, restore %s; zstd %s, zstd -d %s", url, run.full, run.incremental, run.restore, run.zstd, run.zstdRestore)
	return run
}

func runQuiet(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// backupSection runs the dir:// bench and, with a test cluster's RGW,
// the same on s3://.
func (b *bench) backupSection(size, s3Size int64) []backupRun {
	dir := b.path("backup-target")
	defer os.RemoveAll(dir)
	cfg := b.path("backup-dir.toml")
	check(os.WriteFile(cfg, []byte(fmt.Sprintf("backup_targets = { nas = { url = %q } }\n", "dir://"+dir)), 0o644))
	runs := []backupRun{b.backupBench("backup-dir", "dir://"+dir, size, []string{"--config", cfg}, nil)}
	ceph := b.path("backup-ceph")
	start := exec.Command("testdata/ceph/cluster.sh", "start", ceph)
	start.Env = append(os.Environ(), "RGW=1")
	if err := start.Run(); err != nil {
		log.Printf("no RGW for the s3:// backup bench: %v", err)
		return runs
	}
	defer exec.Command("testdata/ceph/cluster.sh", "stop", ceph).Run()
	env := readEnvFile(filepath.Join(ceph, "env"))
	s3cfg := b.path("backup-s3.toml")
	check(os.WriteFile(s3cfg, []byte(fmt.Sprintf("backup_targets = { rgw = { url = \"s3://bench/vm\", endpoint = %q, insecure = true } }\ns3_access_key = %q\ns3_secret_key = %q\n",
		env["ROWFS_RGW_ENDPOINT"], env["ROWFS_RGW_ACCESS_KEY"], env["ROWFS_RGW_SECRET_KEY"])), 0o644))
	return append(runs, b.backupBench("backup-s3", "s3://bench/vm on RGW", s3Size, []string{"--config", s3cfg}, nil))
}

func readEnvFile(path string) map[string]string {
	f, err := os.Open(path)
	check(err)
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok {
			out[k] = v
		}
	}
	return out
}

func mibps(bytes uint64, d time.Duration) float64 { return float64(bytes) / (1 << 20) / d.Seconds() }

func (r *report) backupTable(w func(string, ...any)) {
	w("## Backups\n\nA volume of half random data, a quarter zeros and a quarter one repeated 1 MiB pattern; a full backup, an incremental after 1%% of it changed (16 places), a restore of the full point to a new volume; against `zstd -1 -T0` of the same raw file to a file, and `zstd -d` of it onto the mount.\n\n")
	w("| target | size | full | zstd -1 -T0 | full / zstd (goal ≤ %.1f) | incremental | incr. / full (goal ≤ %.0f%%) | restore | zstd -d | restore / zstd -d (goal ≤ %.1f) |\n|---|---:|---:|---:|---|---:|---|---:|---:|---|\n",
		goalBackupVsZstd, goalIncrementalOfFull*100, goalRestoreVsZstd)
	for _, b := range r.backups {
		fr, ir, rr := b.full.Seconds()/b.zstd.Seconds(), b.incremental.Seconds()/b.full.Seconds(), b.restore.Seconds()/b.zstdRestore.Seconds()
		w("| %s | %s | %.1f s (%.0f MiB/s) | %.1f s | %.2f %s | %.2f s | %.1f%% %s | %.1f s (%.0f MiB/s) | %.1f s | %.2f %s |\n",
			b.target, api.FormatSize(b.size), b.full.Seconds(), mibps(b.size, b.full), b.zstd.Seconds(), fr, verdict(fr <= goalBackupVsZstd),
			b.incremental.Seconds(), ir*100, verdict(ir <= goalIncrementalOfFull), b.restore.Seconds(), mibps(b.size, b.restore),
			b.zstdRestore.Seconds(), rr, verdict(rr <= goalRestoreVsZstd))
	}
	w("\n| target | full: read | sent | zero chunks skipped | dedup (data read / unique) | compression (unique / sent) | incremental: read | sent |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, b := range r.backups {
		fp, ip := b.fullPoint, b.incrementalPoint
		unique := fp.ReadBytes - fp.ReusedBytes
		w("| %s | %s | %s | %s | %.2f× | %.2f× | %s | %s |\n", b.target, api.FormatSize(fp.ReadBytes), api.FormatSize(fp.UploadedBytes),
			api.FormatSize(b.size-fp.ReadBytes), float64(fp.ReadBytes)/float64(max(unique, 1)), float64(unique)/float64(max(fp.UploadedBytes, 1)),
			api.FormatSize(ip.ReadBytes), api.FormatSize(ip.UploadedBytes))
	}
	w("\n")
}
