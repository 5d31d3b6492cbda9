// Package backup keeps backups of volumes outside the pool: full and
// incremental points in content-addressed chunks on a Target (a directory,
// or S3 object storage), restorable to any point, verifiable, collectable.
// The byte format is docs/backup-format.md.
//
// It owns the format (chunks, indexes, manifests), the targets, and the
// plans of what a create, a delete, a verify or a gc does; it reads and
// writes volumes only through the small interfaces Source and Sink, which
// the daemon fills from the pool, so a restore needs no pool at all
// (rowfsd backup restore --output FILE).
//
// Concurrency: a Repo is safe for concurrent use. Backups and restores of
// one target run at the same time; Collect (gc) takes the repo's lock
// exclusively, so it never removes a chunk a running backup has counted on
// (within one process: the daemon is the only writer of its targets).
//
// Errors: ErrNotFound (no such point), ErrCorrupt (a chunk or index that
// does not match its id), ErrKey (an encrypted target without its key, or
// the wrong one), ErrTarget (the target failed or timed out; the message
// says which and how), ErrInvalid (bad input), wrapped with %w.
package backup
