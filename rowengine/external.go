package rowengine

import (
	"context"
	"fmt"
	"maps"

	"github.com/rowfs/rowfs/blockmap"
)

// External job kinds: work the daemon does with the pool's data (backups
// to a target, restores from one) that the pool lists, records and, after
// a crash, hands back, like its own jobs.
const (
	JobBackup  = "backup"
	JobRestore = "restore"
)

// ExternalJob is what an external job's work sees of its job.
type ExternalJob struct {
	p *Pool
	j *job
	// Ctx ends when the pool closes: the work stops, and the job stays
	// running in the metadata for the next start to resume.
	Ctx context.Context
}

// ID is the job's id.
func (e ExternalJob) ID() uint64 { return e.j.rec.ID }

// Args are the job's parameters and recorded progress.
func (e ExternalJob) Args() map[string]string {
	e.p.jobsMu.Lock()
	defer e.p.jobsMu.Unlock()
	return maps.Clone(e.j.rec.Args)
}

// Progress reports bytes done of total.
func (e ExternalJob) Progress(done, total uint64) {
	e.j.total.Store(total)
	e.j.done.Store(done)
}

// SetArg records a parameter durably (a resumed job reads it back).
func (e ExternalJob) SetArg(key, value string) error {
	e.p.jobsMu.Lock()
	rec := e.j.rec
	rec.Args = maps.Clone(rec.Args)
	if rec.Args == nil {
		rec.Args = map[string]string{}
	}
	rec.Args[key] = value
	e.j.rec = rec
	e.p.jobsMu.Unlock()
	return e.p.store.Update(func(tx *blockmap.Txn) error { return tx.PutJob(rec) })
}

// StartExternalJob records a running job of kind (JobBackup, JobRestore)
// on target with args, durably, then runs work in the background. The
// job ends done when work returns nil and failed with its error; if the
// pool closes meanwhile it stays running, for ResumeExternalJob.
func (p *Pool) StartExternalJob(kind, target string, args map[string]string, work func(ExternalJob) error) (JobInfo, error) {
	if kind != JobBackup && kind != JobRestore {
		return JobInfo{}, fmt.Errorf("%w: external job kind %q", ErrInvalidArgument, kind)
	}
	var rec blockmap.JobRecord
	err := p.syncedUpdate(func(tx *blockmap.Txn) (err error) {
		if rec, err = p.newJobTx(tx, kind, target); err != nil {
			return err
		}
		rec.Args = maps.Clone(args)
		return tx.PutJob(rec)
	})
	if err != nil {
		return JobInfo{}, err
	}
	return p.launchExternal(rec, work), nil
}

func (p *Pool) launchExternal(rec blockmap.JobRecord, work func(ExternalJob) error) JobInfo {
	return p.launch(rec, 0, func(j *job) error {
		err := work(ExternalJob{p: p, j: j, Ctx: p.ctx})
		if err != nil && p.ctx.Err() != nil {
			return errInterrupted
		}
		return err
	})
}

// InterruptedExternalJobs are the external jobs the last run left
// running, for the daemon to resume (ResumeExternalJob).
func (p *Pool) InterruptedExternalJobs() []JobInfo {
	p.jobsMu.Lock()
	defer p.jobsMu.Unlock()
	var out []JobInfo
	for _, j := range p.jobs {
		if j.rec.State == JobRunning && (j.rec.Kind == JobBackup || j.rec.Kind == JobRestore) && !j.running {
			out = append(out, j.info())
		}
	}
	return out
}

// ResumeExternalJob runs work for an interrupted external job.
func (p *Pool) ResumeExternalJob(id uint64, work func(ExternalJob) error) error {
	p.jobsMu.Lock()
	j := p.jobs[id]
	p.jobsMu.Unlock()
	if j == nil || j.running || j.rec.State != JobRunning {
		return fmt.Errorf("%w: job %d is not an interrupted job", ErrInvalidArgument, id)
	}
	p.launchExternal(j.rec, work)
	return nil
}
