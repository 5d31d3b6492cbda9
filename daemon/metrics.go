package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	rowfs "github.com/rowfs/rowfs/fs"
	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/backup"
)

// metrics is rowfsd's Prometheus registry. Counters on hot paths (guest
// I/O, commits) are updated as things happen, each handle holding its
// volume's counters so a request costs a few atomic adds; everything the
// pool already knows (capacity, chains, jobs, policies) is read when
// scraped, so keeping it costs nothing between scrapes. Labels are
// bounded: a volume's series go when it is deleted or detached, job
// series exist only while a job runs.
type metrics struct {
	reg *prometheus.Registry

	ioBytes    *prometheus.CounterVec
	ioRequests *prometheus.CounterVec
	ioSeconds  *prometheus.HistogramVec

	commits       *prometheus.CounterVec
	commitSeconds prometheus.Histogram
	policyRuns    *prometheus.CounterVec

	backupSuccess  *prometheus.GaugeVec
	backupUploaded *prometheus.CounterVec
	backupReused   *prometheus.CounterVec
}

// ioBuckets span a cached 4 KiB read (tens of µs) to a stalled request.
var ioBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.ioBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rowfs_volume_io_bytes_total",
		Help: "Bytes the guest read or wrote through a volume file."}, []string{"volume", "op"})
	m.ioRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rowfs_volume_io_requests_total",
		Help: "Read and write requests that succeeded on a volume file."}, []string{"volume", "op"})
	m.ioSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rowfs_volume_io_duration_seconds",
		Help: "Time the daemon took to serve a read or write request.", Buckets: ioBuckets}, []string{"volume", "op"})
	m.commits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rowfs_commits_total",
		Help: "Metadata commits (data sync, map changes, Badger sync), by result."}, []string{"result"})
	m.commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rowfs_commit_duration_seconds",
		Help: "Time a metadata commit took.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	m.policyRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rowfs_policy_runs_total",
		Help: "Runs of a snapshot policy since the daemon started, by result (ok, failed)."}, []string{"policy", "result"})
	m.backupSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rowfs_backup_last_success_timestamp_seconds",
		Help: "When the newest backup point of a volume on a target was made."}, []string{"volume", "target"})
	m.backupUploaded = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rowfs_backup_uploaded_bytes_total",
		Help: "Bytes backups sent to a target (compressed chunks)."}, []string{"target"})
	m.backupReused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rowfs_backup_reused_bytes_total",
		Help: "Bytes backups did not send because the target had them (unchanged or duplicate chunks)."}, []string{"target"})
	m.reg.MustRegister(m.ioBytes, m.ioRequests, m.ioSeconds, m.commits, m.commitSeconds, m.policyRuns,
		m.backupSuccess, m.backupUploaded, m.backupReused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// collect adds the pool's state, read at each scrape.
func (m *metrics) collect(pool *rowengine.Pool) {
	m.reg.MustRegister(&poolCollector{pool: pool})
}

// observeCommit is the engine's CommitObserver.
func (m *metrics) observeCommit(took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.commits.WithLabelValues(result).Inc()
	m.commitSeconds.Observe(took.Seconds())
}

// policyRan counts a policy run by result.
func (m *metrics) policyRan(policy string, run rowengine.PolicyRun) {
	result := "ok"
	if len(run.Errors) > 0 {
		result = "failed"
	}
	m.policyRuns.WithLabelValues(policy, result).Inc()
}

// backupSeen records a volume's newest point on a target.
func (m *metrics) backupSeen(target, volume string, created time.Time) {
	m.backupSuccess.WithLabelValues(volume, target).Set(float64(created.Unix()))
}

// backupDone counts a backup point made.
func (m *metrics) backupDone(target string, p backup.Manifest) {
	m.backupSeen(target, p.Volume, p.Created)
	m.backupUploaded.WithLabelValues(target).Add(float64(p.Stats.UploadedBytes))
	m.backupReused.WithLabelValues(target).Add(float64(p.Stats.ReusedBytes))
}

// Volume implements fs.IOMeter: the volume's counters, looked up once per open.
func (m *metrics) Volume(name string) rowfs.VolumeMeter {
	return volumeMeter{
		bytes:    [2]prometheus.Counter{m.ioBytes.WithLabelValues(name, "read"), m.ioBytes.WithLabelValues(name, "write")},
		requests: [2]prometheus.Counter{m.ioRequests.WithLabelValues(name, "read"), m.ioRequests.WithLabelValues(name, "write")},
		seconds:  [2]prometheus.Observer{m.ioSeconds.WithLabelValues(name, "read"), m.ioSeconds.WithLabelValues(name, "write")},
	}
}

// VolumeRemoved drops a deleted or detached volume's I/O series.
func (m *metrics) VolumeRemoved(name string) {
	for _, vec := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.ioBytes, m.ioRequests, m.ioSeconds, m.backupSuccess} {
		vec.DeletePartialMatch(prometheus.Labels{"volume": name})
	}
}

func (m *metrics) VolumeChanged(string)    {}
func (m *metrics) SnapshotsChanged(string) {}

// volumeMeter holds one volume's counters, indexed by fs.IOOp.
type volumeMeter struct {
	bytes, requests [2]prometheus.Counter
	seconds         [2]prometheus.Observer
}

func (v volumeMeter) Observe(op rowfs.IOOp, bytes int, took time.Duration) {
	v.bytes[op].Add(float64(bytes))
	v.requests[op].Inc()
	v.seconds[op].Observe(took.Seconds())
}

// poolCollector reads the pool's state at each scrape.
type poolCollector struct {
	pool *rowengine.Pool
}

var (
	descPoolUsed        = prometheus.NewDesc("rowfs_pool_used_bytes", "Data bytes the pool's blocks hold (volumes and snapshots).", nil, nil)
	descPoolFree        = prometheus.NewDesc("rowfs_pool_free_bytes", "Bytes volumes can still write before ENOSPC.", nil, nil)
	descPoolCapacity    = prometheus.NewDesc("rowfs_pool_capacity_bytes", "Used plus free bytes: what the pool can hold.", nil, nil)
	descPoolProvisioned = prometheus.NewDesc("rowfs_pool_provisioned_bytes", "Sum of the volumes' virtual sizes.", nil, nil)
	descVolumeSize      = prometheus.NewDesc("rowfs_volume_logical_bytes", "A volume's virtual size.", []string{"volume", "backend"}, nil)
	descVolumeHead      = prometheus.NewDesc("rowfs_volume_allocated_bytes", "Bytes a volume's head owns (written since its last snapshot).", []string{"volume", "backend"}, nil)
	descVolumeSnapshots = prometheus.NewDesc("rowfs_volume_snapshot_bytes", "Bytes a volume's snapshots own.", []string{"volume", "backend"}, nil)
	descVolumeDepth     = prometheus.NewDesc("rowfs_volume_chain_depth", "Snapshots on the path from the head to the root (the chain limit counts these).", []string{"volume", "backend"}, nil)
	descVolumeCount     = prometheus.NewDesc("rowfs_volume_snapshots", "A volume's visible snapshots.", []string{"volume", "backend"}, nil)
	descVolumeOpen      = prometheus.NewDesc("rowfs_volume_open_handles", "Open files of a volume on the mount.", []string{"volume", "backend"}, nil)
	descJobs            = prometheus.NewDesc("rowfs_jobs", "Background jobs the pool keeps, by kind and state.", []string{"kind", "state"}, nil)
	descJobDone         = prometheus.NewDesc("rowfs_job_progress_bytes", "Bytes a running job has processed.", []string{"job", "kind"}, nil)
	descJobStarted      = prometheus.NewDesc("rowfs_job_start_timestamp_seconds", "When a running job started.", []string{"job", "kind"}, nil)
	descPolicyNext      = prometheus.NewDesc("rowfs_policy_next_run_timestamp_seconds", "When an active policy runs next.", []string{"policy"}, nil)
	descPolicyPeriod    = prometheus.NewDesc("rowfs_policy_period_seconds", "The time between an active policy's next two runs.", []string{"policy"}, nil)
	descPolicyLastRun   = prometheus.NewDesc("rowfs_policy_last_run_timestamp_seconds", "When a policy last ran.", []string{"policy"}, nil)
	descPolicySuccess   = prometheus.NewDesc("rowfs_policy_last_success_timestamp_seconds", "When a policy last ran without an error.", []string{"policy"}, nil)
	descPolicySkipped   = prometheus.NewDesc("rowfs_policy_skipped_runs_total", "Due times a policy skipped because a run overran them.", []string{"policy"}, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	info := c.pool.Info()
	gauge(descPoolUsed, float64(info.UsedBytes))
	gauge(descPoolFree, float64(info.FreeBytes))
	gauge(descPoolCapacity, float64(info.UsedBytes+info.FreeBytes))
	gauge(descPoolProvisioned, float64(info.ProvisionedBytes))
	for _, v := range c.pool.Volumes() {
		gauge(descVolumeSize, float64(v.Size), v.Name, v.Backend)
		gauge(descVolumeHead, float64(v.UsedBytes), v.Name, v.Backend)
		gauge(descVolumeSnapshots, float64(v.SnapshotBytes), v.Name, v.Backend)
		gauge(descVolumeDepth, float64(v.ChainLength), v.Name, v.Backend)
		gauge(descVolumeCount, float64(v.Snapshots), v.Name, v.Backend)
		gauge(descVolumeOpen, float64(v.OpenHandles), v.Name, v.Backend)
	}
	type kindState struct{ kind, state string }
	jobs := map[kindState]int{}
	for _, j := range c.pool.Jobs() {
		jobs[kindState{j.Kind, j.State}]++
		if j.State == rowengine.JobRunning {
			id := strconv.FormatUint(j.ID, 10)
			gauge(descJobDone, float64(j.Done), id, j.Kind)
			gauge(descJobStarted, float64(j.Created.Unix()), id, j.Kind)
		}
	}
	for ks, n := range jobs {
		gauge(descJobs, float64(n), ks.kind, ks.state)
	}
	recs, err := c.pool.Policies()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPolicyNext, err)
		return
	}
	for _, rec := range recs {
		if !rec.LastRun.IsZero() {
			gauge(descPolicyLastRun, float64(rec.LastRun.Unix()), rec.Name)
		}
		if !rec.LastSuccess.IsZero() {
			gauge(descPolicySuccess, float64(rec.LastSuccess.Unix()), rec.Name)
		}
		ch <- prometheus.MustNewConstMetric(descPolicySkipped, prometheus.CounterValue, float64(rec.Skipped), rec.Name)
		sched, err := scheduleOf(rec)
		if err != nil || rec.Paused {
			continue
		}
		if next, ok := sched.next(handledUntil(rec)); ok {
			gauge(descPolicyNext, float64(next.Unix()), rec.Name)
			if after, ok := sched.next(next); ok {
				gauge(descPolicyPeriod, after.Sub(next).Seconds(), rec.Name)
			}
		}
	}
}

// serveMetrics serves /metrics, the web page at / and the read-only API
// it reads on addr until stopped. addr must be on loopback unless
// allowRemote: the page shows volume names and the layout of the host.
func serveMetrics(addr string, allowRemote bool, handler http.Handler, log *slog.Logger) (stop func(), err error) {
	if !allowRemote {
		if err := checkLoopback(addr); err != nil {
			return nil, fmt.Errorf("metrics: %w (or set metrics_allow_remote)", err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	go srv.Serve(ln)
	log.Info("serving metrics and the web page", "addr", "http://"+ln.Addr().String()+"/")
	return func() { srv.Close() }, nil
}

// handler is /metrics from the registry.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
