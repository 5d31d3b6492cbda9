package ctl

import (
	"errors"

	"github.com/rowfs/rowfs/ctl/api"
)

// Exit codes of rowctl (docs/cli.md).
const (
	ExitOK          = 0
	ExitFailed      = 1  // the daemon refused or failed the request
	ExitUsage       = 2  // bad command line or invalid argument
	ExitNotFound    = 3  // no such volume
	ExitUnreachable = 69 // no daemon answers on the socket (EX_UNAVAILABLE)
)

// exitCodes is the exit status of every error code the daemon answers
// with (docs/cli.md); TestExitCodesMapEveryAPICode checks none is missing.
var exitCodes = map[string]int{
	api.CodeInvalidArgument: ExitUsage,
	api.CodeNotFound:        ExitNotFound,
	api.CodeExists:          ExitFailed,
	api.CodeBusy:            ExitFailed,
	api.CodeNoSpace:         ExitFailed,
	api.CodeReadOnly:        ExitFailed,
	api.CodeInternal:        ExitFailed,
	api.CodeUnavailable:     ExitFailed,
	api.CodeChainLimit:      ExitFailed,
	api.CodeJobFailed:       ExitFailed,
	api.CodeForbidden:       ExitFailed,
	api.CodeCorrupt:         ExitFailed,
	api.CodeIO:              ExitFailed,
	api.CodeTarget:          ExitFailed,
	api.CodeKey:             ExitFailed,
}

// Error codes rowctl itself gives, with --json, to errors that did not come
// from the daemon (docs/cli.md); the daemon's are api.Code*.
const (
	CodeUsage       = "usage"       // bad command line (exit 2)
	CodeUnreachable = "unreachable" // no daemon answers (exit 69)
	CodeFailed      = "failed"      // anything else (exit 1, or fsck's own)
)

// ErrorCode is the code --json prints for err: the daemon's own code when it
// answered with one, else one of rowctl's. It agrees with ExitCode.
func ErrorCode(err error) string {
	var apiErr *api.Error
	var status *ExitStatus
	switch {
	case errors.As(err, &status):
		return CodeFailed
	case errors.Is(err, ErrUsage):
		return CodeUsage
	case errors.Is(err, ErrUnreachable):
		return CodeUnreachable
	case errors.As(err, &apiErr) && apiErr.Code != "":
		return apiErr.Code
	default:
		return CodeFailed
	}
}

// ExitCode is the one place an error becomes rowctl's exit status.
func ExitCode(err error) int {
	var apiErr *api.Error
	var status *ExitStatus
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &status):
		return status.Code
	case errors.Is(err, ErrUsage):
		return ExitUsage
	case errors.Is(err, ErrUnreachable):
		return ExitUnreachable
	case errors.As(err, &apiErr):
		if code, ok := exitCodes[apiErr.Code]; ok {
			return code
		}
		return ExitFailed // a code from a newer daemon
	default:
		return ExitFailed
	}
}
