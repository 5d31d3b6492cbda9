package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The shipped unit passes systemd-analyze verify with ExecStart pointing at
// the built daemon, and the daemon it starts, with the shipped config
// (pool, mount and socket set for the test), reports READY=1 and then
// pings the watchdog that WatchdogSec= turns on.
func TestSystemdUnitAndWatchdog(t *testing.T) {
	requireE2E(t, "systemd-analyze")
	e := newEnv(t)
	dir := t.TempDir()

	shipped, err := os.ReadFile("../../contrib/rowfsd.toml")
	if err != nil {
		t.Fatal(err)
	}
	config := string(shipped)
	for key, value := range map[string]string{"pool": e.pool, "mount": e.mnt, "socket": e.sock} {
		line := regexp.MustCompile(`(?m)^#? ?` + key + ` = .*$`)
		if !line.MatchString(config) {
			t.Fatalf("contrib/rowfsd.toml has no %s line", key)
		}
		config = line.ReplaceAllString(config, key+` = "`+value+`"`)
	}
	configPath := filepath.Join(dir, "rowfsd.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}

	unit, err := os.ReadFile("../../contrib/rowfsd.service")
	if err != nil {
		t.Fatal(err)
	}
	execStart := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/rowfsd (.*)$`)
	m := execStart.FindStringSubmatch(string(unit))
	if m == nil {
		t.Fatal("contrib/rowfsd.service: no ExecStart=/usr/local/bin/rowfsd line")
	}
	args := strings.Fields(strings.ReplaceAll(m[1], "/etc/rowfs/rowfsd.toml", configPath))
	rewritten := execStart.ReplaceAllString(string(unit), "ExecStart="+filepath.Join(binDir, "rowfsd")+" "+strings.Join(args, " "))
	unitPath := filepath.Join(dir, "rowfsd.service")
	if err := os.WriteFile(unitPath, []byte(rewritten), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", unitPath).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	watchdog := regexp.MustCompile(`(?m)^WatchdogSec=(\S+)$`).FindStringSubmatch(string(unit))
	if watchdog == nil || !strings.Contains(string(unit), "Type=notify") {
		t.Fatal("contrib/rowfsd.service: want Type=notify and WatchdogSec=")
	}
	// systemd sets WATCHDOG_USEC from WatchdogSec; a short one here so the
	// test sees pings without waiting 15 s.
	d := e.startWith([]string{"WATCHDOG_USEC=400000"}, args...)
	for i := 0; i < 2; i++ {
		select {
		case msg := <-d.notices:
			if msg != "WATCHDOG=1" {
				t.Fatalf("notice %d: %q, want WATCHDOG=1", i, msg)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no WATCHDOG=1 within 30 s (WatchdogSec=%s in the unit)\n%s", watchdog[1], d.log)
		}
	}
	mustRowctl(t, e.sock, "volume", "create", "vm1", "--size", "1M")
	if _, err := os.Stat(filepath.Join(e.mnt, "vm1")); err != nil {
		t.Fatal(err)
	}
}
