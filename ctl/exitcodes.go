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
	case errors.As(err, &apiErr) && apiErr.Code == api.CodeInvalidArgument:
		return ExitUsage
	case errors.As(err, &apiErr) && apiErr.Code == api.CodeNotFound:
		return ExitNotFound
	default:
		return ExitFailed
	}
}
