package daemon

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

type noMount struct{}

func (noMount) VolumeChanged(string)    {}
func (noMount) VolumeRemoved(string)    {}
func (noMount) SnapshotsChanged(string) {}

// fuzzRoutes are the endpoints that decode a body or a query.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", api.PathVolumes},
	{"POST", "/v1/volumes/{name}/resize"},
	{"POST", "/v1/volumes/{name}/set"},
	{"POST", "/v1/volumes/{name}/snapshots"},
	{"POST", "/v1/volumes/{name}/rollback"},
	{"POST", "/v1/volumes/{name}/clone"},
	{"DELETE", "/v1/volumes/{name}/snapshots/s1?recursive={body}&dry_run=true"},
	{"GET", "/v1/volumes/{name}/diff?from={body}"},
	{"POST", "/v1/fsck?repair={body}"},
	{"GET", "/v1/jobs/{name}"},
}

// FuzzControlRequest sends arbitrary bodies, names and query values to
// the control API over a real pool: every answer is a JSON document with
// a status below 500, and nothing panics.
func FuzzControlRequest(f *testing.F) {
	pool, err := rowengine.Open(f.TempDir(), rowengine.Options{BlockSize: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { pool.Close() })
	if _, err := pool.CreateVolume("vm", 1<<20); err != nil {
		f.Fatal(err)
	}
	if _, err := pool.CreateSnapshot("vm", "s1", rowengine.SnapshotOptions{}); err != nil {
		f.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	h := (&server{pool: pool, mount: noMount{}, dir: "/mnt", log: log, sched: newScheduler(pool, time.Now, log)}).routes()
	f.Add(uint8(0), "vm", []byte(`{"name":"a","size":1048576}`))
	f.Add(uint8(0), "vm", []byte(`{"name":"a","size":-1}`))
	f.Add(uint8(1), "vm", []byte(`{"size":2097152,"shrink":true}`))
	f.Add(uint8(2), "vm", []byte(`{"max_snapshots":0}`))
	f.Add(uint8(3), "vm", []byte(`{"name":"auto-x","auto":true}`))
	f.Add(uint8(4), "vm", []byte(`{"snapshot":"s1","force":true}`))
	f.Add(uint8(5), "vm", []byte(`{"snapshot":"s1","name":"../x"}`))
	f.Add(uint8(6), "vm", []byte(`true`))
	f.Add(uint8(7), "vm", []byte(`s1`))
	f.Add(uint8(8), "vm", []byte(`leaks`))
	f.Add(uint8(9), "18446744073709551616", []byte{})
	f.Add(uint8(3), "vm", []byte(`{"name":"x"}{"name":"y"}`))
	f.Add(uint8(0), "vm", bytes.Repeat([]byte("["), 1<<16))
	f.Fuzz(func(t *testing.T, route uint8, name string, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		path := replace(replace(rt.path, "{name}", url.PathEscape(name)), "{body}", url.QueryEscape(string(body)))
		req, err := http.NewRequest(rt.method, "http://rowfsd"+path, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q: status %d: %s", rt.method, path, body, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: answer is not JSON: %q", rt.method, path, rec.Body)
		}
	})
}

func replace(s, old, repl string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte(old), []byte(repl)))
}
