// Package daemon wires a rowfsd process together: configuration, the pool,
// the FUSE mount, the control API server on a Unix socket, readiness
// notification and graceful shutdown.
//
// # Lifecycle
//
// Run validates the configuration, inspects the mount point (mountpoint.go:
// anything but an unused directory or a provably dead rowfs mount is
// refused before the pool is touched), opens the pool (its lock file
// refuses a second daemon), clears a dead mount left by a killed daemon,
// mounts with the pool named as the mount's source, listens on the control
// socket, notifies readiness (sd_notify READY=1 when NOTIFY_SOCKET is set,
// which the tests use too) and serves until its context is cancelled. Then
// it stops the control server, unmounts (lazily if files are still open)
// and closes the pool, which commits all metadata.
//
// # Control socket
//
// The socket is created 0660, owned by SocketGroup when one is set. Every
// connection's peer is checked with SO_PEERCRED (peer.go): root, the
// daemon's own user, members of the socket group, and AllowedUIDs and
// AllowedGIDs may use it; anyone else gets 403, whatever the file's mode.
// Bodies are limited to 1 MiB and decoded strictly; unclean paths and
// malformed bodies get 400 with a message.
//
// # Snapshot policies and groups
//
// The scheduler (scheduler.go, schedule.go) runs the pool's policies when
// due, on an injectable clock, and records each run's last handled due
// time in the pool, so downtime costs one catch-up run and an overrun
// skips what it overran. Group snapshots run the group's freeze and thaw
// commands around the engine's one-instant cut (freeze.go), bounded in
// time; only root may set those commands, as they run as the daemon.
//
// # Memory
//
// The collector runs at GOGC 50 unless GOGC is set, a soft limit only if
// memory_limit asks for one, and a trimmer (memory.go) returns the heap's
// free pages to the OS after a burst instead of leaving them to Go's slow
// scavenger.
//
// # Crash switch (tests only)
//
// ROWFSD_CRASH_AT=POINT:N makes the daemon SIGKILL itself at the Nth hit
// of an engine crash point; it logs a warning when armed.
//
// # Concurrency
//
// Each control request runs in its own goroutine; the engine serialises
// conflicting operations. Run owns every goroutine it starts and waits for
// them before returning.
//
// # Errors
//
// httpStatus (server.go) is the one place an engine error becomes an HTTP
// status and a stable api error code.
package daemon
