package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// maxRequestBytes bounds a control request body.
const maxRequestBytes = 1 << 20

// mountNotifier is what the server needs of the mount: dropping kernel
// caches after a change made through the API.
type mountNotifier interface {
	VolumeChanged(name string)
	VolumeRemoved(name string)
}

type server struct {
	pool  *rowengine.Pool
	mount mountNotifier
	dir   string // mount point, for paths in answers
	log   *slog.Logger
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
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// httpStatus is the one place an engine error becomes an HTTP status and
// an API error code.
func httpStatus(err error) (int, string) {
	switch {
	case errors.Is(err, rowengine.ErrNotFound):
		return http.StatusNotFound, api.CodeNotFound
	case errors.Is(err, rowengine.ErrExists):
		return http.StatusConflict, api.CodeExists
	case errors.Is(err, rowengine.ErrInvalidArgument):
		return http.StatusBadRequest, api.CodeInvalidArgument
	case errors.Is(err, rowengine.ErrBusy):
		return http.StatusConflict, api.CodeBusy
	case errors.Is(err, rowengine.ErrNoSpace):
		return http.StatusInsufficientStorage, api.CodeNoSpace
	case errors.Is(err, rowengine.ErrReadOnly):
		return http.StatusForbidden, api.CodeReadOnly
	case errors.Is(err, rowengine.ErrClosed):
		return http.StatusServiceUnavailable, api.CodeUnavailable
	default:
		return http.StatusInternalServerError, api.CodeInternal
	}
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
	return api.Pool{Dir: i.Dir, Mount: s.dir, BlockSize: i.BlockSize, Created: i.Created.UTC(), UsedBytes: i.UsedBytes,
		FreeBytes: i.FreeBytes, CapacityBytes: i.CapacityBytes, ProvisionedBytes: i.ProvisionedBytes,
		Overcommit: i.Overcommit(), Volumes: i.Volumes}
}

func (s *server) volumeDoc(v rowengine.VolumeInfo) api.Volume {
	return api.Volume{Name: v.Name, ID: v.ID, Backend: v.Backend, Size: v.Size, Created: v.Created.UTC(),
		BlockSize: v.BlockSize, UsedBytes: v.UsedBytes, OpenHandles: v.OpenHandles, Writers: v.Writers,
		Path: filepath.Join(s.dir, v.Name)}
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
	v, err := s.pool.CreateVolume(req.Name, req.Size)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.volumeDoc(v))
}

func (s *server) volumeInfo(w http.ResponseWriter, r *http.Request) {
	v, err := s.pool.Volume(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.volumeDoc(v))
}

func (s *server) deleteVolume(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	force := r.URL.Query().Get("force") == "true"
	if _, err := s.pool.DeleteVolume(name, force); err != nil {
		s.fail(w, r, err)
		return
	}
	s.mount.VolumeRemoved(name)
	w.WriteHeader(http.StatusNoContent)
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
	v, err := s.pool.Volume(name)
	if err != nil {
		return nil, err
	}
	return json.Marshal(s.volumeDoc(v))
}

func (s *server) PoolJSON() ([]byte, error) { return json.Marshal(s.poolDoc()) }
