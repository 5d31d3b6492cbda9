package fs

import "time"

// IOOp is the kind of a guest request a VolumeMeter counts.
type IOOp int

const (
	OpRead IOOp = iota
	OpWrite
)

// IOMeter counts guest I/O (the daemon's metrics implement it). Volume is
// asked once per open of a volume file; the VolumeMeter it returns is told
// of every read and write that succeeds on that handle, on the I/O path,
// so it must be cheap and safe for concurrent use.
type IOMeter interface {
	Volume(name string) VolumeMeter
}

// VolumeMeter counts one volume's requests.
type VolumeMeter interface {
	Observe(op IOOp, bytes int, took time.Duration)
}
