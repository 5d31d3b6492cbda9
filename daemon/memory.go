package daemon

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strings"

	"github.com/rowfs/rowfs/ctl/api"
)

// parseMemoryLimit reads memory_limit: "off" (the default) or a size. Zero
// means off.
//
// The limit is opt-in because Go's collector runs without pause once the
// live heap reaches it, and rowfsd's live heap grows with concurrency (a
// request buffer of up to 1 MiB per request in flight), not only with the
// pool: a default limit measured on a fill cut concurrent reads to a third.
func parseMemoryLimit(s string) (int64, error) {
	if s == "" || strings.EqualFold(s, "off") {
		return 0, nil
	}
	n, err := api.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("memory limit %q: want off or a size like 256M: %w", s, err)
	}
	if n < 64<<20 || n > math.MaxInt64 {
		return 0, fmt.Errorf("memory limit %q: at least 64M, or the collector would run without pause", s)
	}
	return int64(n), nil
}

// applyMemoryLimit sets Go's soft memory limit. GOMEMLIMIT in the
// environment wins: the runtime has already applied it.
func applyMemoryLimit(limit int64, log *slog.Logger) {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		log.Info("memory limit from GOMEMLIMIT", "value", env)
		return
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("soft memory limit", "bytes", limit)
	}
}
