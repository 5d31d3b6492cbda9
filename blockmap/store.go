package blockmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
)

// Options configure a Store. The zero value of every field is a usable default.
type Options struct {
	// Dir is the Badger directory. Required.
	Dir string
	// Logger receives Badger's warnings and errors. Default: slog.Default().
	Logger *slog.Logger
	// MemTableSize bounds each Badger memtable (two are kept). Default
	// 2 MiB, small so the daemon's resident memory stays small: each
	// memtable is an arena of 1.3 × MemTableSize on the heap and a
	// write-ahead file of 2 × MemTableSize mapped in memory, and a full one
	// is flushed to a level-0 table. Badger's largest transaction is 15% of
	// it (ApplyMapChanges splits to fit; records are far smaller) and so is
	// the largest value kept in the LSM tree (ValueThreshold: rowfs runs no
	// value-log GC, so no value may go to the value log).
	MemTableSize int64
	// InMemory runs Badger without files, for tests of this package only.
	InMemory bool
}

// EnsureDefaults fills in zero fields.
func (o *Options) EnsureDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 2 << 20
	}
}

// Store is the durable metadata of one pool.
type Store struct {
	db *badger.DB
	// written counts writes that have returned; synced is what it was when
	// the last Sync began. Sync skips Badger's sync (an fsync of the
	// write-ahead log) when they are equal: a guest fsync after in-place
	// overwrites changes no map and needs only the data file synced.
	written, synced atomic.Uint64
	// mapTxnChanges bounds the changes of one ApplyMapChanges transaction:
	// half of Badger's per-transaction entry limit, which follows
	// MemTableSize (3,276 entries at 2 MiB), so a WithNext group that runs
	// past the bound still fits.
	mapTxnChanges int
	// dir and log serve releaseLoop (residency.go), which runs until
	// stopRelease closes and then closes releaseDone; nil in memory.
	dir                      string
	log                      *slog.Logger
	stopRelease, releaseDone chan struct{}
}

// Open opens or creates the Badger directory.
func Open(opts Options) (*Store, error) {
	opts.EnsureDefaults()
	if !opts.InMemory {
		if larger := memtableReplaySize(opts.Dir, opts.MemTableSize); larger > 0 {
			// Badger replays a memtable's write-ahead file into an arena
			// sized by the MemTableSize it is opened with, and exits the
			// process ("Arena too small") when the file holds more: a pool
			// last run with larger memtables (an older rowfsd) or a crash
			// during a replay. Open once at a size that holds them, let
			// Close flush them to level 0, then open at the asked size.
			opts.Logger.Info("flushing memtables written at a larger size", "dir", opts.Dir, "size", larger, "new size", opts.MemTableSize)
			big := opts
			big.MemTableSize = larger
			s, err := open(big)
			if err != nil {
				return nil, err
			}
			if err := s.Close(); err != nil {
				return nil, fmt.Errorf("flush memtables of %s: %w", opts.Dir, err)
			}
		}
	}
	return open(opts)
}

// memtableReplaySize returns 0 when every write-ahead (.mem) file in dir
// replays into a memtable of memTableSize, else a size that holds the
// largest. Badger creates each file at 2 × MemTableSize and truncates it
// to its contents when it replays it; a file's arena needs under twice
// its bytes (a map entry: about 40 B in the file, 60 B in the arena; a
// delete 26 B and 48 B), and the arena is 1.3 × MemTableSize.
func memtableReplaySize(dir string, memTableSize int64) int64 {
	files, err := filepath.Glob(filepath.Join(dir, "*.mem"))
	if err != nil {
		return 0
	}
	var largest int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			continue
		}
		// Written at this size (full-sized), or small enough for its arena.
		if size := fi.Size(); size != 2*memTableSize && size > memTableSize/2 {
			largest = max(largest, size)
		}
	}
	if largest == 0 {
		return 0
	}
	return max(2*largest, memTableSize)
}

func open(opts Options) (*Store, error) {
	bo := badger.DefaultOptions(opts.Dir).
		WithLogger(badgerLogger{opts.Logger}).
		WithSyncWrites(false).
		WithMemTableSize(opts.MemTableSize).
		WithValueThreshold(min(maxBatchSize(opts.MemTableSize), 1<<20)). // Badger's largest.
		WithNumMemtables(2).
		WithNumLevelZeroTables(4).
		WithNumCompactors(2).
		// The maps live in memory (rowengine): Badger is read at open, by
		// fsck and for capacity history, not on the I/O path, so its block
		// cache (of Snappy-decompressed blocks) need not be large; at 16 MiB
		// it was a third of a settled daemon's live heap (issue 15).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueLogFileSize(64 << 20).
		WithMetricsEnabled(false).
		WithInMemory(opts.InMemory)
	if opts.InMemory {
		bo.Dir, bo.ValueDir = "", ""
	}
	db, err := badger.Open(bo)
	// Badger formats the cause with %+v, so errors.Is cannot see it.
	if err != nil && strings.Contains(err.Error(), "while opening memtables") && strings.Contains(err.Error(), z.NewFile.Error()) {
		// A crash right after Badger created a memtable file leaves it
		// empty; the next Open sizes it and then fails with z.NewFile
		// (dgraph-io/badger#2207: openMemTables takes openMemTable's
		// "file was created" for an error). The file held nothing; the
		// Open after that one finds it sized and empty and skips it.
		opts.Logger.Warn("reopening metadata: an empty memtable file left by a crash (badger#2207)", "dir", opts.Dir)
		db, err = badger.Open(bo)
	}
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("%w: %s", ErrLocked, opts.Dir)
		}
		return nil, fmt.Errorf("open metadata %s: %w", opts.Dir, err)
	}
	s := &Store{db: db, mapTxnChanges: int(db.MaxBatchCount() / 2), dir: opts.Dir, log: opts.Logger}
	if !opts.InMemory {
		s.stopRelease, s.releaseDone = make(chan struct{}), make(chan struct{})
		go s.releaseLoop(s.stopRelease, s.releaseDone)
	}
	return s, nil
}

// maxBatchSize is Badger's largest transaction in bytes for a memtable
// size (checkAndSetOptions in badger/v4's db.go).
func maxBatchSize(memTableSize int64) int64 { return 15 * memTableSize / 100 }

// Close flushes and closes Badger.
func (s *Store) Close() error {
	if s.stopRelease != nil {
		close(s.stopRelease)
		<-s.releaseDone
		s.stopRelease = nil
	}
	if err := s.db.Sync(); err != nil {
		_ = s.db.Close()
		return fmt.Errorf("sync metadata: %w", err)
	}
	return s.db.Close()
}

// Sync makes every change committed so far durable.
//
// Every write that returned before Sync was called is covered: a write
// counts itself only once it is in Badger, so a Sync that began earlier
// never claims it.
func (s *Store) Sync() error {
	w := s.written.Load()
	if w == s.synced.Load() {
		return nil
	}
	if err := s.db.Sync(); err != nil {
		return err
	}
	for {
		if cur := s.synced.Load(); cur >= w || s.synced.CompareAndSwap(cur, w) {
			return nil
		}
	}
}

// Pool returns the pool record, or ErrNotFound for a new directory.
func (s *Store) Pool() (PoolRecord, error) {
	var rec PoolRecord
	err := s.db.View(func(txn *badger.Txn) error {
		return getJSON(txn, "pool", poolKey(), &rec)
	})
	return rec, err
}

// Volumes returns every volume record, ordered by name.
func (s *Store) Volumes() ([]VolumeRecord, error) {
	var out []VolumeRecord
	err := s.scanJSON(prefixVolume, "volume", func() any { out = append(out, VolumeRecord{}); return &out[len(out)-1] })
	return out, err
}

// Nodes returns every node record, ordered by id.
func (s *Store) Nodes() ([]NodeRecord, error) {
	var out []NodeRecord
	err := s.scanJSON(prefixNode, "node", func() any { out = append(out, NodeRecord{}); return &out[len(out)-1] })
	return out, err
}

// Jobs returns every job record, ordered by id.
func (s *Store) Jobs() ([]JobRecord, error) {
	var out []JobRecord
	err := s.scanJSON(prefixJob, "job", func() any { out = append(out, JobRecord{}); return &out[len(out)-1] })
	return out, err
}

// Groups returns every group record, ordered by name.
func (s *Store) Groups() ([]GroupRecord, error) {
	var out []GroupRecord
	err := s.scanJSON(prefixGroup, "group", func() any { out = append(out, GroupRecord{}); return &out[len(out)-1] })
	return out, err
}

// Policies returns every policy record, ordered by name.
func (s *Store) Policies() ([]PolicyRecord, error) {
	var out []PolicyRecord
	err := s.scanJSON(prefixPolicy, "policy", func() any { out = append(out, PolicyRecord{}); return &out[len(out)-1] })
	return out, err
}

// RBDVolumes returns every RBD volume record, ordered by name.
func (s *Store) BackupTargets() ([]BackupTargetRecord, error) {
	var out []BackupTargetRecord
	err := s.scanJSON(prefixTarget, "backup target", func() any { out = append(out, BackupTargetRecord{}); return &out[len(out)-1] })
	return out, err
}

func (s *Store) RBDVolumes() ([]RBDVolumeRecord, error) {
	var out []RBDVolumeRecord
	err := s.scanJSON(prefixRBD, "rbd volume", func() any { out = append(out, RBDVolumeRecord{}); return &out[len(out)-1] })
	return out, err
}

func (s *Store) scanJSON(prefix byte, what string, next func() any) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			val, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := decodeJSON(what, item.Key(), val, next()); err != nil {
				return err
			}
		}
		return nil
	})
}

// ScanMappings calls fn for every map entry of every node, in key order
// (node, then block index), with its physical block and valid sectors (0:
// all).
func (s *Store) ScanMappings(fn func(k MapKey, phys uint64, valid uint32) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixMapping}, PrefetchValues: true, PrefetchSize: 1000})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k, err := DecodeMapKey(item.Key())
			if err != nil {
				return err
			}
			var phys uint64
			var valid uint32
			err = item.Value(func(v []byte) error {
				var derr error
				phys, valid, derr = DecodeMapValue(v)
				return derr
			})
			if err != nil {
				return fmt.Errorf("map entry %d/%d: %w", k.Node, k.Index, err)
			}
			if err := fn(k, phys, valid); err != nil {
				return err
			}
		}
		return nil
	})
}

// ApplyMapChanges writes a batch of map changes in order, in transactions
// of at most s.mapTxnChanges that never split a WithNext group: after a
// crash the store holds a prefix of the batch's groups. Call Sync to make
// it durable.
func (s *Store) ApplyMapChanges(changes []MapChange) error {
	for len(changes) > 0 {
		n := min(len(changes), s.mapTxnChanges)
		for n < len(changes) && changes[n-1].WithNext {
			n++
		}
		chunk := changes[:n]
		changes = changes[n:]
		err := s.update(func(txn *badger.Txn) error {
			for _, c := range chunk {
				var err error
				if c.Delete {
					err = txn.Delete(EncodeMapKey(c.Key))
				} else {
					err = txn.Set(EncodeMapKey(c.Key), EncodeMapValue(c.Phys, c.Valid))
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("map changes: %w", err)
		}
	}
	return nil
}

// DeleteNodeMappings removes every map entry of the node, in batches.
func (s *Store) DeleteNodeMappings(node uint64) error {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: mapPrefix(node)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	defer s.written.Add(1)
	return wb.Flush()
}

// update is every Badger transaction that writes, counted for Sync.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	defer s.written.Add(1)
	return s.db.Update(fn)
}

// Update runs fn in one atomic transaction.
func (s *Store) Update(fn func(tx *Txn) error) error {
	const attempts = 5
	var err error
	for range attempts {
		err = s.update(func(txn *badger.Txn) error { return fn(&Txn{txn: txn}) })
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return err
}

// Txn is one atomic metadata transaction.
type Txn struct {
	txn *badger.Txn
}

// NextID returns a new id, unique in the pool (volumes and nodes share the sequence).
func (t *Txn) NextID() (uint64, error) {
	next := uint64(1)
	item, err := t.txn.Get(seqKey())
	switch {
	case err == nil:
		if err := item.Value(func(v []byte) error {
			var derr error
			next, derr = DecodeUint64(v)
			return derr
		}); err != nil {
			return 0, fmt.Errorf("id sequence: %w", err)
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return 0, err
	}
	return next, t.txn.Set(seqKey(), EncodeUint64(next+1))
}

// PutPool writes the pool record.
func (t *Txn) PutPool(rec PoolRecord) error { return putJSON(t.txn, poolKey(), rec) }

// Volume reads one volume record.
func (t *Txn) Volume(name string) (VolumeRecord, error) {
	var rec VolumeRecord
	err := getJSON(t.txn, "volume", volumeKey(name), &rec)
	return rec, err
}

// PutVolume writes a volume record.
func (t *Txn) PutVolume(rec VolumeRecord) error { return putJSON(t.txn, volumeKey(rec.Name), rec) }

// DeleteVolume removes a volume record.
func (t *Txn) DeleteVolume(name string) error { return t.txn.Delete(volumeKey(name)) }

// PutRBDVolume writes an RBD volume record.
func (t *Txn) PutRBDVolume(rec RBDVolumeRecord) error { return putJSON(t.txn, rbdKey(rec.Name), rec) }

// DeleteRBDVolume removes an RBD volume record.
func (t *Txn) DeleteRBDVolume(name string) error { return t.txn.Delete(rbdKey(name)) }

// PutGroup writes a group record.
func (t *Txn) PutGroup(rec GroupRecord) error { return putJSON(t.txn, groupKey(rec.Name), rec) }

// DeleteGroup removes a group record.
func (t *Txn) DeleteGroup(name string) error { return t.txn.Delete(groupKey(name)) }

// PutPolicy writes a policy record.
func (t *Txn) PutPolicy(rec PolicyRecord) error { return putJSON(t.txn, policyKey(rec.Name), rec) }

// PutBackupTarget writes a backup target.
func (t *Txn) PutBackupTarget(rec BackupTargetRecord) error {
	return putJSON(t.txn, targetKey(rec.Name), rec)
}

// DeleteBackupTarget removes a backup target.
func (t *Txn) DeleteBackupTarget(name string) error { return t.txn.Delete(targetKey(name)) }

// DeletePolicy removes a policy record.
func (t *Txn) DeletePolicy(name string) error { return t.txn.Delete(policyKey(name)) }

// PutNode writes a node record.
func (t *Txn) PutNode(rec NodeRecord) error { return putJSON(t.txn, nodeKey(rec.ID), rec) }

// DeleteNode removes a node record (not its map: see Store.DeleteNodeMappings).
func (t *Txn) DeleteNode(id uint64) error { return t.txn.Delete(nodeKey(id)) }

// PutJob writes a job record.
func (t *Txn) PutJob(rec JobRecord) error { return putJSON(t.txn, jobKey(rec.ID), rec) }

// DeleteJob removes a job record.
func (t *Txn) DeleteJob(id uint64) error { return t.txn.Delete(jobKey(id)) }

func putJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(key, b)
}

func getJSON(txn *badger.Txn, what string, key []byte, into any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%s %q: %w", what, key[1:], ErrNotFound)
	}
	if err != nil {
		return err
	}
	return item.Value(func(v []byte) error { return decodeJSON(what, key, v, into) })
}

// badgerLogger sends Badger's warnings and errors to slog and drops its
// chatty info and debug lines.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	msg := "badger: " + strings.TrimSpace(fmt.Sprintf(f, a...))
	if isCacheAdvice(msg) {
		b.l.Debug(msg)
		return
	}
	b.l.Warn(msg)
}

// isCacheAdvice tells Badger's once-a-minute advice that its block or
// index cache has a low hit ratio. The caches are small on purpose (the
// maps are read from Badger at open and by fsck, not on the I/O path), so
// the advice is only debug output, not a warning for an operator.
func isCacheAdvice(msg string) bool {
	return strings.HasPrefix(msg, "badger: Block cache might be too small") ||
		strings.HasPrefix(msg, "badger: Index cache might be too small") ||
		strings.HasPrefix(msg, "badger: Cache life expectancy")
}
func (b badgerLogger) Infof(string, ...any)  {}
func (b badgerLogger) Debugf(string, ...any) {}
