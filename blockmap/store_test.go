package blockmap

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSyncSkipsWhenClean: Sync syncs after any write and only then.
func TestSyncSkipsWhenClean(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dirty := func() bool { return s.written.Load() != s.synced.Load() }
	if err := s.Update(func(tx *Txn) error { return tx.PutNode(NodeRecord{ID: 7, Volume: 1}) }); err != nil {
		t.Fatal(err)
	}
	if !dirty() {
		t.Fatal("an update left the store clean")
	}
	if err := s.Sync(); err != nil || dirty() {
		t.Fatalf("after Sync: err %v, dirty %v", err, dirty())
	}
	if err := s.ApplyMapChanges([]MapChange{{Key: MapKey{Node: 7, Index: 3}, Phys: 9}}); err != nil {
		t.Fatal(err)
	}
	if !dirty() {
		t.Fatal("map changes left the store clean")
	}
	if err := s.Sync(); err != nil || dirty() {
		t.Fatalf("after Sync: err %v, dirty %v", err, dirty())
	}
	if err := s.DeleteNodeMappings(7); err != nil {
		t.Fatal(err)
	}
	if !dirty() {
		t.Fatal("deleting a node's maps left the store clean")
	}
	if err := s.Sync(); err != nil || dirty() {
		t.Fatalf("after Sync: err %v, dirty %v", err, dirty())
	}
}

// TestOpenAfterEmptyMemtable: a crash just after Badger created a
// memtable file leaves it empty, and Badger's Open then fails with
// z.NewFile (badger#2207; seen in the kill -9 loop). Open gets past it,
// and nothing written before is lost.
func TestOpenAfterEmptyMemtable(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *Txn) error { return tx.PutNode(NodeRecord{ID: 7, Volume: 1}) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00099.mem"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("open with an empty memtable file left by a crash: %v", err)
	}
	defer s.Close()
	nodes, err := s.Nodes()
	if err != nil || len(nodes) != 1 || nodes[0].ID != 7 {
		t.Fatalf("nodes after the reopen: %+v, %v", nodes, err)
	}
}

// Badger's advice about its small caches goes to debug; its other
// warnings stay warnings.
func TestBadgerLoggerDemotesCacheAdvice(t *testing.T) {
	var out bytes.Buffer
	l := badgerLogger{slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	l.Warningf("%s might be too small. Metrics: %s\n", "Block cache", "hit: 25 miss: 1428")
	l.Warningf("%s might be too small. Metrics: %s\n", "Index cache", "hit: 1 miss: 9")
	l.Warningf("Cache life expectancy (in seconds): %+v\n", "histogram")
	if out.Len() != 0 {
		t.Fatalf("cache advice logged as a warning: %s", out.String())
	}
	l.Warningf("Truncate Needed. File %s size: %d", "000001.vlog", 7)
	if !strings.Contains(out.String(), "level=WARN") || !strings.Contains(out.String(), "Truncate Needed") {
		t.Fatalf("another warning was not logged as one: %q", out.String())
	}
}

// TestOpenAfterLargerMemtables: a pool last run with larger memtables (an
// older rowfsd, or one killed during a replay) holds write-ahead files
// that overflow the default memtable's arena, where Badger exits the
// process. Open flushes them first, and nothing is lost. The changes are
// also far more than one Badger transaction of the default size holds.
func TestOpenAfterLargerMemtables(t *testing.T) {
	const entries = 60000 // about 3.6 MiB of arena: fits 8 MiB, not 2 MiB
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	changes := make([]MapChange, entries)
	for i := range changes {
		changes[i] = MapChange{Key: MapKey{Node: 7, Index: uint64(i)}, Phys: uint64(i) + 100}
	}
	if err := s.ApplyMapChanges(changes); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	// The files as a crash (kill -9) leaves them: memtables not flushed.
	crashed := t.TempDir()
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wal int
	for _, f := range files {
		if f.Name() == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f.Name(), ".mem") && len(b) > 0 {
			wal++
		}
		if err := os.WriteFile(filepath.Join(crashed, f.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if wal == 0 {
		t.Fatal("no write-ahead file to replay: the test proves nothing")
	}

	s, err = Open(Options{Dir: crashed})
	if err != nil {
		t.Fatalf("open after larger memtables: %v", err)
	}
	defer s.Close()
	var n int
	err = s.ScanMappings(func(k MapKey, phys uint64, _ uint32) error {
		if k.Node != 7 || phys != k.Index+100 {
			t.Fatalf("entry %+v → %d", k, phys)
		}
		n++
		return nil
	})
	if err != nil || n != entries {
		t.Fatalf("%d entries after the reopen (want %d): %v", n, entries, err)
	}
	if got := memtableReplaySize(crashed, s.db.Opts().MemTableSize); got != 0 {
		t.Fatalf("write-ahead files of %d B left after the flush", got)
	}
	// And at the default size, a batch of them in one call.
	for i := range changes {
		changes[i].Key.Node = 8
	}
	if err := s.ApplyMapChanges(changes); err != nil {
		t.Fatalf("%d changes at the default memtable size: %v", entries, err)
	}
}
