package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/rowfs/rowfs/ctl/api"
)

func TestExitCodesMapEveryAPICode(t *testing.T) {
	for _, code := range api.Codes {
		if _, ok := exitCodes[code]; !ok {
			t.Errorf("api code %q has no exit code in exitCodes (ctl/exitcodes.go)", code)
		}
	}
}

func TestExitCode(t *testing.T) {
	cases := map[error]int{
		nil:                                    ExitOK,
		fmt.Errorf("bad flag: %w", ErrUsage):   ExitUsage,
		fmt.Errorf("dial: %w", ErrUnreachable): ExitUnreachable,
		&api.Error{Code: api.CodeInvalidArgument}:               ExitUsage,
		fmt.Errorf("x: %w", &api.Error{Code: api.CodeNotFound}): ExitNotFound,
		&api.Error{Code: api.CodeBusy}:                          ExitFailed,
		&api.Error{Code: "from_a_newer_daemon"}:                 ExitFailed,
		&ExitStatus{Code: FsckCorrupt}:                          FsckCorrupt,
		errors.New("anything else"):                             ExitFailed,
	}
	for err, want := range cases {
		if got := ExitCode(err); got != want {
			t.Errorf("ExitCode(%v) = %d, want %d", err, got, want)
		}
	}
}

func TestErrorCode(t *testing.T) {
	cases := map[error]string{
		fmt.Errorf("bad flag: %w", ErrUsage):                    CodeUsage,
		fmt.Errorf("dial: %w", ErrUnreachable):                  CodeUnreachable,
		fmt.Errorf("x: %w", &api.Error{Code: api.CodeNotFound}): api.CodeNotFound,
		&api.Error{Code: "from_a_newer_daemon"}:                 "from_a_newer_daemon",
		&api.Error{Message: "no code"}:                          CodeFailed,
		&ExitStatus{Code: FsckCorrupt, Msg: "x"}:                CodeFailed,
		errors.New("anything else"):                             CodeFailed,
	}
	for err, want := range cases {
		if got := ErrorCode(err); got != want {
			t.Errorf("ErrorCode(%v) = %q, want %q", err, got, want)
		}
	}
}

// With --json, an error is one JSON object on stderr with the documented
// code, and the exit code is the same as without --json.
func TestMainJSONErrors(t *testing.T) {
	noDaemon := filepath.Join(t.TempDir(), "none.sock")
	for _, c := range []struct {
		argv []string
		code string
		exit int
	}{
		{[]string{"volume", "list"}, CodeUnreachable, ExitUnreachable},
		{[]string{"volume", "create"}, CodeUsage, ExitUsage},
		{[]string{"no-such-command"}, CodeUsage, ExitUsage},
		{[]string{"volume", "list", "--no-such-flag"}, CodeUsage, ExitUsage},
	} {
		argv := append([]string{"--socket", noDaemon}, c.argv...)
		var plainOut, plainErr bytes.Buffer
		plainExit := Main(argv, &plainOut, &plainErr)
		var stdout, stderr bytes.Buffer
		exit := Main(append(argv, "--json"), &stdout, &stderr)
		var got api.Error
		if err := json.Unmarshal(stderr.Bytes(), &got); err != nil {
			t.Errorf("%v --json: stderr is not JSON (%v): %q", c.argv, err, stderr.String())
			continue
		}
		if got.Code != c.code || got.Message == "" || exit != c.exit || plainExit != exit {
			t.Errorf("%v --json: %+v exit %d (plain exit %d), want code %q exit %d", c.argv, got, exit, plainExit, c.code, c.exit)
		}
		if !strings.HasPrefix(plainErr.String(), "rowctl: ") {
			t.Errorf("%v: plain error %q", c.argv, plainErr.String())
		}
	}
}

// TestEveryCommandJSONErrors: every rowctl command, with no daemon and
// with too few or made-up arguments, either succeeds (version, completion)
// or prints one JSON error object on stderr whose code agrees with the
// exit status.
func TestEveryCommandJSONErrors(t *testing.T) {
	noDaemon := filepath.Join(t.TempDir(), "none.sock")
	want := map[string]int{CodeUsage: ExitUsage, CodeUnreachable: ExitUnreachable, CodeFailed: ExitFailed}
	var leaves [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if len(c.Commands()) == 0 {
			leaves = append(leaves, path)
		}
		for _, sub := range c.Commands() {
			if !sub.Hidden && sub.Name() != "help" {
				walk(sub, append(slices.Clone(path), sub.Name()))
			}
		}
	}
	walk(NewRootCommand(io.Discard), nil)
	if len(leaves) < 40 {
		t.Fatalf("only %d commands found", len(leaves))
	}
	for _, path := range leaves {
		for _, extra := range [][]string{nil, {"vm1@s1", "x"}} {
			argv := append(append([]string{"--socket", noDaemon}, path...), extra...)
			var stdout, stderr bytes.Buffer
			exit := Main(append(argv, "--json", "--yes"), &stdout, &stderr)
			if exit == ExitOK {
				continue
			}
			var got api.Error
			if err := json.Unmarshal(stderr.Bytes(), &got); err != nil {
				t.Errorf("%v --json: exit %d, stderr is not one JSON object (%v): %q", argv[2:], exit, err, stderr.String())
				continue
			}
			if code, ok := want[got.Code]; !ok || code != exit || got.Message == "" {
				t.Errorf("%v --json: %+v with exit %d", argv[2:], got, exit)
			}
		}
	}
}
