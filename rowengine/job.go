package rowengine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rowfs/rowfs/blockmap"
)

// Job kinds and states.
const (
	JobDelete       = "delete"        // snapshot delete (merge)
	JobVolumeDelete = "volume-delete" // a volume's snapshots after the volume is gone
	JobRollback     = "rollback"      // freeing the abandoned head
	JobFlatten      = "flatten"
	JobRBDFlatten   = "rbd-flatten" // librbd's flatten of an RBD clone

	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// keepFinishedJobs bounds how many finished job records are kept.
const keepFinishedJobs = 100

// errInterrupted ends a job's run when the pool closes; the job stays
// "running" in the metadata and the next Open resumes it.
var errInterrupted = errors.New("interrupted by shutdown")

// JobInfo describes a background job. Done and Total count bytes of
// metadata or data processed; Total may grow while a job runs.
type JobInfo struct {
	ID       uint64
	Kind     string
	Target   string
	State    string
	Done     uint64
	Total    uint64
	Error    string
	Created  time.Time
	Finished time.Time
}

type job struct {
	rec         blockmap.JobRecord
	done, total atomic.Uint64
	finished    chan struct{}
	// running: a goroutine works on it (an interrupted external job
	// waits for the daemon to resume it).
	running bool
}

func (j *job) info() JobInfo {
	return JobInfo{ID: j.rec.ID, Kind: j.rec.Kind, Target: j.rec.Target, State: j.rec.State,
		Done: j.done.Load(), Total: max(j.total.Load(), j.done.Load()), Error: j.rec.Error,
		Created: j.rec.Created, Finished: j.rec.Finished}
}

// newJobTx adds a running job record to tx, so the job exists exactly
// when the decision it finishes is durable.
func (p *Pool) newJobTx(tx *blockmap.Txn, kind, target string) (blockmap.JobRecord, error) {
	id, err := tx.NextID()
	if err != nil {
		return blockmap.JobRecord{}, err
	}
	rec := blockmap.JobRecord{ID: id, Kind: kind, Target: target, State: JobRunning, Created: p.opts.Now().UTC()}
	return rec, tx.PutJob(rec)
}

// launch runs a job's work in the background. run returns nil when done.
func (p *Pool) launch(rec blockmap.JobRecord, total uint64, run func(j *job) error) JobInfo {
	j := &job{rec: rec, finished: make(chan struct{}), running: true}
	j.total.Store(total)
	p.jobsMu.Lock()
	p.jobs[rec.ID] = j
	info := j.info()
	p.jobsMu.Unlock()
	p.stopped.Add(1)
	go func() {
		defer p.stopped.Done()
		err := run(j)
		if errors.Is(err, errInterrupted) {
			p.log.Info("job interrupted; it resumes when the pool opens again", "job", rec.ID, "kind", rec.Kind)
			return
		}
		p.finishJob(j, err)
	}()
	return info
}

func (p *Pool) finishJob(j *job, runErr error) {
	p.jobsMu.Lock()
	rec := j.rec
	rec.State, rec.Finished = JobDone, p.opts.Now().UTC()
	if runErr != nil {
		rec.State, rec.Error = JobFailed, runErr.Error()
		p.log.Error("job failed", "job", rec.ID, "kind", rec.Kind, "target", rec.Target, "err", runErr)
	} else {
		j.done.Store(max(j.done.Load(), j.total.Load()))
		j.total.Store(j.done.Load())
	}
	var prune []uint64
	var finished []*job
	for _, o := range p.jobs {
		if o.rec.State != JobRunning && o != j {
			finished = append(finished, o)
		}
	}
	if len(finished) >= keepFinishedJobs {
		slices.SortFunc(finished, func(a, b *job) int { return cmpUint(a.rec.ID, b.rec.ID) })
		for _, o := range finished[:len(finished)-keepFinishedJobs+1] {
			prune = append(prune, o.rec.ID)
			delete(p.jobs, o.rec.ID)
		}
	}
	p.jobsMu.Unlock()
	err := p.store.Update(func(tx *blockmap.Txn) error {
		for _, id := range prune {
			if err := tx.DeleteJob(id); err != nil {
				return err
			}
		}
		return tx.PutJob(rec)
	})
	if err != nil {
		p.log.Error("record job result", "job", rec.ID, "err", err)
	}
	p.crashPoint(CrashJobFinished)
	p.jobsMu.Lock()
	j.rec = rec
	p.jobsMu.Unlock()
	close(j.finished)
}

// runReap is the work of delete and rollback jobs: finish every deleted
// node that can be finished. It is idempotent, which is what lets a
// restart resume any of them by running it again.
func (p *Pool) runReap(j *job) error {
	progress := func(blocks uint64) { j.done.Add(blocks * p.blockSize) }
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if p.ctx.Err() != nil {
		return errInterrupted
	}
	return p.reapAll(progress)
}

// resumeJobs loads job records and restarts those left running.
func (p *Pool) resumeJobs() error {
	recs, err := p.store.Jobs()
	if err != nil {
		return err
	}
	reaping := false
	for _, rec := range recs {
		if rec.State != JobRunning {
			j := &job{rec: rec, finished: make(chan struct{})}
			close(j.finished)
			p.jobsMu.Lock()
			p.jobs[rec.ID] = j
			p.jobsMu.Unlock()
			continue
		}
		p.log.Info("resuming job", "job", rec.ID, "kind", rec.Kind, "target", rec.Target)
		switch rec.Kind {
		case JobBackup, JobRestore:
			// The daemon's: it resumes them (ResumeExternalJob).
			j := &job{rec: rec, finished: make(chan struct{})}
			p.jobsMu.Lock()
			p.jobs[rec.ID] = j
			p.jobsMu.Unlock()
		case JobFlatten:
			p.launch(rec, 0, func(j *job) error { return p.runFlatten(j, rec.Target) })
		case JobRBDFlatten:
			p.launch(rec, 0, func(j *job) error { return p.runRBDFlatten(j, rec.Target) })
		default:
			reaping = true
			_, blocks := pendingWork(p.reapPlan())
			p.launch(rec, blocks*p.blockSize, p.runReap)
		}
	}
	work, blocks := pendingWork(p.reapPlan())
	if reaping || !work {
		return nil
	}
	// A deleted node that could merge with no job to merge it (a crash
	// after a flatten cut its clone loose, before the origin was reaped).
	var rec blockmap.JobRecord
	err = p.syncedUpdate(func(tx *blockmap.Txn) (err error) {
		rec, err = p.newJobTx(tx, JobDelete, "unmerged deleted snapshots")
		return err
	})
	if err != nil {
		return err
	}
	p.log.Warn("finishing deleted snapshots left unmerged", "job", rec.ID)
	p.launch(rec, blocks*p.blockSize, p.runReap)
	return nil
}

// Jobs lists the jobs of this pool, newest first.
func (p *Pool) Jobs() []JobInfo {
	p.jobsMu.Lock()
	defer p.jobsMu.Unlock()
	out := make([]JobInfo, 0, len(p.jobs))
	for _, j := range p.jobs {
		out = append(out, j.info())
	}
	slices.SortFunc(out, func(a, b JobInfo) int { return -cmpUint(a.ID, b.ID) })
	return out
}

// Job describes one job.
func (p *Pool) Job(id uint64) (JobInfo, error) {
	p.jobsMu.Lock()
	defer p.jobsMu.Unlock()
	j := p.jobs[id]
	if j == nil {
		return JobInfo{}, fmt.Errorf("%w: job %d", ErrNotFound, id)
	}
	return j.info(), nil
}

// WaitJob waits until the job finishes or ctx ends, and describes it.
func (p *Pool) WaitJob(ctx context.Context, id uint64) (JobInfo, error) {
	p.jobsMu.Lock()
	j := p.jobs[id]
	p.jobsMu.Unlock()
	if j == nil {
		return JobInfo{}, fmt.Errorf("%w: job %d", ErrNotFound, id)
	}
	select {
	case <-j.finished:
	case <-ctx.Done():
		return p.Job(id)
	}
	info, err := p.Job(id)
	if err == nil && info.State == JobFailed {
		err = fmt.Errorf("%w: job %d (%s %s): %s", ErrJobFailed, id, info.Kind, info.Target, info.Error)
	}
	return info, err
}
