package fs

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"
)

// One line per volume, operation and errno per interval, with the count
// of failures it did not log; distinct kinds are each logged.
func TestGuestErrorLogRateLimits(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	g := newGuestErrorLog(slog.New(slog.NewTextHandler(&out, nil)), func() time.Time { return now })
	lines := func() []string {
		s := strings.TrimSpace(out.String())
		out.Reset()
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	full := errors.New("pool full")
	if got := g.failed("vm1", "write", syscall.ENOSPC, full); got != syscall.ENOSPC {
		t.Fatalf("failed returned %v", got)
	}
	l := lines()
	if len(l) != 1 || !strings.Contains(l[0], "volume=vm1") || !strings.Contains(l[0], "errno=ENOSPC") ||
		!strings.Contains(l[0], "the pool is full") || !strings.Contains(l[0], `err="pool full"`) {
		t.Fatalf("first failure: %q", l)
	}
	for range 1000 {
		g.failed("vm1", "write", syscall.ENOSPC, full)
	}
	if l := lines(); len(l) != 0 {
		t.Fatalf("repeats within the interval logged: %d lines", len(l))
	}
	// Other kinds are their own lines.
	g.failed("vm2", "write", syscall.ENOSPC, full)
	g.failed("vm1", "read", syscall.EIO, nil)
	g.failed("vm1", "write", syscall.EIO, nil)
	if l := lines(); len(l) != 3 {
		t.Fatalf("distinct kinds: %q", l)
	}
	now = now.Add(guestErrorInterval)
	g.failed("vm1", "write", syscall.ENOSPC, full)
	if l := lines(); len(l) != 1 || !strings.Contains(l[0], "not_logged_since_last=1000") {
		t.Fatalf("after the interval: %q", l)
	}
	if g.failed("vm1", "read", 0, nil) != 0 || len(lines()) != 0 {
		t.Fatal("success logged")
	}
}
