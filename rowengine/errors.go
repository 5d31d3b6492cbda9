package rowengine

import (
	"errors"

	"github.com/rowfs/rowfs/blockmap"
)

// Sentinel errors. Every error the engine returns wraps one of these (or a
// blockmap error) with %w and a message meant for the operator.
var (
	// ErrNotFound: no such volume (or the volume was deleted under an open handle).
	ErrNotFound = errors.New("not found")
	// ErrExists: a volume of that name exists.
	ErrExists = errors.New("already exists")
	// ErrInvalidArgument: a bad name, size or range; the message states the rule.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrBusy: the volume is open and the operation needs it closed.
	ErrBusy = errors.New("busy")
	// ErrNoSpace: the pool's capacity or the host filesystem is full.
	ErrNoSpace = errors.New("no space left in pool")
	// ErrReadOnly: a write to a read-only handle.
	ErrReadOnly = errors.New("read-only")
	// ErrClosed: the pool is closed.
	ErrClosed = errors.New("pool is closed")
	// ErrIO: the pool data file returned an I/O error for this request.
	ErrIO = errors.New("I/O error")
	// ErrCorrupt: metadata contradicts itself; see the checker's report.
	ErrCorrupt = blockmap.ErrCorrupt
	// ErrChainLimit: a snapshot would exceed the volume's chain limit.
	ErrChainLimit = errors.New("snapshot chain limit reached")
	// ErrJobFailed: a background job ended with an error (in its message).
	ErrJobFailed = errors.New("job failed")
	// ErrPoolLocked: another process has the pool open.
	ErrPoolLocked = errors.New("pool is in use")
	// ErrUnavailable: the Ceph cluster cannot be reached, or the RBD
	// backend is not built into this binary; the message says which.
	ErrUnavailable = errors.New("unavailable")
)

// Sentinels names every sentinel above. The maps that turn them into an
// errno (fs), an HTTP status (daemon) and so an exit code (ctl) are tested
// to map each on purpose, and a test checks this list against the
// declarations, so a new sentinel without a mapping fails a test.
var Sentinels = map[string]error{
	"ErrNotFound": ErrNotFound, "ErrExists": ErrExists, "ErrInvalidArgument": ErrInvalidArgument,
	"ErrBusy": ErrBusy, "ErrNoSpace": ErrNoSpace, "ErrReadOnly": ErrReadOnly, "ErrClosed": ErrClosed,
	"ErrIO": ErrIO, "ErrCorrupt": ErrCorrupt, "ErrChainLimit": ErrChainLimit, "ErrJobFailed": ErrJobFailed,
	"ErrPoolLocked": ErrPoolLocked, "ErrUnavailable": ErrUnavailable,
}
