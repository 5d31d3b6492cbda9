package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/backup"
)

// backups runs backups and restores between the pool and its targets:
// the targets of the config file and those added with rowctl, each opened
// once (one backup.Repo per target, so a gc excludes its backups).
//
// A backup reads a snapshot, taken for it (auto-backup-TARGET-…) unless
// one is named, while the VM runs on; that snapshot is kept as the base of
// the next incremental (the blocks changed since it are what it costs, and
// du shows them), and the previous base goes once the new point exists.
// So an incremental reads only what changed, after a restart as before.
type backups struct {
	pool *rowengine.Pool
	log  *slog.Logger
	cfg  backupSettings

	mu    sync.Mutex
	repos map[string]*backup.Repo
	// points are each target's points as last listed (refreshed after
	// every change and at start), for user.rowfs.backups.json.
	points map[string][]api.BackupPoint
	// done, if set, is told of each backup point made, and seen of the
	// newest point of each volume a listing finds (the metrics).
	done func(target string, m backup.Manifest)
	seen func(target, volume string, created time.Time)
}

// backupSettings are the config file's backup keys, validated.
type backupSettings struct {
	timeout              time.Duration
	accessKey, secretKey string
	targets              map[string]rowengine.BackupTarget
}

func newBackups(pool *rowengine.Pool, cfg backupSettings, log *slog.Logger) *backups {
	return &backups{pool: pool, log: log, cfg: cfg, repos: map[string]*backup.Repo{}, points: map[string][]api.BackupPoint{}}
}

// refresh lists target's points into the cache (in the background: a
// target may be slow or down, and nothing waits for this).
func (b *backups) refresh(target string) {
	go func() {
		repo, t, err := b.repo(context.Background(), target)
		if err != nil {
			b.log.Warn("list backup points", "target", target, "err", err)
			return
		}
		points, err := repo.Points(context.Background())
		if err != nil {
			b.log.Warn("list backup points", "target", t.Name, "err", err)
			return
		}
		docs := make([]api.BackupPoint, 0, len(points))
		for _, m := range points {
			docs = append(docs, pointDoc(t.Name, m))
		}
		b.mu.Lock()
		b.points[t.Name] = docs
		b.mu.Unlock()
		if b.seen != nil {
			for _, p := range docs { // oldest first: the newest is set last
				b.seen(t.Name, p.Volume, p.Created)
			}
		}
	}()
}

// refreshAll lists every target's points into the cache.
func (b *backups) refreshAll() {
	all, _, err := b.targets()
	if err != nil {
		return
	}
	for _, t := range all {
		b.refresh(t.Name)
	}
}

// known are volume's points as last listed, oldest first.
func (b *backups) known(volume string) []api.BackupPoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []api.BackupPoint
	for _, points := range b.points {
		for _, p := range points {
			if p.Volume == volume {
				out = append(out, p)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b api.BackupPoint) int { return a.Created.Compare(b.Created) })
	return out
}

// targets lists every target: the config file's, then the pool's.
func (b *backups) targets() ([]rowengine.BackupTarget, map[string]string, error) {
	stored, err := b.pool.BackupTargets()
	if err != nil {
		return nil, nil, err
	}
	source := map[string]string{}
	var out []rowengine.BackupTarget
	for _, name := range slices.Sorted(maps.Keys(b.cfg.targets)) {
		out = append(out, b.cfg.targets[name])
		source[name] = "config"
	}
	for _, t := range stored {
		if _, dup := source[t.Name]; !dup {
			out = append(out, t)
			source[t.Name] = "pool"
		}
	}
	return out, source, nil
}

// target resolves a name; "" is the only target there is.
func (b *backups) target(name string) (rowengine.BackupTarget, error) {
	all, _, err := b.targets()
	if err != nil {
		return rowengine.BackupTarget{}, err
	}
	if name == "" {
		if len(all) == 1 {
			return all[0], nil
		}
		return rowengine.BackupTarget{}, fmt.Errorf("%w: %d backup targets: name one with --target (rowctl backup target list)", rowengine.ErrInvalidArgument, len(all))
	}
	for _, t := range all {
		if t.Name == name {
			return t, nil
		}
	}
	return rowengine.BackupTarget{}, fmt.Errorf("%w: backup target %q (rowctl backup target list)", rowengine.ErrNotFound, name)
}

// openTarget opens a target's store, with the daemon's credentials.
func (b *backups) openTarget(t rowengine.BackupTarget) (backup.Target, error) {
	return backup.OpenTarget(t.URL, backup.TargetOptions{Timeout: b.cfg.timeout, Endpoint: t.Endpoint, Region: t.Region,
		AccessKey: b.cfg.accessKey, SecretKey: b.cfg.secretKey, Insecure: t.Insecure})
}

// repo opens (once) the repository on target name.
func (b *backups) repo(ctx context.Context, name string) (*backup.Repo, rowengine.BackupTarget, error) {
	t, err := b.target(name)
	if err != nil {
		return nil, t, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.repos[t.Name]; r != nil {
		return r, t, nil
	}
	store, err := b.openTarget(t)
	if err != nil {
		return nil, t, err
	}
	r, err := backup.OpenRepo(ctx, store, t.KeyFile)
	if err != nil {
		return nil, t, err
	}
	b.repos[t.Name] = r
	return r, t, nil
}

// forget drops a removed target's repository.
func (b *backups) forget(name string) {
	b.mu.Lock()
	delete(b.repos, name)
	delete(b.points, name)
	b.mu.Unlock()
}

// baseSnapshotKind names the snapshots backups to target read from.
func baseSnapshotKind(target string) string { return "backup-" + target }

// Job args.
const (
	argVolume, argTarget, argSnapshot, argFull, argGroup, argConsistency = "volume", "target", "snapshot", "full", "group", "consistency"
	argPoint, argFresh, argFromChunk, argPolicy                          = "point", "fresh", "from_chunk", "policy"
)

// startBackup snapshots volume (unless fromSnapshot) and starts the job
// that backs it up. Everything a user can get wrong is checked first, with
// nothing changed: the volume, the snapshot, the target and its key.
func (b *backups) startBackup(ctx context.Context, volume, target, fromSnapshot string, full bool, policy string) (rowengine.JobInfo, error) {
	if _, err := b.pool.Volume(volume); err != nil {
		return rowengine.JobInfo{}, err
	}
	_, t, err := b.repo(ctx, target)
	if err != nil {
		return rowengine.JobInfo{}, err
	}
	snap := fromSnapshot
	if snap == "" {
		info, err := b.pool.CreateSnapshot(volume, "", rowengine.SnapshotOptions{Auto: true, AutoKind: baseSnapshotKind(t.Name),
			Description: "base of the next incremental backup to " + t.Name})
		if err != nil {
			return rowengine.JobInfo{}, fmt.Errorf("the snapshot to back up from: %w", err)
		}
		snap = info.Name
	} else if _, err := b.pool.Snapshot(volume, snap); err != nil {
		return rowengine.JobInfo{}, err
	}
	args := map[string]string{argVolume: volume, argTarget: t.Name, argSnapshot: snap, argPolicy: policy}
	if full {
		args[argFull] = "true"
	}
	return b.pool.StartExternalJob(rowengine.JobBackup, volume+" to "+t.Name, args, b.runBackup)
}

// startGroupBackup takes one group snapshot (with the group's freeze hook)
// and backs up every member from it.
func (b *backups) startGroupBackup(ctx context.Context, group, target string, full bool, policy string) ([]rowengine.JobInfo, error) {
	_, t, err := b.repo(ctx, target)
	if err != nil {
		return nil, err
	}
	infos, consistency, note, err := frozenGroupSnapshot(b.pool, b.log, 0, group, "", rowengine.SnapshotOptions{Auto: true})
	if err != nil {
		return nil, fmt.Errorf("the group snapshot to back up from: %w", err)
	}
	if note != "" {
		b.log.Warn("group backup snapshot", "group", group, "note", note)
	}
	var jobs []rowengine.JobInfo
	for _, info := range infos {
		args := map[string]string{argVolume: info.Volume, argTarget: t.Name, argSnapshot: info.Name, argGroup: group, argConsistency: consistency, argPolicy: policy}
		if full {
			args[argFull] = "true"
		}
		j, err := b.pool.StartExternalJob(rowengine.JobBackup, info.Volume+" to "+t.Name, args, b.runBackup)
		if err != nil {
			return jobs, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// runBackup is a backup job: from its args, so a restarted daemon runs it
// again (chunks already uploaded are found there and not sent twice).
func (b *backups) runBackup(job rowengine.ExternalJob) error {
	ctx := job.Ctx
	args := job.Args()
	volume, snap := args[argVolume], args[argSnapshot]
	repo, t, err := b.repo(ctx, args[argTarget])
	if err != nil {
		return err
	}
	info, err := b.pool.Snapshot(volume, snap)
	if err != nil {
		return fmt.Errorf("the snapshot backed up from is gone: %w", err)
	}
	var parent *backup.Manifest
	if args[argFull] == "" {
		points, err := repo.Points(ctx)
		if err != nil {
			return err
		}
		for i := range slices.Backward(points) {
			if points[i].Volume == volume {
				parent = &points[i]
				break
			}
		}
	}
	h, err := b.pool.OpenSnapshot(volume, snap)
	if err != nil {
		return err
	}
	defer h.Close()
	opts := backup.CreateOptions{Volume: volume, Size: info.Size, Source: h, Snapshot: snap, Data: dataExtents(h, info.Size),
		Parent: parent, Group: args[argGroup], Consistency: cmp.Or(args[argConsistency], "crash"), Policy: args[argPolicy], Progress: job.Progress}
	if parent != nil {
		if _, err := b.pool.Snapshot(volume, parent.Snapshot); err == nil {
			changed, err := b.pool.Diff(volume, parent.Snapshot, snap)
			if err != nil {
				return err
			}
			opts.Changed = make([]backup.Extent, 0, len(changed))
			for _, e := range changed {
				opts.Changed = append(opts.Changed, backup.Extent{Offset: e.Offset, Length: e.Length})
			}
		} else {
			b.log.Warn("the base of the last backup is gone: this incremental reads the whole snapshot (and uploads only what changed)",
				"volume", volume, "base", parent.Snapshot)
		}
	}
	m, err := repo.Create(ctx, opts)
	if err != nil {
		return err
	}
	if b.done != nil {
		b.done(t.Name, m)
	}
	b.refresh(t.Name)
	b.log.Info("backup point made", "volume", volume, "target", t.Name, "point", m.ID, "kind", m.Kind,
		"read_bytes", m.Stats.ReadBytes, "uploaded_bytes", m.Stats.UploadedBytes, "reused_bytes", m.Stats.ReusedBytes)
	b.dropOldBases(volume, t.Name, snap)
	return nil
}

// dropOldBases deletes the volume's earlier base snapshots for target:
// the next incremental starts from keep.
func (b *backups) dropOldBases(volume, target, keep string) {
	snaps, err := b.pool.Snapshots(volume)
	if err != nil {
		return
	}
	prefix := "auto-" + baseSnapshotKind(target) + "-"
	for _, s := range snaps {
		if s.Name != keep && !s.Hidden && strings.HasPrefix(s.Name, prefix) {
			if _, err := b.pool.DeleteSnapshot(volume, s.Name, rowengine.DeleteOptions{}); err != nil {
				b.log.Warn("delete an old backup base snapshot", "volume", volume, "snapshot", s.Name, "err", err)
			}
		}
	}
}

// dataExtents are the extents of h that hold data (SEEK_DATA/SEEK_HOLE):
// the rest is zeros, and a backup does not read it.
func dataExtents(h *rowengine.Handle, size uint64) []backup.Extent {
	var out []backup.Extent
	for off := uint64(0); off < size; {
		start, ok := h.SeekData(off)
		if !ok || start >= size {
			break
		}
		end, ok := h.SeekHole(start)
		if !ok || end > size {
			end = size
		}
		out = append(out, backup.Extent{Offset: start, Length: end - start})
		off = end
	}
	return out
}

// restoreTarget is where a restore goes: a new volume (to) or onto an
// existing one (volume).
func (b *backups) startRestore(ctx context.Context, point, target, to, volume string) (rowengine.JobInfo, error) {
	repo, t, err := b.repo(ctx, target)
	if err != nil {
		return rowengine.JobInfo{}, err
	}
	m, err := repo.Point(ctx, point)
	if err != nil {
		return rowengine.JobInfo{}, err
	}
	args := map[string]string{argPoint: point, argTarget: t.Name, argFromChunk: "0"}
	switch {
	case (to == "") == (volume == ""):
		return rowengine.JobInfo{}, fmt.Errorf("%w: restore to a new volume (--to NEW) or onto one (--volume VOL)", rowengine.ErrInvalidArgument)
	case to != "":
		if _, err := b.pool.CreateVolume(to, m.Size); err != nil {
			return rowengine.JobInfo{}, err
		}
		args[argVolume], args[argFresh] = to, "true"
	default:
		v, err := b.pool.Volume(volume)
		if err != nil {
			return rowengine.JobInfo{}, err
		}
		if m.Volume != volume {
			return rowengine.JobInfo{}, fmt.Errorf("%w: point %s is a backup of %s, not %s (restore it with --to NEW)", rowengine.ErrInvalidArgument, point, m.Volume, volume)
		}
		if v.OpenHandles > 0 {
			return rowengine.JobInfo{}, fmt.Errorf("%w: %s is open (%d handles): stop the VM first, as for a rollback", rowengine.ErrBusy, volume, v.OpenHandles)
		}
		if b.pool.Settings().SnapshotBeforeRollback {
			if _, err := b.pool.CreateSnapshot(volume, "", rowengine.SnapshotOptions{Auto: true, AutoKind: "pre-restore"}); err != nil {
				return rowengine.JobInfo{}, fmt.Errorf("the automatic snapshot before the restore: %w", err)
			}
		}
		if v.Size != m.Size {
			if _, err := b.pool.ResizeVolume(volume, m.Size, true); err != nil {
				return rowengine.JobInfo{}, err
			}
		}
		args[argVolume] = volume
	}
	return b.pool.StartExternalJob(rowengine.JobRestore, point+" to "+args[argVolume], args, b.runRestore)
}

// startGroupRestore restores a group backup in place: every member point
// made from the same group snapshot as point, each onto its volume. All
// members are checked (the volume exists, is closed, the point is its)
// before any restore starts.
func (b *backups) startGroupRestore(ctx context.Context, point, target string) ([]rowengine.JobInfo, error) {
	repo, _, err := b.repo(ctx, target)
	if err != nil {
		return nil, err
	}
	m, err := repo.Point(ctx, point)
	if err != nil {
		return nil, err
	}
	if m.Group == "" {
		return nil, fmt.Errorf("%w: point %s is not of a group backup", rowengine.ErrInvalidArgument, point)
	}
	points, err := repo.Points(ctx)
	if err != nil {
		return nil, err
	}
	var members []backup.Manifest
	for _, p := range points {
		if p.Group == m.Group && p.Snapshot == m.Snapshot {
			members = append(members, p)
		}
	}
	for _, p := range members {
		v, err := b.pool.Volume(p.Volume)
		if err != nil {
			return nil, fmt.Errorf("group restore: member %s: %w", p.Volume, err)
		}
		if v.OpenHandles > 0 {
			return nil, fmt.Errorf("%w: group restore: %s is open (%d handles): stop the VM first", rowengine.ErrBusy, p.Volume, v.OpenHandles)
		}
	}
	var jobs []rowengine.JobInfo
	for _, p := range members {
		j, err := b.startRestore(ctx, p.ID, target, "", p.Volume)
		if err != nil {
			return jobs, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// restoreCheckpoint is how often a restore makes its progress durable
// (a sync of the volume, then the job's next chunk): a resumed restore
// redoes at most this much.
const restoreCheckpoint = 16

// runRestore is a restore job, resumable from its last checkpoint.
func (b *backups) runRestore(job rowengine.ExternalJob) error {
	ctx := job.Ctx
	args := job.Args()
	repo, _, err := b.repo(ctx, args[argTarget])
	if err != nil {
		return err
	}
	from, _ := strconv.Atoi(args[argFromChunk])
	h, err := b.pool.OpenVolume(args[argVolume], true)
	if err != nil {
		return err
	}
	defer h.Close()
	var mu sync.Mutex
	saved := from
	var ckptErr error
	_, err = repo.Restore(ctx, args[argPoint], h, backup.RestoreOptions{Fresh: args[argFresh] == "true", From: from,
		Progress: func(chunksDone int, done, total uint64) {
			job.Progress(uint64(from)*backup.ChunkSize+done, total)
			mu.Lock()
			defer mu.Unlock()
			if chunksDone-saved >= restoreCheckpoint && ckptErr == nil {
				if ckptErr = h.Sync(); ckptErr == nil {
					ckptErr = job.SetArg(argFromChunk, strconv.Itoa(chunksDone))
					saved = chunksDone
				}
			}
		}})
	if err == nil {
		err = ckptErr
	}
	if err != nil {
		return err
	}
	return h.Sync()
}

// resumeInterrupted resumes the backups and restores the last run left.
func (b *backups) resumeInterrupted() {
	for _, j := range b.pool.InterruptedExternalJobs() {
		run := b.runBackup
		if j.Kind == rowengine.JobRestore {
			run = b.runRestore
		}
		b.log.Info("resuming an interrupted job", "job", j.ID, "kind", j.Kind, "target", j.Target)
		if err := b.pool.ResumeExternalJob(j.ID, run); err != nil {
			b.log.Error("resume job", "job", j.ID, "err", err)
		}
	}
}

// pointDoc describes a point for the API.
func pointDoc(target string, m backup.Manifest) api.BackupPoint {
	return api.BackupPoint{ID: m.ID, Target: target, Volume: m.Volume, Size: m.Size, Created: m.Created, Kind: m.Kind, Chain: m.Chain,
		Parent: m.Parent, Snapshot: m.Snapshot, Group: m.Group, Consistency: m.Consistency, Encrypted: m.Encrypted,
		ReadBytes: m.Stats.ReadBytes, UploadedBytes: m.Stats.UploadedBytes, ReusedBytes: m.Stats.ReusedBytes}
}

// backupSettingsOf validates the config's backup keys.
func (c *Config) backupSettings() (backupSettings, error) {
	s := backupSettings{timeout: 60 * time.Second, accessKey: cmp.Or(c.S3AccessKey, os.Getenv("AWS_ACCESS_KEY_ID")),
		secretKey: cmp.Or(c.S3SecretKey, os.Getenv("AWS_SECRET_ACCESS_KEY")), targets: map[string]rowengine.BackupTarget{}}
	var errs []error
	if c.BackupTimeout != "" {
		d, err := time.ParseDuration(c.BackupTimeout)
		if err != nil || d < time.Second {
			errs = append(errs, fmt.Errorf("backup timeout %q: want a duration of at least 1s, like 60s", c.BackupTimeout))
		}
		s.timeout = d
	}
	for name, t := range c.BackupTargets {
		if err := rowengine.ValidateVolumeName(name); err != nil {
			errs = append(errs, fmt.Errorf("backup target %q: names are %s", name, rowengine.NameRule))
		}
		if _, err := backup.OpenTarget(t.URL, backup.TargetOptions{Endpoint: t.Endpoint, AccessKey: "x", SecretKey: "x"}); err != nil {
			errs = append(errs, fmt.Errorf("backup target %q: %w", name, err))
		}
		s.targets[name] = rowengine.BackupTarget{Name: name, URL: t.URL, Endpoint: t.Endpoint, Region: t.Region, KeyFile: t.KeyFile, Insecure: t.Insecure}
	}
	return s, errors.Join(errs...)
}

// runPolicy is one run of a backup policy: a point of each volume (and
// of each group, from one group snapshot), then, only if every one was
// made, the pruning of the policy's own points beyond Keep or older than
// RetainDays per volume, never the newest. A pruned point goes alone
// (every point is self-contained), chunks at the next gc.
func (b *backups) runPolicy(rec rowengine.Policy, now time.Time) rowengine.PolicyRun {
	var run rowengine.PolicyRun
	ctx := context.Background()
	var jobs []rowengine.JobInfo
	for _, v := range rec.Volumes {
		j, err := b.startBackup(ctx, v, rec.Target, "", false, rec.Name)
		if err != nil {
			run.Errors = append(run.Errors, v+": "+err.Error())
			continue
		}
		jobs = append(jobs, j)
	}
	for _, g := range rec.Groups {
		js, err := b.startGroupBackup(ctx, g, rec.Target, false, rec.Name)
		if err != nil {
			run.Errors = append(run.Errors, "group "+g+": "+err.Error())
		}
		jobs = append(jobs, js...)
	}
	for _, j := range jobs {
		if _, err := b.pool.WaitJob(ctx, j.ID); err != nil {
			run.Errors = append(run.Errors, j.Target+": "+err.Error())
		} else {
			run.Created = append(run.Created, j.Target)
		}
	}
	if len(run.Errors) > 0 {
		return run // prune only after a run that made every point
	}
	repo, t, err := b.repo(ctx, rec.Target)
	if err != nil {
		run.Errors = append(run.Errors, err.Error())
		return run
	}
	points, err := repo.Points(ctx)
	if err != nil {
		run.Errors = append(run.Errors, err.Error())
		return run
	}
	byVolume := map[string][]backup.Manifest{}
	for _, m := range points {
		if m.Policy == rec.Name {
			byVolume[m.Volume] = append(byVolume[m.Volume], m) // oldest first
		}
	}
	for _, own := range byVolume {
		for i, m := range own[:len(own)-1] { // never the newest
			tooMany := rec.Keep > 0 && len(own)-i > rec.Keep
			tooOld := rec.RetainDays > 0 && now.Sub(m.Created) > time.Duration(rec.RetainDays)*24*time.Hour
			if !tooMany && !tooOld {
				continue
			}
			plan, err := repo.PlanDelete(ctx, m.ID, true)
			if err == nil {
				err = repo.ExecuteDelete(ctx, plan)
			}
			if err != nil {
				run.Errors = append(run.Errors, "prune "+m.ID+": "+err.Error())
				continue
			}
			run.Pruned = append(run.Pruned, m.Volume+"@"+t.Name+"/"+m.ID)
		}
	}
	b.refresh(t.Name)
	return run
}
