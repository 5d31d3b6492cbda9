package daemon

import (
	"fmt"
	"net/http"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// The control API of snapshot groups (api.PathGroups …).

func (s *server) groupDoc(g rowengine.Group) (api.Group, error) {
	points, err := s.pool.GroupPoints(g.Name)
	if err != nil {
		return api.Group{}, err
	}
	doc := api.Group{Name: g.Name, Created: g.Created.UTC(), Volumes: g.Volumes, FreezeCmd: g.FreezeCmd, ThawCmd: g.ThawCmd, QGASocket: g.QGASocket, Points: []api.GroupPoint{}}
	for _, pt := range points {
		doc.Points = append(doc.Points, api.GroupPoint{Name: pt.Name, Created: pt.Created.UTC(), Members: pt.Members,
			Consistency: pt.Consistency, Valid: pt.Valid, Why: pt.Why})
	}
	return doc, nil
}

func (s *server) writeGroup(w http.ResponseWriter, r *http.Request, name string) {
	g, err := s.pool.Group(name)
	if err == nil {
		var doc api.Group
		if doc, err = s.groupDoc(g); err == nil {
			writeJSON(w, http.StatusOK, doc)
			return
		}
	}
	s.fail(w, r, err)
}

func (s *server) listGroups(w http.ResponseWriter, r *http.Request) {
	groups, err := s.pool.Groups()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := api.GroupList{Groups: []api.Group{}}
	for _, g := range groups {
		doc, err := s.groupDoc(g)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out.Groups = append(out.Groups, doc)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) createGroup(w http.ResponseWriter, r *http.Request) {
	var req api.GroupRequest
	if !decode(w, r, &req) {
		return
	}
	hooks := hooksOf(req)
	if hooks != (rowengine.GroupHooks{}) && !peerIsRoot(r) {
		writeError(w, http.StatusForbidden, api.CodeForbidden, "only root may set freeze hooks: they run as the daemon")
		return
	}
	if _, err := s.pool.CreateGroup(req.Name, req.Volumes, hooks); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeGroup(w, r, req.Name)
}

func (s *server) groupInfo(w http.ResponseWriter, r *http.Request) {
	s.writeGroup(w, r, r.PathValue("name"))
}

func (s *server) deleteGroup(w http.ResponseWriter, r *http.Request) {
	if err := s.pool.DeleteGroup(r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// groupAction serves add, remove, snapshot, rollback and delete-snapshot.
func (s *server) groupAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	switch action {
	case "add", "remove", "hooks":
		var req api.GroupRequest
		if !decode(w, r, &req) {
			return
		}
		var err error
		if action == "hooks" {
			if !peerIsRoot(r) {
				writeError(w, http.StatusForbidden, api.CodeForbidden, "only root may set freeze hooks: they run as the daemon")
				return
			}
			_, err = s.pool.SetGroupHooks(name, hooksOf(req))
		} else {
			_, err = s.pool.ChangeGroup(name, req.Volumes, action == "add")
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.writeGroup(w, r, name)
		return
	case "snapshot", "rollback", "delete-snapshot":
	default:
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("no group action %q: add, remove, hooks, snapshot, rollback or delete-snapshot", action))
		return
	}
	var req api.GroupSnapshotRequest
	if !decode(w, r, &req) {
		return
	}
	res := api.GroupSnapshotResult{Group: name, Snapshot: req.Snapshot}
	switch action {
	case "snapshot":
		infos, consistency, note, err := s.groupSnapshot(name, req.Snapshot, rowengine.SnapshotOptions{Description: req.Description, Auto: req.Auto})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		res.Consistency, res.Note = consistency, note
		for _, info := range infos {
			res.Snapshots = append(res.Snapshots, s.snapshotDoc(info))
			res.Snapshot = info.Name
			s.mount.SnapshotsChanged(info.Volume)
		}
	case "rollback":
		results, err := s.pool.RollbackGroup(name, req.Snapshot, req.Force)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, rr := range results {
			res.Volumes = append(res.Volumes, s.volumeDoc(rr.Volume))
			s.mount.VolumeChanged(rr.Volume.Name)
		}
	case "delete-snapshot":
		if _, err := s.pool.DeleteGroupSnapshot(name, req.Snapshot); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func hooksOf(req api.GroupRequest) rowengine.GroupHooks {
	return rowengine.GroupHooks{FreezeCmd: req.FreezeCmd, ThawCmd: req.ThawCmd, QGASocket: req.QGASocket}
}
