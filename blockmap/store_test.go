package blockmap

import "testing"

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
