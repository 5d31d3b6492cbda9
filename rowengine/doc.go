// Package rowengine is the redirect-on-write engine: a pool (a data file of
// fixed-size blocks plus the metadata in blockmap), its volumes, and the
// read/write path.
//
// # Data model
//
// A volume has a head node; every node has an optional parent and its own
// block map (virtual block → physical block). A node's map holds only what
// was written while it was the head. Each node also has an in-memory
// table resolving every virtual block to (physical block, owning node):
// its own entries over its parent's table, sharing the parent's pages until
// it writes to them. Reads and writes consult only the table, so their cost
// does not grow with the number of ancestors; Badger is the durable truth,
// read once at Open. Heads keep tables; frozen nodes keep only their own
// entries (frozen.go, ownmap.go) unless something reads them whole.
//
// A block may be partly written (sectors.go): its entry's mask says which
// sectors it holds; the others read from its base, the parent's view
// there, which is always a whole block or zeros (one lookup, at most two
// preads). Whatever changes a parent's view fills the child's partly
// written blocks from it first.
//
// # Snapshot tree
//
// A snapshot freezes the head (it keeps its id and map) and starts a new
// empty head under it: one copy of the page-pointer array, whatever the
// volume's size. Rollback starts a new head under the snapshot and frees
// the old head's blocks. Clone starts a head of a new volume under a
// snapshot of another. Delete marks the node hidden (durable), then a job
// merges it: a leaf is removed; with one child, its entries move to the
// child where the child still sees them (ownership transfer, no data
// copied) and are freed where it does not; with several children it stays
// hidden until they go. Flatten copies into a clone's oldest node what it
// reads from its origin, then cuts the tie. Tables stay resolved through
// all of this: rewriteSubtree updates a node and every descendant that
// inherits the entry, sharing pages where they shared them. Jobs are
// persisted (blockmap JobRecord) and idempotent, so Open resumes them.
//
// # Write path
//
// A write to a block the head owns goes in place. Otherwise it is
// redirected: a free block is allocated, written whole (the new bytes
// merged with the old content or zeros), and only then mapped. Map changes
// are queued and committed in batches: at a guest fsync (Sync), every
// CommitInterval, or when CommitBatch changes are pending. A guest fsync
// syncs the data its volume overwrote and the blocks the batch maps, not
// the other volumes' overwrites (flush.go). An O_DSYNC write
// (Handle.WriteAtSync) must make only itself durable: into blocks the head
// owns by durable entries it is one RWF_DSYNC pwrite and no commit.
//
// # Durability and crash safety (DESIGN invariants 1, 3, 4, 5)
//
//   - Commit order: fdatasync the data file, write the batch to Badger,
//     Badger Sync. A durable map entry therefore never points at data that
//     was not written. The background committer syncs only the blocks its
//     batch maps (datasync.go, on ext4 and XFS), a guest fsync those and
//     its volume's overwrites (flush.go); admin operations sync the whole
//     file, and a barrier counts only such commits. Changes that must land together (an ownership move in a
//     merge) are one group (MapChange.WithNext), never split.
//   - The allocator is not persisted: Open marks every mapped block used
//     and everything else free, so no crash can leak or double-allocate.
//   - A freed block is quarantined until the commit that unmaps it is
//     durable, then punched out of the data file, then released (reuse).
//     Reusing it sooner would let a crash resurrect the old mapping over
//     another volume's data (invariant 4); punching later could hit a
//     block already reused.
//   - Open removes what a crash left: map entries of deleted nodes, data
//     blocks no map points at (punched), and starts a job for deleted
//     nodes left unmerged. Open refuses metadata that contradicts itself
//     (a block mapped twice, a missing parent or head) and names fsck.
//   - Crash points (crash.go) mark the places between durable steps where
//     tests kill the process (Options.CrashHook); see docs/durability.md.
//
// # Space
//
// Options.Capacity caps the data file; hostSpace keeps data out of the
// host filesystem's last MetadataReserve bytes. Both give ErrNoSpace.
//
// # Checking
//
// Check and CheckAndRepair verify a live pool (durable metadata, and
// memory against it); Fsck checks and repairs a closed pool from its
// metadata alone, so it works on pools Open refuses. Both report leaks
// (space only) apart from corruptions, as qemu-img check does.
//   - Counters (blocks owned per node, and the sectors of its partly
//     written ones that hold nothing) live in memory, are updated with
//     every map change and rebuilt by Open's scan; the checker compares
//     them with a recount.
//
// # Concurrency
//
// Pool and Handle methods are safe for concurrent use. Lock order:
// adminMu (volume/node changes) → commitMu (commits) → stripes[block]
// (one virtual block's writers) → inUse (guest I/O in flight) → mapMu
// (tables, counters, queues) → flushMu (the volumes with a flush waiting)
// → a volume's dirty.mu (what its head overwrote since its last flush,
// flush.go; writers take it alone).
// No path takes commitMu while holding a
// stripe, so the checker may take all stripes (quiescing redirects and
// unmaps) before commitMu.
// Guest reads and writes resolve their blocks under mapMu shared and do
// their pread or pwrite after letting it go, holding inUse shared: a
// redirect or a widened mask takes mapMu exclusively, and would otherwise
// wait for all the I/O in flight. What could go wrong meanwhile waits for
// inUse instead (inuse.go): blocks a commit or a purge frees are reused,
// and a new snapshot is made durable, only after the I/O that may still
// hold them; so waitInUse is never called holding mapMu. Other code that
// reads the data file (merges, flatten, the checker) holds mapMu shared
// across the pread. Mutations of tables happen only under mapMu held
// exclusively, never under the shared lock. The
// background committer is owned by the Pool; Close stops and waits for it.
//
// A function whose name ends in Locked needs mapMu held (its comment says
// whether shared is enough); one that needs another mutex says so in a
// "REQUIRES: adminMu" (commitMu, an rbdVolume's mu …) line instead.
// The RBD kind's rbdVolume.mu and cephMu come after adminMu and are never
// taken with mapMu held; MemoryRBD has its own mutex, taken last.
//
// # Kinds of volume
//
// A volume is local (redirect-on-write over the pool's block maps) or a
// Ceph RBD image. Each kind implements volumeKind and handleIO (kind.go):
// the public Pool methods look the kind up once (kindOf) and call it, and
// a Handle holds the kind's own handle, so adding an operation without
// implementing it for both kinds does not compile. Local: volume.go,
// snapshot.go, handle.go, tree.go. RBD: rbdvolume.go (records, lifecycle,
// capacity), rbdhandle.go (I/O), rbdsnapshot.go (snapshots, clones,
// diff), rbdkind.go (the adapter). MemoryRBD (memrbd.go) is an RBD cluster
// in memory, so the RBD kind runs in every go test.
//
// # Policies and groups
//
// policy.go keeps snapshot policies and runs one (a snapshot of each
// volume or group, then pruning of the policy's own); when to run is the
// daemon's scheduler's. group.go keeps snapshot groups: a group snapshot
// is one cut over every member head (cutSnapshots: one transaction, one
// switch under mapMu), and its points are valid for a group rollback
// while their members are exactly the group's.
//
// # RBD volumes
//
// A volume may instead be a Ceph RBD image: the pool keeps
// only its record (blockmap RBDVolumeRecord: name, Ceph pool, image), and
// every read, write, snapshot, rollback, clone and flatten goes to librbd
// through the RBDCluster and RBDImage interfaces, which rowengine/rbd
// implements and the daemon hands in (Options.RBD). Names share one
// namespace with local volumes, and the same rules apply: chain limit
// (Options.RBDMaxSnapshots, default 32) with auto-rotation, rollback
// refused while the file is open or another client holds the image's
// exclusive lock. RBD snapshots are independent: none is another's parent,
// and deleting one changes no other. Open never contacts Ceph, so local
// volumes are served when the cluster is down; RBD volumes then give
// ErrUnavailable. One shared image per volume serves every open handle and
// is closed with the last, releasing the exclusive lock; rbdVolume.mu
// guards it and the open counts, under adminMu and never with mapMu held.
//
// # Errors
//
// Every error wraps one of the sentinels in errors.go (ErrNotFound,
// ErrExists, ErrInvalidArgument, ErrBusy, ErrNoSpace, ErrReadOnly,
// ErrClosed, ErrIO, ErrCorrupt, ErrChainLimit, ErrJobFailed, ErrPoolLocked,
// ErrUnavailable) with a message for the operator. Callers match with
// errors.Is; errno and HTTP status are chosen by fs and daemon, each in one
// table that must list every entry of Sentinels (their tests check it).
package rowengine
