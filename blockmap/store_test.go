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
