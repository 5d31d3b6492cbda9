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
