package daemon

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// TestStatusMapsEverySentinel: each engine sentinel has an HTTP status and
// an api code of its own choosing in statuses, none left to the default,
// and every code it gives is one api.Codes lists (so rowctl maps it).
func TestStatusMapsEverySentinel(t *testing.T) {
	for name, sentinel := range rowengine.Sentinels {
		if !slices.ContainsFunc(statuses, func(m statusMapping) bool { return m.err == sentinel }) {
			t.Errorf("rowengine.%s has no status in statuses (daemon/server.go): choose one", name)
		}
	}
	for _, m := range statuses {
		if !slices.Contains(api.Codes, m.code) {
			t.Errorf("%v maps to code %q, which api.Codes does not list", m.err, m.code)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{rowengine.ErrNotFound, http.StatusNotFound, api.CodeNotFound},
		{rowengine.ErrPoolLocked, http.StatusConflict, api.CodeBusy},
		{rowengine.ErrIO, http.StatusInternalServerError, api.CodeIO},
		{rowengine.ErrUnavailable, http.StatusServiceUnavailable, api.CodeUnavailable},
		{rowengine.ErrNoSpace, http.StatusInsufficientStorage, api.CodeNoSpace},
		{fmt.Errorf("surprise"), http.StatusInternalServerError, api.CodeInternal},
	}
	for _, c := range cases {
		status, code := httpStatus(fmt.Errorf("context: %w", c.err))
		if status != c.status || code != c.code {
			t.Errorf("httpStatus(%v) = %d %s, want %d %s", c.err, status, code, c.status, c.code)
		}
	}
}
