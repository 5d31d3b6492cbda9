package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The shipped config file documents every key: uncommented, it is a
// valid config, and no Config field is missing from it.
func TestContribConfigHasEveryKey(t *testing.T) {
	shipped, err := os.ReadFile("../contrib/rowfsd.toml")
	if err != nil {
		t.Fatal(err)
	}
	// "# key = value" lines are the commented settings; prose lines have no " = ".
	setting := regexp.MustCompile(`(?m)^# ([a-z0-9_]+ = .*)$`)
	uncommented := setting.ReplaceAllString(string(shipped), "$1")
	path := filepath.Join(t.TempDir(), "rowfsd.toml")
	if err := os.WriteFile(path, []byte(uncommented), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfigFile(path); err != nil {
		t.Fatalf("contrib/rowfsd.toml, uncommented: %v", err)
	}
	present := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z0-9_]+) = `).FindAllStringSubmatch(uncommented, -1) {
		if present[m[1]] {
			t.Errorf("contrib/rowfsd.toml sets %s twice", m[1])
		}
		present[m[1]] = true
	}
	fields := reflect.TypeOf(Config{})
	for i := 0; i < fields.NumField(); i++ {
		key, _, _ := strings.Cut(fields.Field(i).Tag.Get("toml"), ",")
		if key == "" || key == "-" {
			continue
		}
		if !present[key] {
			t.Errorf("contrib/rowfsd.toml does not show %s (Config.%s)", key, fields.Field(i).Name)
		}
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"junk", "", 0},
		{"0", "", 0},
		{"30000000", "", 15 * time.Second},
		{"30000000", strconv.Itoa(os.Getpid()), 15 * time.Second},
		{"30000000", "1", 0}, // meant for another process
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		if got := watchdogInterval(); got != c.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", c.usec, c.pid, got, c.want)
		}
	}
}

// The watchdog pings on NOTIFY_SOCKET while alive says so, and stops
// pinging when it does not: systemd then restarts a wedged daemon.
func TestWatchdogPingsOnlyWhileAlive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)

	var alive atomic.Bool
	var refusals atomic.Int32 // alive() calls that said no
	alive.Store(true)
	isAlive := func() bool {
		if alive.Load() {
			return true
		}
		refusals.Add(1)
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		runWatchdog(ctx, 10*time.Millisecond, isAlive, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	defer func() { cancel(); <-done }()

	buf := make([]byte, 64)
	for i := 0; i < 3; i++ {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		if string(buf[:n]) != "WATCHDOG=1" {
			t.Fatalf("ping %d: %q", i, buf[:n])
		}
	}
	alive.Store(false)
	// After the second refusal, every ping from before the switch is sent
	// (the loop is sequential): drain them, then expect silence.
	for refusals.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	for {
		conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := conn.Read(buf); err != nil {
			break
		}
	}
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("pinged while not alive: %q", buf[:n])
	}
}

// The README's config example is a valid config as written.
func TestReadmeConfigExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```toml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no ```toml example")
	}
	path := filepath.Join(t.TempDir(), "rowfsd.toml")
	if err := os.WriteFile(path, m[1], 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfigFile(path)
	if err != nil {
		t.Fatalf("README's example: %v", err)
	}
	cfg.EnsureDefaults()
	if _, err := cfg.engineOptions(slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("README's example does not validate: %v", err)
	}
}
