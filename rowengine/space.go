package rowengine

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// hostSpace keeps data blocks out of the host filesystem's last
// MetadataReserve bytes. Badger writes through mmap, where a full
// filesystem is a SIGBUS rather than an error, and the deletes that free
// space need metadata room themselves: so data must stop first.
type hostSpace struct {
	dir     string
	reserve uint64
	mu      sync.Mutex
	// free estimates the host's free bytes: measured by statfs, then
	// lowered by each block handed out until the next measurement.
	free     atomic.Int64
	measured atomic.Int64 // unix nanoseconds of the last statfs
}

// hostSpaceSlack: above reserve plus this, blocks are handed out on the
// estimate alone; closer to the reserve every block measures again.
const hostSpaceSlack = 256 << 20

// available is what data may still take of the host filesystem: what it
// has free for unprivileged users (Bavail, the figure writes are held to)
// less the reserve. Info, statfs of the mount and take agree on it.
func (h *hostSpace) available() uint64 {
	free, err := h.measure()
	if err != nil || free < int64(h.reserve) {
		return 0
	}
	return uint64(free) - h.reserve
}

func (h *hostSpace) measure() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(h.dir, &st); err != nil {
		return 0, err
	}
	free := int64(st.Bavail) * st.Bsize
	h.free.Store(free)
	h.measured.Store(time.Now().UnixNano())
	return free, nil
}

// take accounts for one new data block of size bytes, or reports ErrNoSpace
// if it would eat into the reserve.
func (h *hostSpace) take(size uint64) error {
	est := h.free.Add(-int64(size))
	stale := time.Now().UnixNano()-h.measured.Load() > int64(time.Second)
	if est > int64(h.reserve+hostSpaceSlack) && !stale {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	free, err := h.measure()
	if err != nil {
		return nil // cannot tell: let the write itself find out
	}
	if free < int64(h.reserve+size) {
		return fmt.Errorf("%w: host filesystem of %s has %d MiB free and the last %d MiB are kept for metadata: delete snapshots or volumes to free space",
			ErrNoSpace, h.dir, free>>20, h.reserve>>20)
	}
	h.free.Store(free - int64(size))
	return nil
}
