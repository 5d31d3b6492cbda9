//go:build invariants

package rowengine

import "testing"

// TestInvariantsCatch: the assertions of the invariants build do fire.
func TestInvariantsCatch(t *testing.T) {
	p, err := Open(t.TempDir(), Options{BlockSize: MinBlockSize})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h := mustCreate(t, p, "vm", 1<<20)
	h.Close()
	p.mapMu.Lock()
	head := p.volumes["vm"].head
	p.addOwned(head, -1, 0)
	p.addOwned(head, 1, 0)
	p.mapMu.Unlock()
	if v := p.Violations(); len(v) != 2 {
		t.Fatalf("an owned counter taken below zero recorded %q, want a violation for the node and its volume", v)
	}
}
