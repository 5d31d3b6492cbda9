package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
	"github.com/rowfs/rowfs/rowengine"
)

// Go's collector lets the heap grow to twice what is live before it runs,
// and freed pages go back to the kernel slowly: a 16 GiB fill left rowfsd
// at 120 MiB resident with 50 MiB live. A soft limit makes the collector
// run, and return memory, before that. The auto limit grows with the pool
// so a large pool's live map never sits above it, where the collector
// would run continuously.
const (
	autoMemoryBase     = 40 << 20
	autoMemoryPerBlock = 32 // the engine's map costs about 21 bytes per block
	memoryLimitRefresh = 5 * time.Second
)

// memoryLimit is a parsed memory_limit setting.
type memoryLimit struct {
	auto  bool
	bytes int64 // fixed limit; 0 with auto false means off
}

func parseMemoryLimit(s string) (memoryLimit, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return memoryLimit{auto: true}, nil
	case "off":
		return memoryLimit{}, nil
	}
	n, err := api.ParseSize(s)
	if err != nil {
		return memoryLimit{}, fmt.Errorf("memory limit %q: want auto, off or a size like 256M: %w", s, err)
	}
	if n < 16<<20 || n > math.MaxInt64 {
		return memoryLimit{}, fmt.Errorf("memory limit %q: below 16M the collector would run without pause", s)
	}
	return memoryLimit{bytes: int64(n)}, nil
}

// autoMemoryLimit is the auto limit for a pool holding usedBlocks blocks.
func autoMemoryLimit(usedBlocks uint64) int64 {
	return autoMemoryBase + int64(min(usedBlocks, math.MaxInt64/(2*autoMemoryPerBlock)))*autoMemoryPerBlock
}

// applyMemoryLimit sets Go's soft memory limit and, for auto, keeps it in
// step with the pool until ctx ends. GOMEMLIMIT in the environment wins:
// the runtime has already applied it.
func applyMemoryLimit(ctx context.Context, limit memoryLimit, pool *rowengine.Pool, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		log.Info("memory limit from GOMEMLIMIT", "value", os.Getenv("GOMEMLIMIT"))
		return
	}
	if !limit.auto {
		if limit.bytes > 0 {
			debug.SetMemoryLimit(limit.bytes)
		}
		return
	}
	set := func() {
		info := pool.Info()
		debug.SetMemoryLimit(autoMemoryLimit(info.UsedBytes / info.BlockSize))
	}
	set()
	go func() {
		tick := time.NewTicker(memoryLimitRefresh)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				set()
			}
		}
	}()
}
