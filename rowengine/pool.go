package rowengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/blockmap"
)

// Pool is one open pool: its metadata store, its data file, and the
// in-memory tables every read and write resolves against.
type Pool struct {
	dir       string
	opts      Options
	blockSize uint64
	// placementGroup is how many blocks make 1 MiB (at most 64): the
	// allocator keeps a block at the same place in its group as in its
	// volume, so data written in order stays in order. 1 MiB is the
	// largest FUSE request.
	placementGroup uint64
	// sectorSize is the unit of partly written blocks; allValid is the
	// mask of all of a block's sectors (sectors.go).
	sectorSize uint64
	allValid   uint32
	log        *slog.Logger
	store      *blockmap.Store
	data       *os.File
	lock       *os.File
	alloc      *allocator
	space      *hostSpace
	created    time.Time

	// adminMu serialises operations that change volumes or nodes (create,
	// delete, resize, and later snapshots). Lock order:
	// adminMu → commitMu → stripes[i] → inUse → mapMu.
	adminMu sync.Mutex
	// commitMu serialises commits, so that a batch is durable before the
	// blocks it frees are reused and no admin operation interleaves with one.
	commitMu sync.Mutex
	// ring runs background commits' ranged data syncs (datasync.go), set
	// up on first use. REQUIRES: commitMu. ringBroken: none to be had.
	ring       *fsyncRing
	ringBroken atomic.Bool
	// dsyncRefused: the kernel refuses RWF_DSYNC, so O_DSYNC writes are
	// written and then flushed (writeDataDurable).
	dsyncRefused atomic.Bool
	// stripes serialise writes to one virtual block (partial-block merges,
	// redirects and discards of the same block), keyed by block index.
	stripes [1024]sync.Mutex

	// inUse is held shared by guest reads and writes from before they
	// resolve their blocks under mapMu until their pread or pwrite is
	// done, so that the I/O itself runs outside mapMu: a writer of mapMu
	// (every redirect, every widened mask) would otherwise wait behind all
	// the I/O in flight, and every request behind it. waitInUse, which
	// takes it exclusively and lets go at once, waits for that I/O:
	// freed blocks are reused, frozen snapshots made durable and the data
	// file closed only after it (inuse.go).
	inUse sync.RWMutex
	// ioResolved, for tests only, is called by guest I/O between resolving
	// its blocks and reading or writing them, holding inUse only.
	ioResolved func()

	// mapMu guards everything below. Code that does I/O without inUse
	// (merges, flatten, the checker) holds it shared across the I/O, so
	// a block it resolved cannot be freed and reused under it.
	mapMu      sync.RWMutex
	volumes    map[string]*volume
	rbd        map[string]*rbdVolume // RBD volumes: a name is in volumes or here
	nodes      map[uint64]*node
	pending    []blockmap.MapChange // map changes not yet committed, in order
	quarantine []uint64             // freed blocks whose unmapping is in pending
	closed     bool
	// commitsTaken counts commits that have taken the pending changes.
	commitsTaken uint64
	// changeSeq numbers the map changes queued since Open; node.lastChange
	// is the number of the newest one of each node's keys.
	changeSeq uint64
	// durableSeq is the changeSeq up to which every change is durable,
	// advanced by each commit that succeeds (it takes all pending
	// changes). A head whose lastChange is at most durableSeq has every
	// map entry durable: a write in place into it is durable as soon as
	// its data is (writeOwned's durable writes).
	durableSeq atomic.Uint64

	// wholeCommitsDone is the number (in commitsTaken's count) of the
	// last commit that succeeded and synced the whole data file: the
	// only kind a barrier may count on, since a background commit syncs
	// only the blocks it maps. REQUIRES: commitMu.
	wholeCommitsDone uint64

	// flushMu guards flushWaiting: the volumes with a guest flush waiting
	// for its commit, and how many, so that one commit takes the runs of
	// them all (flush.go). Taken alone or inside mapMu.
	flushMu      sync.Mutex
	flushWaiting map[*volume]int

	// violations are the invariants found broken (invariants build tag).
	violationsMu sync.Mutex
	violations   []string

	// nextGen numbers tables (copy-on-write generations); atomic, as
	// temporary tables are built under the shared lock.
	nextGen atomic.Uint64

	// toCompact are frozen nodes that may still have a table to drop
	// (frozen.go). REQUIRES: mapMu.
	toCompact []*node

	// settings are the pool record's; written under adminMu, read under mapMu.
	settings Settings

	// dataWritten counts bytes written to the data file since Open.
	dataWritten atomic.Uint64

	// jobs are the background jobs of this run, finished ones included.
	jobsMu sync.Mutex
	jobs   map[uint64]*job

	kick    chan struct{}
	ctx     context.Context // cancelled by Close: background work stops
	stop    context.CancelFunc
	stopped sync.WaitGroup
}

type node struct {
	rec      blockmap.NodeRecord
	parent   *node
	children []*node
	vol      *volume // nil once the volume is deleted (a hidden node kept for clones)
	// table is the resolved view (heads, and pinned frozen nodes); own is
	// a compacted frozen node's own entries (frozen.go).
	table *table
	own   *ownMap
	views int    // pins of table by open snapshot files and flattens
	edits uint64 // changes to table, so compaction sees it raced one
	owned uint64 // blocks this node owns (zero markers excluded)
	// unwritten counts the sectors of its own partly written blocks that
	// hold nothing: what it takes on disk is owned blocks less those.
	unwritten uint64
	removed   bool // detached from the tree; open snapshot handles fail
	// lastChange is the Pool.changeSeq of the newest map change queued
	// for one of this node's keys (0: none since Open).
	lastChange uint64
}

type volume struct {
	rec  blockmap.VolumeRecord
	head *node
	// nodes are the volume's nodes (n.vol == this volume), head and
	// hidden ones included: per-volume questions cost this volume's nodes,
	// not the pool's.
	nodes map[uint64]*node
	owned uint64 // blocks owned by all of the volume's nodes
	// unwritten is its nodes' unwritten sectors (node.unwritten).
	unwritten uint64
	// dirty is what the head overwrote in place since the last flush
	// (flush.go).
	dirty   dirtyRuns
	opens   int
	writers int
	deleted bool
}

// addOwned keeps the node's and its volume's counters in step: delta
// blocks, each one partly written as valid says (0: whole).
func (p *Pool) addOwned(n *node, delta int64, valid uint32) {
	if invariantsOn {
		p.checkCountersLocked(n, delta, 0)
	}
	n.owned = uint64(int64(n.owned) + delta)
	if n.vol != nil {
		n.vol.owned = uint64(int64(n.vol.owned) + delta)
	}
	p.addUnwritten(n, delta*int64(p.unwrittenSectors(valid)))
}

// revalue accounts for n's own block changing from partly written as
// before says to as after says (0: whole).
func (p *Pool) revalue(n *node, before, after uint32) {
	p.addUnwritten(n, int64(p.unwrittenSectors(after))-int64(p.unwrittenSectors(before)))
}

func (p *Pool) addUnwritten(n *node, delta int64) {
	if invariantsOn {
		p.checkCountersLocked(n, 0, delta)
	}
	n.unwritten = uint64(int64(n.unwritten) + delta)
	if n.vol != nil {
		n.vol.unwritten = uint64(int64(n.vol.unwritten) + delta)
	}
}

// unwrittenSectors is how many sectors of a block partly written as valid
// says hold nothing (0 for a whole block).
func (p *Pool) unwrittenSectors(valid uint32) uint64 {
	if valid == 0 {
		return 0
	}
	return uint64(bits.OnesCount32(p.allValid &^ valid))
}

// ownedBytes is what blocks owned and sectors unwritten take on disk.
func (p *Pool) ownedBytes(blocks, unwritten uint64) uint64 {
	return blocks*p.blockSize - unwritten*p.sectorSize
}

// Open opens the pool in dir, creating it (and dir) if it does not exist.
func Open(dir string, opts Options) (*Pool, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pool directory: %w", err)
	}
	lock, err := lockPool(dir)
	if err != nil {
		return nil, err
	}
	p := &Pool{dir: dir, opts: opts, log: opts.Logger, lock: lock,
		volumes: map[string]*volume{}, rbd: map[string]*rbdVolume{}, nodes: map[uint64]*node{}, jobs: map[uint64]*job{}, kick: make(chan struct{}, 1), flushWaiting: map[*volume]int{}}
	p.ctx, p.stop = context.WithCancel(context.Background())
	if err := p.open(); err != nil {
		p.closeFiles()
		return nil, err
	}
	p.stopped.Add(1)
	go p.committer(p.ctx)
	if len(p.rbd) > 0 && p.opts.RBD != nil {
		p.stopped.Add(1)
		go p.learnRBDSizes()
	}
	if err := p.resumeJobs(); err != nil {
		p.stop()
		p.stopped.Wait()
		p.closeFiles()
		return nil, err
	}
	return p, nil
}

// describeProcess names the process the lock file names: "process 123
// (rowfsd)", or "an unknown process" if it wrote nothing.
func describeProcess(pid string) string {
	if _, err := strconv.Atoi(pid); err != nil {
		return "an unknown process"
	}
	if comm, err := os.ReadFile("/proc/" + pid + "/comm"); err == nil {
		return fmt.Sprintf("process %s (%s)", pid, strings.TrimSpace(string(comm)))
	}
	return "process " + pid
}

func lockPool(dir string) (*os.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open pool lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("%w: pool %s is held by %s", ErrPoolLocked, dir, describeProcess(strings.TrimSpace(string(holder))))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

func (p *Pool) open() error {
	store, err := blockmap.Open(blockmap.Options{Dir: filepath.Join(p.dir, "meta"), Logger: p.log})
	if err != nil {
		if errors.Is(err, blockmap.ErrLocked) {
			return fmt.Errorf("%w: %v", ErrPoolLocked, err)
		}
		return err
	}
	p.store = store
	rec, err := store.Pool()
	switch {
	case errors.Is(err, blockmap.ErrNotFound):
		rec = blockmap.PoolRecord{FormatVersion: blockmap.CurrentFormatVersion, BlockSize: p.opts.BlockSize, Created: p.opts.Now().UTC()}
		if err := store.Update(func(tx *blockmap.Txn) error { return tx.PutPool(rec) }); err != nil {
			return fmt.Errorf("create pool record: %w", err)
		}
		if err := store.Sync(); err != nil {
			return err
		}
		p.log.Info("created pool", "dir", p.dir, "block_size", rec.BlockSize)
	case err != nil:
		return fmt.Errorf("read pool record: %w", err)
	case rec.FormatVersion > blockmap.CurrentFormatVersion:
		return fmt.Errorf("%w: pool format %d is newer than this rowfsd understands (%d)", ErrCorrupt, rec.FormatVersion, blockmap.CurrentFormatVersion)
	case rec.FormatVersion < blockmap.CurrentFormatVersion:
		// Format 2 adds partly written blocks (12-byte map values), which
		// an older rowfsd would refuse as corrupt: say so in the record
		// before writing any.
		old := rec.FormatVersion
		rec.FormatVersion = blockmap.CurrentFormatVersion
		if err := store.Update(func(tx *blockmap.Txn) error { return tx.PutPool(rec) }); err != nil {
			return fmt.Errorf("upgrade pool record: %w", err)
		}
		if err := store.Sync(); err != nil {
			return err
		}
		p.log.Info("upgraded pool format", "dir", p.dir, "from", old, "to", rec.FormatVersion)
	}
	if err := ValidateBlockSize(rec.BlockSize); err != nil {
		return fmt.Errorf("%w: pool record: %v", ErrCorrupt, err)
	}
	p.blockSize = uint64(rec.BlockSize)
	var sectors uint64
	sectors, p.sectorSize = sectorGeometry(p.blockSize)
	p.allValid = wholeMask(sectors)
	p.placementGroup = min(64, max(1, (1<<20)/p.blockSize))
	p.created = rec.Created
	p.settings = settingsFrom(rec.Settings)
	p.space = &hostSpace{dir: p.dir, reserve: p.opts.MetadataReserve}
	if _, err := p.space.measure(); err != nil {
		return fmt.Errorf("measure free space of %s: %w", p.dir, err)
	}
	p.data, err = os.OpenFile(filepath.Join(p.dir, "data"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open pool data file: %w", err)
	}
	return p.load()
}

// load rebuilds the in-memory state from the metadata: node tables, counters
// and the allocator. Node ids grow with creation and a parent always exists
// before its children, so visiting nodes and map entries in id order builds
// every parent table before the children that share its pages.
func (p *Pool) load() error {
	st, err := p.data.Stat()
	if err != nil {
		return err
	}
	fileBlocks := (uint64(st.Size()) + p.blockSize - 1) / p.blockSize
	var maxBlocks uint64
	if p.opts.Capacity > 0 {
		maxBlocks = p.opts.Capacity / p.blockSize
	}
	p.alloc = newAllocator(fileBlocks, maxBlocks)

	nodeRecs, err := p.store.Nodes()
	if err != nil {
		return err
	}
	for _, rec := range nodeRecs {
		n := &node{rec: rec}
		if rec.Parent != 0 {
			if n.parent = p.nodes[rec.Parent]; n.parent == nil {
				return fmt.Errorf("%w: node %d has missing parent %d; run rowctl fsck --pool %s", ErrCorrupt, rec.ID, rec.Parent, p.dir)
			}
			n.parent.children = append(n.parent.children, n)
		}
		p.nodes[rec.ID] = n
	}
	var orphans []blockmap.MapChange
	var twice []uint64
	err = p.store.ScanMappings(func(k blockmap.MapKey, phys uint64, valid uint32) error {
		n := p.nodes[k.Node]
		if n == nil {
			orphans = append(orphans, blockmap.MapChange{Key: k, Delete: true})
			return nil
		}
		t := p.ensureTable(n)
		var pi partialInfo
		if valid != 0 {
			// Parents come first (smaller ids): t shows the parent's view here.
			pi = partialInfo{valid: valid, base: visiblePhys(t.get(k.Index))}
		}
		t.setWith(k.Index, entry{phys: phys, owner: n.rec.ID}, pi)
		if phys != blockmap.ZeroBlock {
			n.owned++
			n.unwritten += p.unwrittenSectors(valid)
			if !p.alloc.markUsed(phys) {
				twice = append(twice, phys)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load block maps: %w", err)
	}
	if len(twice) > 0 {
		// An in-place write to one owner would change the other's data.
		return fmt.Errorf("%w: %d physical blocks are mapped twice (first: %d); run rowctl fsck --pool %s",
			ErrCorrupt, len(twice), twice[0], p.dir)
	}
	for _, id := range slices.Sorted(maps.Keys(p.nodes)) {
		p.ensureTable(p.nodes[id])
	}
	vols, err := p.store.Volumes()
	if err != nil {
		return err
	}
	for _, rec := range vols {
		head := p.nodes[rec.Head]
		if head == nil {
			return fmt.Errorf("%w: volume %q has missing head node %d; run rowctl fsck --pool %s", ErrCorrupt, rec.Name, rec.Head, p.dir)
		}
		p.volumes[rec.Name] = &volume{rec: rec, head: head, nodes: map[uint64]*node{}}
	}
	byID := map[uint64]*volume{}
	for _, v := range p.volumes {
		byID[v.rec.ID] = v
	}
	for _, n := range p.nodes {
		if n.vol = byID[n.rec.Volume]; n.vol != nil {
			n.vol.nodes[n.rec.ID] = n
			n.vol.owned += n.owned
			n.vol.unwritten += n.unwritten
		}
	}
	// Frozen nodes keep their own entries only (frozen.go); the heads'
	// tables keep the pages they share.
	for _, n := range p.nodes {
		if !isHeadLocked(n) {
			n.own = ownMapOfLocked(n)
			n.table = nil
		}
	}
	if len(orphans) > 0 {
		// A volume delete crashed between removing its nodes and their maps.
		p.log.Warn("removing map entries of deleted nodes", "entries", len(orphans))
		if err := p.store.ApplyMapChanges(orphans); err != nil {
			return err
		}
		if err := p.store.Sync(); err != nil {
			return err
		}
	}
	// Blocks written but never mapped, or unmapped but not yet punched,
	// when the last run stopped: give their space back.
	stray, err := strayBlocks(p.data, p.blockSize, p.alloc.isUsed)
	if err != nil {
		return err
	}
	if len(stray) > 0 {
		p.punchHoles(stray)
		p.log.Warn("punched stray blocks out of the data file (left by a crash)", "blocks", len(stray))
	}
	if err := p.loadRBD(); err != nil {
		return err
	}
	used, _ := p.alloc.stats()
	p.log.Info("opened pool", "dir", p.dir, "volumes", len(p.volumes), "rbd_volumes", len(p.rbd), "nodes", len(p.nodes), "used_blocks", used)
	return nil
}

func (p *Pool) ensureTable(n *node) *table {
	if n.table == nil {
		gen := p.nextGen.Add(1)
		if n.parent != nil {
			n.table = p.ensureTable(n.parent).child(gen)
		} else {
			n.table = newTable(gen)
		}
	}
	return n.table
}

// BlockSize returns the pool's block size in bytes.
func (p *Pool) BlockSize() uint64 { return p.blockSize }

// Dir returns the pool directory.
func (p *Pool) Dir() string { return p.dir }

// Close commits everything, stops background work and closes the files.
// Handles still open fail afterwards with ErrClosed.
// Background jobs stop between steps and resume at the next Open.
func (p *Pool) Close() error {
	p.stop()
	p.stopped.Wait()
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	p.mapMu.Lock()
	if p.closed {
		p.mapMu.Unlock()
		return nil
	}
	p.mapMu.Unlock()
	err := p.commit()
	p.mapMu.Lock()
	p.closed = true
	rbd := slices.Collect(maps.Values(p.rbd))
	p.mapMu.Unlock()
	p.waitInUse() // I/O that resolved its blocks before closed was set
	for _, v := range rbd {
		v.mu.Lock()
		if v.img != nil {
			err = errors.Join(err, v.img.Flush(), v.img.Close())
			v.img = nil
		}
		v.deleted = true
		v.mu.Unlock()
	}
	return errors.Join(err, p.closeFiles())
}

func (p *Pool) closeFiles() error {
	var errs []error
	if p.store != nil {
		errs = append(errs, p.store.Close())
	}
	if p.data != nil {
		errs = append(errs, p.data.Close())
	}
	if p.ring != nil {
		errs = append(errs, p.ring.close())
		p.ring = nil
	}
	if p.lock != nil {
		errs = append(errs, p.lock.Close())
	}
	return errors.Join(errs...)
}

// committer commits pending metadata every CommitInterval, or sooner when
// a writer finds the batch full, so that unsynced metadata stays bounded
// and freed blocks return to the allocator without waiting for a guest fsync.
func (p *Pool) committer(ctx context.Context) {
	defer p.stopped.Done()
	tick := time.NewTicker(p.opts.CommitInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-p.kick:
		}
		p.mapMu.RLock()
		pendingWork := len(p.pending) > 0 || len(p.quarantine) > 0
		p.mapMu.RUnlock()
		if pendingWork {
			if err := p.backgroundCommit(); err != nil {
				p.log.Error("background metadata commit failed; will retry", "err", err)
			}
		}
		p.compactFrozen()
	}
}

// Sync is the durability barrier behind a guest fsync without a handle:
// when it returns, every write acknowledged before the call survives a
// crash, on local and on RBD volumes.
func (p *Pool) Sync() error { return errors.Join(p.barrier(), p.flushRBDHeads()) }

// barrier is a group commit: it returns once a commit of the whole data
// file that started after the call has succeeded. Concurrent callers
// (O_DSYNC writers, fsyncs of several handles) queue on commitMu behind
// one commit; when their turn comes, a whole commit that took the pending
// changes after they arrived has already made their writes durable, so
// most return without one of their own, and the cost stays near one
// commit per batch. A background commit in between does not count: it
// synced only the blocks it mapped.
func (p *Pool) barrier() error {
	p.mapMu.RLock()
	arrived := p.commitsTaken
	p.mapMu.RUnlock()
	return p.barrierSince(arrived)
}

// barrierSince is barrier for a caller that arrived when commitsTaken was
// arrived.
func (p *Pool) barrierSince(arrived uint64) error {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	if p.wholeCommitsDone > arrived {
		return nil
	}
	return p.commitHoldingMu()
}

// commit makes the data file and then the pending map changes durable, in
// that order, so no durable map entry ever points at unwritten data; only
// then are the blocks freed by that batch handed back to the allocator.
func (p *Pool) commit() error {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	return p.commitHoldingMu()
}

// backgroundCommit is the committer's commit: it makes durable only the
// data blocks its map changes point at (datasync.go), not every dirty
// page of the data file; guest flushes and admin operations commit whole.
func (p *Pool) backgroundCommit() error {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	return p.commitWith(commitBackground)
}

// commitHoldingMu is commit. REQUIRES: commitMu.
func (p *Pool) commitHoldingMu() error { return p.commitWith(commitWhole) }

// commitKind is what a commit's data sync covers.
type commitKind int

const (
	commitWhole      commitKind = iota // the whole data file
	commitBackground                   // the blocks the batch maps (datasync.go)
	commitFlush                        // those and what the flushing volumes overwrote (flush.go)
)

// commitWith is a commit of the given kind. REQUIRES: commitMu.
func (p *Pool) commitWith(kind commitKind) error {
	p.mapMu.Lock()
	if p.closed {
		p.mapMu.Unlock()
		return ErrClosed
	}
	changes, freed := p.pending, p.quarantine
	p.pending, p.quarantine = nil, nil
	p.commitsTaken++
	taken, takenSeq := p.commitsTaken, p.changeSeq
	var flushed []takenRuns
	if kind == commitFlush {
		var all bool
		flushed, all = p.takeFlushRuns()
		if all {
			kind = commitWhole
		}
	}
	p.mapMu.Unlock()

	started := time.Now()
	changes = dropSuperseded(changes)
	whole, err := p.syncDataAndMap(changes, kind, overwrittenRuns(flushed))
	if observe := p.opts.CommitObserver; observe != nil {
		observe(time.Since(started), err)
	}
	if err != nil {
		p.mapMu.Lock()
		p.pending = append(changes, p.pending...)
		p.quarantine = append(freed, p.quarantine...)
		p.mapMu.Unlock()
		for _, f := range flushed {
			f.vol.dirty.restore(f.runs, f.whole)
		}
		return err
	}
	p.crashPoint(CrashCommitSynced)
	p.durableSeq.Store(takenSeq)
	if whole {
		p.wholeCommitsDone = taken
	}
	for _, f := range flushed {
		f.vol.dirty.succeeded(f.gen)
	}
	p.reuseFreed(freed)
	return nil
}

// syncDataAndMap is a commit's durable part: the data file (unless kind is
// commitWhole, only the blocks the changes map and the overwritten runs,
// where that can be done), then the map changes, then Badger's log. It
// reports whether it synced the whole data file.
func (p *Pool) syncDataAndMap(changes []blockmap.MapChange, kind commitKind, overwritten []blockRun) (whole bool, err error) {
	done := false
	if kind != commitWhole {
		runs := changedRuns(changes)
		if len(overwritten) > 0 {
			runs = mergeRuns(runs, overwritten)
		}
		done, err = p.syncDataRuns(runs)
	}
	if !done && err == nil {
		whole = true
		if err = unix.Fdatasync(int(p.data.Fd())); err != nil {
			err = fmt.Errorf("%w: sync pool data file: %v", ErrIO, err)
		}
	}
	if err == nil {
		p.crashPoint(CrashCommitDataSynced)
		if err = p.store.ApplyMapChanges(changes); err == nil {
			p.crashPoint(CrashCommitMapApplied)
			err = p.store.Sync()
		}
	}
	return whole, err
}

// reuse hands blocks whose unmapping is durable back to the allocator,
// first giving their space back to the host filesystem. Punching only
// here, before release, is what keeps a hole from landing on a block that
// was already reused.
func (p *Pool) reuse(blocks []uint64) {
	if len(blocks) == 0 {
		return
	}
	p.punchHoles(blocks)
	p.crashPoint(CrashFreePunched)
	p.alloc.release(blocks)
}

// kickCommitter wakes the background committer (which also compacts
// frozen nodes) without waiting for it.
func (p *Pool) kickCommitter() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *Pool) queueChangeLocked(c blockmap.MapChange) {
	if invariantsOn {
		p.checkChangeLocked(c)
	}
	p.pending = append(p.pending, c)
	p.changeSeq++
	if n := p.nodes[c.Key.Node]; n != nil {
		n.lastChange = p.changeSeq
	}
	if len(p.pending) >= p.opts.CommitBatch {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// punchHoles gives freed blocks' space back to the host filesystem.
func (p *Pool) punchHoles(blocks []uint64) { punchBlocks(p.data, p.blockSize, blocks, p.log) }

// punchBlocks punches blocks out of a data file, one fallocate per run of
// consecutive blocks. A failure costs only space, so it is logged, not
// returned.
func punchBlocks(data *os.File, blockSize uint64, blocks []uint64, log *slog.Logger) {
	slices.Sort(blocks)
	for i := 0; i < len(blocks); {
		j := i + 1
		for j < len(blocks) && blocks[j] == blocks[j-1]+1 {
			j++
		}
		off, length := int64(blocks[i]*blockSize), int64(uint64(j-i)*blockSize)
		if err := unix.Fallocate(int(data.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length); err != nil {
			log.Warn("punch hole in pool data file failed", "offset", off, "length", length, "err", err)
		}
		i = j
	}
}

// syncedUpdate runs fn in one transaction and makes it durable.
func (p *Pool) syncedUpdate(fn func(tx *blockmap.Txn) error) error {
	if err := p.store.Update(fn); err != nil {
		return err
	}
	return p.store.Sync()
}
