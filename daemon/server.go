package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
	rowfs "github.com/rowfs/rowfs/fs"
	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/backup"
)

// maxRequestBytes bounds a control request body.
const maxRequestBytes = 1 << 20

// mountNotifier is what the server needs of the mount: dropping kernel
// caches after a change made through the API.
type mountNotifier interface {
	VolumeChanged(name string)
	VolumeRemoved(name string)
	SnapshotsChanged(volume string)
}

type server struct {
	pool  *rowengine.Pool
	mount mountNotifier
	dir   string // mount point, for paths in answers
	log   *slog.Logger
	sched *scheduler
	// freezeBound bounds a group's freeze and thaw hooks together
	// (default defaultFreezeBound; tests shorten it).
	freezeBound time.Duration
	// historyInterval and historyOpts are the capacity history's settings,
	// for answers (0: not sampled).
	historyInterval time.Duration
	historyOpts     rowengine.HistoryOptions
	backups         *backups
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathVersion, s.version)
	mux.HandleFunc("GET "+api.PathPool, s.poolInfo)
	mux.HandleFunc("GET "+api.PathVolumes, s.listVolumes)
	mux.HandleFunc("POST "+api.PathVolumes, s.createVolume)
	mux.HandleFunc("GET "+api.PathVolume, s.volumeInfo)
	mux.HandleFunc("DELETE "+api.PathVolume, s.deleteVolume)
	mux.HandleFunc("POST "+api.PathVolumeResize, s.resizeVolume)
	mux.HandleFunc("POST "+api.PathVolumeSet, s.setVolume)
	mux.HandleFunc("POST "+api.PathVolumeAttach, s.attachVolume)
	mux.HandleFunc("POST "+api.PathVolumeDetach, s.detachVolume)
	mux.HandleFunc("GET "+api.PathSnapshots, s.listSnapshots)
	mux.HandleFunc("POST "+api.PathSnapshots, s.createSnapshot)
	mux.HandleFunc("GET "+api.PathSnapshot, s.snapshotInfo)
	mux.HandleFunc("DELETE "+api.PathSnapshot, s.deleteSnapshot)
	mux.HandleFunc("POST "+api.PathRollback, s.rollback)
	mux.HandleFunc("POST "+api.PathReset, s.reset)
	mux.HandleFunc("POST "+api.PathPoolSettings, s.setPoolSetting)
	mux.HandleFunc("GET "+api.PathGroups, s.listGroups)
	mux.HandleFunc("POST "+api.PathGroups, s.createGroup)
	mux.HandleFunc("GET "+api.PathGroup, s.groupInfo)
	mux.HandleFunc("DELETE "+api.PathGroup, s.deleteGroup)
	mux.HandleFunc("POST "+api.PathGroupAction, s.groupAction)
	mux.HandleFunc("GET "+api.PathPolicies, s.listPolicies)
	mux.HandleFunc("POST "+api.PathPolicies, s.createPolicy)
	mux.HandleFunc("GET "+api.PathPolicy, s.policyInfo)
	mux.HandleFunc("DELETE "+api.PathPolicy, s.deletePolicy)
	mux.HandleFunc("POST "+api.PathPolicyAction, s.policyAction)
	mux.HandleFunc("GET "+api.PathDiff, s.diff)
	mux.HandleFunc("POST "+api.PathClone, s.clone)
	mux.HandleFunc("POST "+api.PathFlatten, s.flatten)
	mux.HandleFunc("GET "+api.PathHistory, s.history)
	mux.HandleFunc("GET "+api.PathJobs, s.listJobs)
	mux.HandleFunc("GET "+api.PathJob, s.jobInfo)
	mux.HandleFunc("POST "+api.PathFsck, s.fsck)
	mux.HandleFunc("GET "+api.PathBackupTargets, s.listBackupTargets)
	mux.HandleFunc("POST "+api.PathBackupTargets, s.addBackupTarget)
	mux.HandleFunc("DELETE "+api.PathBackupTarget, s.removeBackupTarget)
	mux.HandleFunc("GET "+api.PathBackups, s.listBackups)
	mux.HandleFunc("POST "+api.PathBackups, s.createBackup)
	mux.HandleFunc("POST "+api.PathBackupAction, s.backupAction)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ServeMux would answer an unclean path with a bodiless redirect.
		if p := r.URL.Path; p == "" || path.Clean(p) != p {
			writeError(w, http.StatusBadRequest, api.CodeInvalidArgument, fmt.Sprintf("malformed path %q", p))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

type statusMapping struct {
	err    error
	status int
	code   string
}

// statuses is the one place an engine error becomes an HTTP status and a
// stable api error code: every engine sentinel is here on purpose
// (TestStatusMapsEverySentinel checks none is left to the default).
var statuses = []statusMapping{
	{rowengine.ErrNotFound, http.StatusNotFound, api.CodeNotFound},
	{rowengine.ErrExists, http.StatusConflict, api.CodeExists},
	{rowengine.ErrInvalidArgument, http.StatusBadRequest, api.CodeInvalidArgument},
	{rowengine.ErrBusy, http.StatusConflict, api.CodeBusy},
	// Another process has the pool: busy, as a second daemon would be told.
	{rowengine.ErrPoolLocked, http.StatusConflict, api.CodeBusy},
	{rowengine.ErrChainLimit, http.StatusConflict, api.CodeChainLimit},
	{rowengine.ErrJobFailed, http.StatusInternalServerError, api.CodeJobFailed},
	{rowengine.ErrNoSpace, http.StatusInsufficientStorage, api.CodeNoSpace},
	{rowengine.ErrReadOnly, http.StatusForbidden, api.CodeReadOnly},
	{rowengine.ErrClosed, http.StatusServiceUnavailable, api.CodeUnavailable},
	{rowengine.ErrUnavailable, http.StatusServiceUnavailable, api.CodeUnavailable},
	{rowengine.ErrCorrupt, http.StatusConflict, api.CodeCorrupt},
	// The data file failed this request: the server's fault, with a code
	// of its own so scripts can tell it from a bug.
	{rowengine.ErrIO, http.StatusInternalServerError, api.CodeIO},
	// Backups (rowengine/backup).
	{backup.ErrNotFound, http.StatusNotFound, api.CodeNotFound},
	{backup.ErrInvalid, http.StatusBadRequest, api.CodeInvalidArgument},
	{backup.ErrCorrupt, http.StatusConflict, api.CodeCorrupt},
	{backup.ErrKey, http.StatusForbidden, api.CodeKey},
	{backup.ErrTarget, http.StatusBadGateway, api.CodeTarget},
}

// httpStatus maps an engine error with statuses; anything else is 500
// internal.
func httpStatus(err error) (int, string) {
	for _, m := range statuses {
		if errors.Is(err, m.err) {
			return m.status, m.code
		}
	}
	return http.StatusInternalServerError, api.CodeInternal
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.Error{Code: code, Message: msg})
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := httpStatus(err)
	if status >= 500 {
		s.log.Error("control request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, code, err.Error())
}

// decode reads a JSON body strictly: size-limited, no unknown fields, one value.
func decode(w http.ResponseWriter, r *http.Request, into any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		writeError(w, http.StatusBadRequest, api.CodeInvalidArgument, "malformed request body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, api.CodeInvalidArgument, "malformed request body: more than one JSON value")
		return false
	}
	return true
}

func (s *server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.VersionInfo{Version: api.Version, API: "v1", GoVersion: runtime.Version()})
}

func (s *server) poolInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.poolDoc())
}

func (s *server) poolDoc() api.Pool {
	i := s.pool.Info()
	settings := map[string]string{}
	current := s.pool.Settings()
	for _, k := range rowengine.SettingKeys {
		settings[k] = current.Value(k)
	}
	return api.Pool{Dir: i.Dir, Mount: s.dir, BlockSize: i.BlockSize, Created: i.Created.UTC(), UsedBytes: i.UsedBytes,
		StoredBytes: i.StoredBytes, FreeBytes: i.FreeBytes, CapacityBytes: i.CapacityBytes, ProvisionedBytes: i.ProvisionedBytes,
		Overcommit: i.Overcommit(), Volumes: i.Volumes, DataBytesWritten: i.DataBytesWritten, Settings: settings}
}

func (s *server) setPoolSetting(w http.ResponseWriter, r *http.Request) {
	var req api.SetPoolSettingRequest
	if !decode(w, r, &req) {
		return
	}
	if _, err := s.pool.SetSetting(req.Key, req.Value); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.poolDoc())
}

func (s *server) volumeDoc(v rowengine.VolumeInfo) api.Volume {
	return api.Volume{Name: v.Name, ID: v.ID, Backend: v.Backend, Size: v.Size, Created: v.Created.UTC(),
		BlockSize: v.BlockSize, UsedBytes: v.UsedBytes, SnapshotBytes: v.SnapshotBytes, TotalBytes: v.TotalBytes,
		Snapshots: v.Snapshots, ChainLength: v.ChainLength, MaxSnapshots: v.MaxSnapshots, Parent: v.Parent,
		OpenHandles: v.OpenHandles, Writers: v.Writers, Path: filepath.Join(s.dir, v.Name),
		RBDPool: v.RBDPool, RBDImage: v.RBDImage}
}

// volumeDetailDoc describes a volume with what only Ceph knows of an RBD
// volume; with Ceph unreachable it says so and gives what rowfs knows.
func (s *server) volumeDetailDoc(name string) (api.Volume, error) {
	v, err := s.pool.VolumeDetail(name)
	if errors.Is(err, rowengine.ErrUnavailable) {
		doc := s.volumeDoc(v)
		doc.Note = "Ceph unreachable: snapshot count and capacity unknown: " + err.Error()
		return doc, nil
	}
	return s.volumeDoc(v), err
}

func (s *server) attachVolume(w http.ResponseWriter, r *http.Request) {
	var req api.AttachVolumeRequest
	if !decode(w, r, &req) {
		return
	}
	v, err := s.pool.AttachRBDVolume(req.Name, req.RBDPool, req.RBDImage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.mount.VolumeChanged(req.Name)
	writeJSON(w, http.StatusCreated, s.volumeDoc(v))
}

func (s *server) detachVolume(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.pool.DetachVolume(name, r.URL.Query().Get("force") == "true"); err != nil {
		s.fail(w, r, err)
		return
	}
	s.mount.VolumeRemoved(name)
	s.mount.SnapshotsChanged(name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) listVolumes(w http.ResponseWriter, r *http.Request) {
	out := api.VolumeList{Volumes: []api.Volume{}}
	for _, v := range s.pool.Volumes() {
		out.Volumes = append(out.Volumes, s.volumeDoc(v))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) createVolume(w http.ResponseWriter, r *http.Request) {
	var req api.CreateVolumeRequest
	if !decode(w, r, &req) {
		return
	}
	var v rowengine.VolumeInfo
	var err error
	switch req.Backend {
	case "", rowengine.BackendRow:
		if req.RBDPool != "" || req.RBDImage != "" {
			writeError(w, http.StatusBadRequest, api.CodeInvalidArgument, "rbd_pool and rbd_image are for --backend rbd")
			return
		}
		v, err = s.pool.CreateVolume(req.Name, req.Size)
	case rowengine.BackendRBD:
		v, err = s.pool.CreateRBDVolume(req.Name, req.RBDPool, req.RBDImage, req.Size)
	default:
		writeError(w, http.StatusBadRequest, api.CodeInvalidArgument, fmt.Sprintf("backend %q: want row or rbd", req.Backend))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.volumeDoc(v))
}

func (s *server) volumeInfo(w http.ResponseWriter, r *http.Request) {
	doc, err := s.volumeDetailDoc(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

func (s *server) deleteVolume(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	force := r.URL.Query().Get("force") == "true"
	res, err := s.pool.DeleteVolume(name, force)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.mount.VolumeRemoved(name)
	s.mount.SnapshotsChanged(name)
	writeJSON(w, http.StatusOK, api.DeleteVolumeResult{KeptForClones: orEmpty(res.KeptForClones), Job: jobDocPtr(res.Job)})
}

func (s *server) resizeVolume(w http.ResponseWriter, r *http.Request) {
	var req api.ResizeVolumeRequest
	if !decode(w, r, &req) {
		return
	}
	name := r.PathValue("name")
	v, err := s.pool.ResizeVolume(name, req.Size, req.Shrink)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.mount.VolumeChanged(name)
	writeJSON(w, http.StatusOK, s.volumeDoc(v))
}

// VolumeJSON and PoolJSON serve the xattrs: the same documents as the API.
func (s *server) VolumeJSON(name string) ([]byte, error) {
	doc, err := s.volumeDetailDoc(name)
	if err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

func (s *server) PoolJSON() ([]byte, error) { return json.Marshal(s.poolDoc()) }

func (s *server) setVolume(w http.ResponseWriter, r *http.Request) {
	var req api.SetVolumeRequest
	if !decode(w, r, &req) {
		return
	}
	name := r.PathValue("name")
	v, err := s.pool.Volume(name)
	if err == nil && req.MaxSnapshots != nil {
		v, err = s.pool.SetMaxSnapshots(name, *req.MaxSnapshots)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.volumeDoc(v))
}

func (s *server) snapshotDoc(n rowengine.SnapshotInfo) api.Snapshot {
	doc := api.Snapshot{Name: n.Name, ID: n.ID, Volume: n.Volume, Parent: n.Parent, ParentRef: n.ParentRef,
		Created: n.Created.UTC(), Kind: n.Kind, Description: n.Description, Size: n.Size, OwnBytes: n.OwnBytes,
		Hidden: n.Hidden, Head: n.Head, Children: n.Children, Policy: n.Policy, Group: n.Group, Consistency: n.Consistency}
	if !n.Head && !n.Hidden {
		doc.Path = filepath.Join(s.dir, rowfs.SnapshotsDir, n.Volume, n.Name)
	}
	return doc
}

func (s *server) snapshotList(volume string) (api.SnapshotList, error) {
	nodes, err := s.pool.Snapshots(volume)
	if err != nil {
		return api.SnapshotList{}, err
	}
	out := api.SnapshotList{Volume: volume, Snapshots: []api.Snapshot{}}
	for _, n := range nodes {
		out.Snapshots = append(out.Snapshots, s.snapshotDoc(n))
	}
	return out, nil
}

func (s *server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	out, err := s.snapshotList(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) createSnapshot(w http.ResponseWriter, r *http.Request) {
	var req api.CreateSnapshotRequest
	if !decode(w, r, &req) {
		return
	}
	name := r.PathValue("name")
	n, err := s.pool.CreateSnapshot(name, req.Name, rowengine.SnapshotOptions{Description: req.Description, Auto: req.Auto})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.mount.SnapshotsChanged(name)
	writeJSON(w, http.StatusCreated, s.snapshotDoc(n))
}

func (s *server) snapshotInfo(w http.ResponseWriter, r *http.Request) {
	n, err := s.pool.Snapshot(r.PathValue("name"), r.PathValue("snap"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.snapshotDoc(n))
}

func (s *server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	name, q := r.PathValue("name"), r.URL.Query()
	opts := rowengine.DeleteOptions{Recursive: q.Get("recursive") == "true", DryRun: q.Get("dry_run") == "true"}
	res, err := s.pool.DeleteSnapshot(name, r.PathValue("snap"), opts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !opts.DryRun {
		s.mount.SnapshotsChanged(name)
	}
	p := res.Plan
	writeJSON(w, http.StatusOK, api.DeleteSnapshotResult{DryRun: opts.DryRun, Job: jobDocPtr(res.Job), Plan: api.DeletePlan{
		Deleted: orEmpty(p.Deleted), FreedBytes: p.FreedBytes, MovedBytes: p.MovedBytes, FilledBytes: p.FilledBytes, KeptHidden: orEmpty(p.KeptHidden),
		Steps: s.stepDocs(p.Steps)}})
}

func (s *server) stepDocs(steps []rowengine.DeleteStep) []api.DeleteStep {
	out := make([]api.DeleteStep, len(steps))
	for i, st := range steps {
		out[i] = api.DeleteStep{Kind: string(st.Kind), Node: st.Ref, Into: st.IntoRef, Readers: st.Readers,
			FreedBytes: st.FreedBytes, MovedBytes: st.MovedBytes, FilledBytes: st.FilledBytes}
	}
	return out
}

func (s *server) rollback(w http.ResponseWriter, r *http.Request) {
	var req api.RollbackRequest
	if !decode(w, r, &req) {
		return
	}
	name := r.PathValue("name")
	res, err := s.pool.RollbackVolume(name, req.Snapshot, req.Force)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.mount.VolumeChanged(name)
	writeJSON(w, http.StatusOK, api.RollbackResult{Volume: s.volumeDoc(res.Volume), Job: jobDocPtr(res.Job)})
}

func (s *server) reset(w http.ResponseWriter, r *http.Request) {
	var req api.ResetRequest
	if !decode(w, r, &req) {
		return
	}
	name := r.PathValue("name")
	res, err := s.pool.ResetVolume(name, req.Force)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.mount.VolumeChanged(name)
	writeJSON(w, http.StatusOK, api.RollbackResult{Volume: s.volumeDoc(res.Volume), Job: jobDocPtr(res.Job)})
}

func (s *server) diff(w http.ResponseWriter, r *http.Request) {
	name, q := r.PathValue("name"), r.URL.Query()
	from, to := q.Get("from"), q.Get("to")
	if from == "" {
		writeError(w, http.StatusBadRequest, api.CodeInvalidArgument, "diff needs ?from=SNAPSHOT")
		return
	}
	extents, err := s.pool.Diff(name, from, to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := api.Diff{Volume: name, From: from, To: to, Extents: []api.Extent{}}
	for _, e := range extents {
		out.Extents = append(out.Extents, api.Extent{Offset: e.Offset, Length: e.Length})
		out.ChangedBytes += e.Length
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) clone(w http.ResponseWriter, r *http.Request) {
	var req api.CloneRequest
	if !decode(w, r, &req) {
		return
	}
	v, err := s.pool.CloneVolume(r.PathValue("name"), req.Snapshot, req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.volumeDoc(v))
}

func (s *server) flatten(w http.ResponseWriter, r *http.Request) {
	job, err := s.pool.FlattenVolume(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, jobDoc(job))
}

func (s *server) listJobs(w http.ResponseWriter, r *http.Request) {
	out := api.JobList{Jobs: []api.Job{}}
	for _, j := range s.pool.Jobs() {
		out.Jobs = append(out.Jobs, jobDoc(j))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) jobInfo(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeInvalidArgument, fmt.Sprintf("job id %q is not a number", r.PathValue("id")))
		return
	}
	j, err := s.pool.Job(id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, jobDoc(j))
}

func jobDoc(j rowengine.JobInfo) api.Job {
	return api.Job{ID: j.ID, Kind: j.Kind, Target: j.Target, State: j.State, Done: j.Done, Total: j.Total,
		Error: j.Error, Created: j.Created.UTC(), Finished: j.Finished.UTC()}
}

func jobDocPtr(j *rowengine.JobInfo) *api.Job {
	if j == nil {
		return nil
	}
	doc := jobDoc(*j)
	return &doc
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SnapshotJSON and SnapshotsJSON serve the snapshot xattrs.
func (s *server) SnapshotJSON(volume, snap string) ([]byte, error) {
	n, err := s.pool.Snapshot(volume, snap)
	if err != nil {
		return nil, err
	}
	return json.Marshal(s.snapshotDoc(n))
}

// SnapshotsJSON lists the visible snapshots, newest last, dropping the
// oldest and setting "truncated" when the document would reach limit bytes.
func (s *server) SnapshotsJSON(volume string, limit int) ([]byte, error) {
	list, err := s.snapshotList(volume)
	if err != nil {
		return nil, err
	}
	visible := make([]api.Snapshot, 0, len(list.Snapshots))
	for _, n := range list.Snapshots {
		if !n.Head && !n.Hidden {
			visible = append(visible, n)
		}
	}
	return snapshotsDoc(volume, visible, limit, json.Marshal)
}

// snapshotsDoc builds {"volume":…,"snapshots":[…],"truncated":…}, keeping
// the newest snapshots that fit under limit bytes. It encodes from the
// newest back and stops at the first that does not fit, so each kept
// snapshot is encoded once and the dropped ones not at all (marshal is
// counted by a test): re-encoding the list per dropped entry took seconds
// with thousands of snapshots.
func snapshotsDoc(volume string, snaps []api.Snapshot, limit int, marshal func(any) ([]byte, error)) ([]byte, error) {
	return newestDoc(volume, "snapshots", snaps, limit, marshal)
}

// BackupsJSON serves user.rowfs.backups.json: the volume's backup points
// on every target, as the daemon last listed them, newest kept.
func (s *server) BackupsJSON(volume string, limit int) ([]byte, error) {
	if _, err := s.pool.Volume(volume); err != nil {
		return nil, err
	}
	return newestDoc(volume, "points", s.backups.known(volume), limit, json.Marshal)
}

// newestDoc is snapshotsDoc for any list: {"volume":…,"FIELD":[…],"truncated":…}.
func newestDoc[T any](volume, field string, snaps []T, limit int, marshal func(any) ([]byte, error)) ([]byte, error) {
	name, err := marshal(volume)
	if err != nil {
		return nil, err
	}
	head, tail := `{"volume":`, `,"`+field+`":[],"truncated":false}`
	size := len(head) + len(name) + len(tail) // with no snapshot kept
	var kept [][]byte                         // newest first
	first := len(snaps)                       // the oldest kept
	for i := len(snaps) - 1; i >= 0; i-- {
		part, err := marshal(snaps[i])
		if err != nil {
			return nil, err
		}
		// The document with snaps[i:]: a comma between parts, and
		// "true" one byte shorter than "false" if older ones are left out.
		next := size + len(part)
		if len(kept) > 0 {
			next++
		}
		if i > 0 {
			next--
		}
		if next >= limit {
			break
		}
		kept, first = append(kept, part), i
		size += len(part)
		if len(kept) > 1 {
			size++
		}
	}
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(head)
	b.Write(name)
	b.WriteString(`,"` + field + `":[`)
	for i := len(kept) - 1; i >= 0; i-- {
		b.Write(kept[i])
		if i > 0 {
			b.WriteByte(',')
		}
	}
	fmt.Fprintf(&b, `],"truncated":%t}`, first > 0)
	return b.Bytes(), nil
}

func (s *server) fsck(w http.ResponseWriter, r *http.Request) {
	mode, err := rowengine.ParseRepairMode(r.URL.Query().Get("repair"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rep, err := s.pool.CheckAndRepair(mode)
	if err != nil && !errors.Is(err, rowengine.ErrCorrupt) {
		// A corrupt pool still gets its report: the corruptions are the answer.
		s.fail(w, r, err)
		return
	}
	if len(rep.Corruptions) > 0 {
		s.log.Error("fsck found corruptions", "count", len(rep.Corruptions), "first", rep.Corruptions[0])
	}
	writeJSON(w, http.StatusOK, FsckReportDoc(rep, s.pool.Dir(), true))
}

// FsckReportDoc is the API form of a checker report.
func FsckReportDoc(rep rowengine.CheckReport, pool string, online bool) api.FsckReport {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return api.FsckReport{Pool: pool, Online: online, Volumes: rep.Volumes, Nodes: rep.Nodes,
		MappedBlocks: rep.MappedBlocks, FileBlocks: rep.FileBlocks, Leaks: nonNil(rep.Leaks),
		Corruptions: nonNil(rep.Corruptions), Repaired: rep.Repaired, Lost: rep.Lost}
}

// notifiers tells each of several listeners of a change made through the API.
type notifiers []mountNotifier

func (n notifiers) VolumeChanged(name string) {
	for _, l := range n {
		l.VolumeChanged(name)
	}
}

func (n notifiers) VolumeRemoved(name string) {
	for _, l := range n {
		l.VolumeRemoved(name)
	}
}

func (n notifiers) SnapshotsChanged(volume string) {
	for _, l := range n {
		l.SnapshotsChanged(volume)
	}
}
