package daemon

import (
	"fmt"
	"net/http"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// The control API of snapshot policies (api.PathPolicies …).

func (s *server) listPolicies(w http.ResponseWriter, r *http.Request) {
	recs, err := s.pool.Policies()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := api.PolicyList{Policies: []api.Policy{}}
	for _, rec := range recs {
		out.Policies = append(out.Policies, policyDoc(rec))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) createPolicy(w http.ResponseWriter, r *http.Request) {
	var req api.PolicyRequest
	if !decode(w, r, &req) {
		return
	}
	rec, err := policyFromRequest(req, s.sched.now())
	if err == nil && rec.Task == taskBackup && s.backups != nil {
		var t rowengine.BackupTarget
		if t, err = s.backups.target(rec.Target); err == nil {
			rec.Target = t.Name // "" named the only target: keep to it
		}
	}
	if err == nil {
		if _, err = s.pool.Policy(rec.Name); err == nil {
			err = fmt.Errorf("%w: policy %q", rowengine.ErrExists, rec.Name)
		} else {
			err = s.pool.SavePolicy(rec)
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("policy created", "policy", rec.Name, "kind", rec.Kind, "volumes", len(rec.Volumes))
	s.sched.poke()
	s.writePolicy(w, r, rec.Name)
}

func (s *server) writePolicy(w http.ResponseWriter, r *http.Request, name string) {
	rec, err := s.pool.Policy(name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, policyDoc(rec))
}

func (s *server) policyInfo(w http.ResponseWriter, r *http.Request) {
	s.writePolicy(w, r, r.PathValue("name"))
}

func (s *server) deletePolicy(w http.ResponseWriter, r *http.Request) {
	if err := s.pool.DeletePolicy(r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("policy deleted", "policy", r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}

// policyAction serves apply, remove, run, pause and resume.
func (s *server) policyAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	switch action {
	case "run":
		rec, run, err := s.sched.runNow(name)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, api.PolicyRunResult{Policy: policyDoc(rec), Created: orEmpty(run.Created),
			Pruned: orEmpty(run.Pruned), Errors: orEmpty(run.Errors)})
		return
	case "apply", "remove", "pause", "resume":
	default:
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("no policy action %q: apply, remove, run, pause or resume", action))
		return
	}
	var req api.PolicyVolumesRequest
	if (action == "apply" || action == "remove") && !decode(w, r, &req) {
		return
	}
	rec, err := s.pool.Policy(name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch action {
	case "apply", "remove":
		if len(req.Volumes) == 0 && len(req.Groups) == 0 {
			s.fail(w, r, fmt.Errorf("%w: name the volumes (or --group) to %s", rowengine.ErrInvalidArgument, action))
			return
		}
		err = s.pool.SavePolicy(changeVolumes(rec, req.Volumes, req.Groups, action == "apply"))
	case "pause", "resume":
		rec.Paused = action == "pause"
		if !rec.Paused {
			// Resuming does not run what came due while paused.
			rec.LastDue = s.sched.now().Add(-time.Nanosecond)
		}
		err = s.pool.RecordPolicy(rec)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("policy changed", "policy", name, "action", action)
	s.sched.poke()
	s.writePolicy(w, r, name)
}
