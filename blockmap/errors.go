package blockmap

import "errors"

var (
	// ErrNotFound: the record asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: a stored key or value does not decode; the message names it.
	ErrCorrupt = errors.New("corrupt metadata")
	// ErrLocked: another process holds the Badger directory.
	ErrLocked = errors.New("metadata directory is in use by another process")
)
