package daemon

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rowfs/rowfs/rowengine"
)

// TestFreezeHooks: the freeze runs before the cut and the thaw after it,
// also when the snapshot fails; a failing or hanging freeze (cut off at
// the bound) gives a crash-consistent point that says so, and the thaw
// still runs.
func TestFreezeHooks(t *testing.T) {
	pool := rowengine.TestPool(t, rowengine.Options{})
	for _, v := range []string{"a", "b"} {
		if _, err := pool.CreateVolume(v, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.CreateGroup("vm", []string{"a", "b"}, rowengine.GroupHooks{}); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(t.TempDir(), "calls")
	s := &server{pool: pool, log: slog.New(slog.DiscardHandler), freezeBound: 500 * time.Millisecond}
	record := func(what string) string { return "echo " + what + " >> " + calls }
	readCalls := func() string {
		b, _ := os.ReadFile(calls)
		os.Remove(calls)
		return strings.Join(strings.Fields(string(b)), " ")
	}
	cases := []struct {
		name, freeze, snap, want, consistency, note string
		fail                                        bool
	}{
		{"frozen", record("freeze"), "p1", "freeze thaw", "frozen", "", false},
		{"the snapshot fails", record("freeze"), "p1", "freeze thaw", "", "", true}, // p1 exists
		{"the freeze fails", record("freeze") + "; exit 3", "p2", "freeze thaw", "crash", "the freeze command failed to freeze", false},
		{"the freeze hangs", record("freeze") + "; sleep 30", "p3", "freeze thaw", "crash", "killed after", false},
	}
	for _, c := range cases {
		if _, err := pool.SetGroupHooks("vm", rowengine.GroupHooks{FreezeCmd: c.freeze, ThawCmd: record("thaw")}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		infos, consistency, note, err := s.groupSnapshot("vm", c.snap, rowengine.SnapshotOptions{})
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s: took %s, past the bound", c.name, took)
		}
		if got := readCalls(); got != c.want {
			t.Errorf("%s: hooks ran %q, want %q", c.name, got, c.want)
		}
		if c.fail {
			if err == nil {
				t.Errorf("%s: no error", c.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if consistency != c.consistency || !strings.Contains(note, c.note) {
			t.Errorf("%s: consistency %q, note %q; want %q and a note with %q", c.name, consistency, note, c.consistency, c.note)
		}
		for _, info := range infos {
			if got, _ := pool.Snapshot(info.Volume, info.Name); got.Consistency != c.consistency {
				t.Errorf("%s: %s@%s records %q", c.name, info.Volume, info.Name, got.Consistency)
			}
		}
	}
	if _, err := pool.SetGroupHooks("vm", rowengine.GroupHooks{FreezeCmd: "true"}); err == nil {
		t.Error("a freeze hook without a thaw hook was accepted")
	}
	if _, err := pool.SetGroupHooks("vm", rowengine.GroupHooks{QGASocket: "qga.sock"}); err == nil {
		t.Error("a relative guest agent socket was accepted")
	}

	// A guest agent that accepts and never answers (a hung guest) is cut
	// off at the bound: a crash-consistent point, and the thaw is tried.
	hung := filepath.Join(t.TempDir(), "qga.sock")
	ln, err := net.Listen("unix", hung)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // read nothing, answer nothing
		}
	}()
	if _, err := pool.SetGroupHooks("vm", rowengine.GroupHooks{QGASocket: hung}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, consistency, note, err := s.groupSnapshot("vm", "p4", rowengine.SnapshotOptions{})
	if err != nil || consistency != "crash" || !strings.Contains(note, "guest agent") || time.Since(start) > 4*time.Second {
		t.Fatalf("hung agent: %v, consistency %q, note %q after %s", err, consistency, note, time.Since(start))
	}
	if len(accepted) != 2 {
		t.Errorf("the agent saw %d connections, want the freeze's and the thaw's", len(accepted))
	}
}
