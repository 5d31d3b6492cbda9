package daemon

import (
	_ "embed"
	"net/http"
)

// webPage is the read-only page served at / on the metrics address: plain
// HTML and JavaScript with no build step, reading the control API's GET
// endpoints (served beside it) to draw the pool, the volumes, each
// volume's snapshot tree, jobs, policies and the capacity chart.
//
//go:embed web/index.html
var webPage []byte

// webRoutes serves the metrics address: /metrics, the page at /, and the
// control API's GET endpoints, which only read. Anything else there is
// refused (405): changes go through the control socket, whose peers are
// checked.
func (s *server) webRoutes(m *metrics) http.Handler {
	control := s.routes()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		_, _ = w.Write(webPage)
	})
	mux.Handle("GET /v1/", control)
	return mux
}
