// Package blockmap owns rowfs's durable metadata: the pool record, volumes,
// snapshot-tree nodes and every node's own block map, kept in Badger. It is
// the only package that imports Badger; it knows nothing of FUSE, HTTP or of
// how the engine uses the records.
//
// # Layout
//
// The byte layout of every key and value is documented, with worked
// examples, in layout.md next to this file. Keys start with one prefix byte;
// integers are big-endian so that Badger's byte order is numeric order and a
// node's map is one contiguous range.
//
// # Durability
//
// Badger runs with SyncWrites off. Callers make a set of changes durable with
// Store.Sync, which the engine calls at a guest fsync after the pool data
// file itself is synced (see docs/durability.md for the order and why).
// Update runs one atomic Badger transaction. ApplyMapChanges is atomic per
// group of changes (MapChange.WithNext), not as a whole: Badger replays its
// log in order, so a crash keeps a prefix of an unsynced batch's groups,
// which the engine's write order makes harmless.
//
// # Memory
//
// Badger's memtables are small (Options.MemTableSize, 2 MiB), so its
// transactions are too: ApplyMapChanges splits a batch to fit, and Open
// first flushes write-ahead files written with larger memtables. Its
// table files stay mapped while they live; a Store's goroutine hands their
// pages back to the kernel every few seconds (residency.go), so resident
// memory does not grow with the map on disk.
//
// # Concurrency
//
// A Store is safe for concurrent use; Badger serialises conflicting
// transactions. Update retries on ErrConflict a bounded number of times.
// Close stops the Store's own goroutine before closing Badger.
//
// # Errors
//
// ErrCorrupt wraps any record that fails to decode; ErrNotFound is returned
// by point lookups of missing records. Badger's own errors are wrapped with
// %w and otherwise passed through.
package blockmap
