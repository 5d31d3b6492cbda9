package backup

import "errors"

var (
	// ErrNotFound: no such point (or chunk).
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: stored data does not match its id or checksum.
	ErrCorrupt = errors.New("corrupt backup data")
	// ErrKey: an encrypted target read without its key, or with another.
	ErrKey = errors.New("backup key")
	// ErrTarget: the target failed, or did not answer within its deadline.
	ErrTarget = errors.New("backup target")
	// ErrInvalid: bad input (a URL, a point of another volume …).
	ErrInvalid = errors.New("invalid argument")
)
