package ctl

import (
	"errors"
	"fmt"
	"testing"

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
