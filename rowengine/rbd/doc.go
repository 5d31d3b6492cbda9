// Package rbd is the Ceph RBD backend of rowengine: it implements
// rowengine.RBDCluster and rowengine.RBDImage over go-ceph (librados and
// librbd). rowengine keeps which images are volumes and applies rowfs's
// rules; this package only translates.
//
// Building: the backend needs cgo and Ceph's headers (librbd-dev,
// librados-dev) and is compiled only with the build tags "ceph pacific",
// which the Makefile passes. Without them New returns a Cluster whose every
// call reports rowengine.ErrUnavailable ("not built in"), so a plain
// `go build ./...` works on any machine.
//
// Concurrency: a Cluster connects once, on first use, and is safe for
// concurrent use; a failed connection is retried on the next call. An Image
// is safe for concurrent reads and writes, as librbd's image handles are.
//
// Errors wrap rowengine's sentinels: ErrNotFound (no such pool, image or
// snapshot), ErrExists, ErrBusy (a lock, clones, or an image in use),
// ErrUnavailable (Ceph unreachable or the backend not built in), ErrIO for
// the rest, each with librbd's message.
package rbd

import (
	"log/slog"
	"time"
)

// Options name the cluster. Zero values take the documented defaults.
type Options struct {
	// Conf is the ceph.conf path. Default: librados's own search
	// ($CEPH_CONF, /etc/ceph/ceph.conf).
	Conf string
	// ID is the client id, without "client.". Default "admin".
	ID string
	// Timeout bounds connecting and each monitor and OSD request, so that
	// an unreachable cluster gives an error instead of a hang. Default 30s.
	Timeout time.Duration
	// StateFile keeps the Ceph client id of the previous run. A previous
	// run is dead (the pool's lock says so), so an exclusive lock its
	// client still holds is broken at once instead of after the 30 s the
	// OSDs take to notice. Default "": such locks wait out the timeout.
	StateFile string
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills zero fields with the documented defaults.
func (o *Options) EnsureDefaults() {
	if o.ID == "" {
		o.ID = "admin"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
}
