package fs

import (
	"log/slog"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// guestErrorInterval is how often one kind of failure of one volume is
// logged: a guest retrying a failed write thousands of times a second
// gets one line a minute, with the count of those not logged.
const guestErrorInterval = time.Minute

// guestErrorKeys bounds the table of kinds seen; past it, it starts over.
const guestErrorKeys = 4096

// guestErrorLog logs refused and failed guest requests (a write refused
// with ENOSPC, a read failed with EIO …): the guest sees only an errno,
// so the operator needs a line saying which volume and why. Safe for
// concurrent use.
type guestErrorLog struct {
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	seen map[guestErrorKey]*guestErrorCount
}

type guestErrorKey struct {
	volume, op string
	errno      syscall.Errno
}

type guestErrorCount struct {
	logged     time.Time // when this kind was last logged
	suppressed int       // failures since, not logged
}

func newGuestErrorLog(log *slog.Logger, now func() time.Time) *guestErrorLog {
	return &guestErrorLog{log: log, now: now, seen: map[guestErrorKey]*guestErrorCount{}}
}

// failed records that op on volume answered errno (err, if known, says
// why) and logs it unless the same kind was logged less than
// guestErrorInterval ago. It returns errno, so a handler can end with it.
func (g *guestErrorLog) failed(volume, op string, errno syscall.Errno, err error) syscall.Errno {
	if errno == 0 {
		return 0
	}
	key := guestErrorKey{volume, op, errno}
	now := g.now()
	g.mu.Lock()
	c := g.seen[key]
	if c == nil {
		if len(g.seen) >= guestErrorKeys {
			clear(g.seen)
		}
		c = &guestErrorCount{}
		g.seen[key] = c
	} else if now.Sub(c.logged) < guestErrorInterval {
		c.suppressed++
		g.mu.Unlock()
		return errno
	}
	suppressed := c.suppressed
	c.logged, c.suppressed = now, 0
	g.mu.Unlock()

	attrs := []any{"volume", volume, "op", op, "errno", errnoName(errno)}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	if suppressed > 0 {
		attrs = append(attrs, "not_logged_since_last", suppressed)
	}
	g.log.Warn("guest request refused: "+errnoMeaning(errno), attrs...)
	return errno
}

// errnoName is the errno's C name (ENOSPC), for grepping logs.
func errnoName(errno syscall.Errno) string {
	if name := unix.ErrnoName(errno); name != "" {
		return name
	}
	return errno.Error()
}

// errnoMeaning is what an operator reads first.
func errnoMeaning(errno syscall.Errno) string {
	switch errno {
	case syscall.ENOSPC:
		return "the pool is full (free space with snapshot deletes, or raise capacity)"
	case syscall.EIO:
		return "I/O error (see the error; the pool's data file or the Ceph cluster failed)"
	}
	return errno.Error()
}
