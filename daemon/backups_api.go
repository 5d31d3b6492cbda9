package daemon

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/backup"
)

// The control API of backups (api.PathBackups …).

func (s *server) listBackupTargets(w http.ResponseWriter, r *http.Request) {
	all, source, err := s.backups.targets()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := api.BackupTargetList{Targets: []api.BackupTarget{}}
	for _, t := range all {
		out.Targets = append(out.Targets, api.BackupTarget{Name: t.Name, URL: t.URL, Endpoint: t.Endpoint, Region: t.Region,
			KeyFile: t.KeyFile, Insecure: t.Insecure, Source: source[t.Name]})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) addBackupTarget(w http.ResponseWriter, r *http.Request) {
	var req api.BackupTarget
	if !decode(w, r, &req) {
		return
	}
	if !peerIsRoot(r) {
		writeError(w, http.StatusForbidden, api.CodeForbidden, "only root may add backup targets: the daemon writes to them as itself")
		return
	}
	rec := rowengine.BackupTarget{Name: req.Name, URL: req.URL, Endpoint: req.Endpoint, Region: req.Region, KeyFile: req.KeyFile, Insecure: req.Insecure}
	if _, ok := s.backups.cfg.targets[req.Name]; ok {
		s.fail(w, r, fmt.Errorf("%w: backup target %q is in the config file", rowengine.ErrExists, req.Name))
		return
	}
	// The URL and key file are checked now; reaching the target, when used.
	if _, err := s.backups.openTarget(rec); err != nil {
		s.fail(w, r, err)
		return
	}
	if rec.KeyFile != "" {
		if _, err := backup.LoadKey(rec.KeyFile); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if err := s.pool.SaveBackupTarget(rec); err != nil {
		s.fail(w, r, err)
		return
	}
	s.backups.refresh(rec.Name) // it may hold points already (a pool rebuilt)
	writeJSON(w, http.StatusCreated, req)
}

func (s *server) removeBackupTarget(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := s.backups.cfg.targets[name]; ok {
		s.fail(w, r, fmt.Errorf("%w: backup target %q is in the config file: remove it there", rowengine.ErrInvalidArgument, name))
		return
	}
	if err := s.pool.DeleteBackupTarget(name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.backups.forget(name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) listBackups(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	names := []string{q.Get("target")}
	if names[0] == "" {
		all, _, err := s.backups.targets()
		if err != nil {
			s.fail(w, r, err)
			return
		}
		names = nil
		for _, t := range all {
			names = append(names, t.Name)
		}
	}
	out := api.BackupList{Points: []api.BackupPoint{}}
	for _, name := range names {
		repo, t, err := s.backups.repo(r.Context(), name)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		points, err := repo.Points(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, m := range points {
			if v := q.Get("volume"); v == "" || v == m.Volume {
				out.Points = append(out.Points, pointDoc(t.Name, m))
			}
		}
	}
	slices.SortStableFunc(out.Points, func(a, b api.BackupPoint) int { return a.Created.Compare(b.Created) })
	writeJSON(w, http.StatusOK, out)
}

func (s *server) createBackup(w http.ResponseWriter, r *http.Request) {
	var req api.BackupRequest
	if !decode(w, r, &req) {
		return
	}
	var jobs []rowengine.JobInfo
	var err error
	switch {
	case req.Group != "" && (req.Volume != "" || req.FromSnapshot != ""):
		err = fmt.Errorf("%w: a group backup takes its own group snapshot: no volume or --from-snapshot", rowengine.ErrInvalidArgument)
	case req.Group != "":
		jobs, err = s.backups.startGroupBackup(r.Context(), req.Group, req.Target, req.Full, "")
	default:
		var j rowengine.JobInfo
		j, err = s.backups.startBackup(r.Context(), req.Volume, req.Target, req.FromSnapshot, req.Full, "")
		jobs = append(jobs, j)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.mount.SnapshotsChanged(req.Volume)
	out := api.BackupResult{Jobs: []api.Job{}}
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, jobDoc(j))
	}
	writeJSON(w, http.StatusAccepted, out)
}

func (s *server) backupAction(w http.ResponseWriter, r *http.Request) {
	var req api.BackupActionRequest
	if !decode(w, r, &req) {
		return
	}
	point, ctx := r.PathValue("point"), r.Context()
	action := r.PathValue("action")
	if !slices.Contains([]string{"restore", "delete", "verify", "gc"}, action) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("no backup action %q: restore, delete, verify or gc", action))
		return
	}
	if action == "restore" {
		var jobs []rowengine.JobInfo
		var err error
		if req.Group {
			if req.To != "" || req.Volume != "" {
				err = fmt.Errorf("%w: a group restore goes onto the group's volumes: no --to or --volume", rowengine.ErrInvalidArgument)
			} else {
				jobs, err = s.backups.startGroupRestore(ctx, point, req.Target)
			}
		} else {
			var j rowengine.JobInfo
			j, err = s.backups.startRestore(ctx, point, req.Target, req.To, req.Volume)
			jobs = append(jobs, j)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out := api.BackupResult{Jobs: []api.Job{}}
		for _, j := range jobs {
			_, volume, _ := strings.Cut(j.Target, " to ")
			s.mount.VolumeChanged(volume)
			out.Jobs = append(out.Jobs, jobDoc(j))
		}
		writeJSON(w, http.StatusAccepted, out)
		return
	}
	repo, _, err := s.backups.repo(ctx, req.Target)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch action {
	case "delete":
		plan, err := repo.PlanDelete(ctx, point, req.Only)
		if err == nil && !req.DryRun {
			err = repo.ExecuteDelete(ctx, plan)
			s.backups.refresh(req.Target)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, api.BackupDeleteResult{DryRun: req.DryRun, Points: plan.Points, Why: plan.Why})
	case "verify":
		if point == "-" {
			point = ""
		}
		rep, err := repo.Verify(ctx, point, req.DryRun, nil)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out := api.BackupVerifyResult{Points: rep.Points, Chunks: rep.Chunks, Bytes: rep.Bytes, Quarantined: rep.Quarantined, Damaged: []api.BackupDamage{}}
		for _, d := range rep.Damaged {
			doc := api.BackupDamage{Chunk: d.Chunk, Error: d.Error}
			for _, br := range d.Breaks {
				b := api.BackupBreak{Point: br.Point, Volume: br.Volume}
				for _, e := range br.Ranges {
					b.Ranges = append(b.Ranges, fmt.Sprintf("%d+%d", e.Offset, e.Length))
				}
				doc.Breaks = append(doc.Breaks, b)
			}
			out.Damaged = append(out.Damaged, doc)
		}
		writeJSON(w, http.StatusOK, out)
	case "gc":
		plan, err := repo.Collect(ctx, req.DryRun)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, api.BackupGCResult{DryRun: req.DryRun, Chunks: len(plan.Chunks), Indexes: len(plan.Indexes), Referenced: plan.Referenced})
	}
}
