package ctl

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// Every command whose first argument names something the daemon knows
// completes it; commands that take a new name do not.
func TestCompletionCoversNamedArguments(t *testing.T) {
	root := NewRootCommand(&bytes.Buffer{})
	completes := map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		completes[c.CommandPath()] = c.ValidArgsFunction != nil
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, path := range []string{
		"rowctl volume info", "rowctl volume delete", "rowctl volume resize", "rowctl volume reset",
		"rowctl snapshot rollback", "rowctl snapshot delete", "rowctl snapshot list", "rowctl snapshot diff",
		"rowctl group info", "rowctl group snapshot", "rowctl group rollback", "rowctl group delete",
		"rowctl policy info", "rowctl policy run", "rowctl policy delete", "rowctl job wait",
		"rowctl du", "rowctl volume clone", "rowctl volume flatten",
	} {
		if v, ok := completes[path]; !ok || !v {
			t.Errorf("%s: no name completion (present %v)", path, ok)
		}
	}
	for _, path := range []string{"rowctl volume create", "rowctl group create", "rowctl policy create", "rowctl volume attach"} {
		if completes[path] {
			t.Errorf("%s completes existing names for a new one", path)
		}
	}
}

// With no daemon, or one that never answers, completion prints no names
// and returns within its timeout.
func TestCompletionWithoutDaemonIsQuickAndSilent(t *testing.T) {
	stuck := filepath.Join(t.TempDir(), "stuck.sock")
	ln, err := net.Listen("unix", stuck)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // held open, never answered
		}
	}()
	for _, sock := range []string{filepath.Join(t.TempDir(), "none.sock"), stuck} {
		var out, errOut bytes.Buffer
		start := time.Now()
		code := Main([]string{"__complete", "--socket", sock, "snapshot", "rollback", "vm1@"}, &out, &errOut)
		took := time.Since(start)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if code != 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], ":") {
			t.Errorf("%s: exit %d, completions %q", sock, code, out.String())
		}
		// The bound is the timeout (0.5 s) with room for a loaded machine.
		if took > 5*time.Second {
			t.Errorf("%s: completion took %v", sock, took)
		}
	}
}
