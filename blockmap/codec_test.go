package blockmap

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestMapKeyLayout(t *testing.T) {
	// The worked example of layout.md: node 7, block 300.
	want := []byte{'B', 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0x01, 0x2c}
	if got := EncodeMapKey(MapKey{Node: 7, Index: 300}); !bytes.Equal(got, want) {
		t.Fatalf("EncodeMapKey = %x, want %x", got, want)
	}
	if v := EncodeUint64(0x1234); !bytes.Equal(v, []byte{0, 0, 0, 0, 0, 0, 0x12, 0x34}) {
		t.Fatalf("EncodeUint64 = %x", v)
	}
}

func FuzzMapKey(f *testing.F) {
	f.Add([]byte{'B', 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0x01, 0x2c})
	f.Add([]byte("B"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeMapKey(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(EncodeMapKey(k), b) {
			t.Fatalf("round trip of %x gives %x", b, EncodeMapKey(k))
		}
	})
}

func TestStoreRoundTrip(t *testing.T) {
	s, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(func(tx *Txn) error {
		id, err := tx.NextID()
		if err != nil || id != 1 {
			t.Fatalf("first id %d, %v", id, err)
		}
		if err := tx.PutVolume(VolumeRecord{ID: id, Name: "vm1", Size: 1 << 30, Head: 2}); err != nil {
			return err
		}
		return tx.PutNode(NodeRecord{ID: 2, Volume: id})
	})
	if err != nil {
		t.Fatal(err)
	}
	changes := []MapChange{
		{Key: MapKey{2, 5}, Phys: 9},
		{Key: MapKey{2, 6}, Phys: ZeroBlock},
		{Key: MapKey{2, 5}, Delete: true},
		{Key: MapKey{2, 5}, Phys: 11}, // later changes to one key win
	}
	if err := s.ApplyMapChanges(changes); err != nil {
		t.Fatal(err)
	}
	got := map[MapKey]uint64{}
	s.ScanMappings(func(k MapKey, phys uint64, _ uint32) error { got[k] = phys; return nil })
	if len(got) != 2 || got[MapKey{2, 5}] != 11 || got[MapKey{2, 6}] != ZeroBlock {
		t.Fatalf("mappings %v", got)
	}
	vols, _ := s.Volumes()
	nodes, _ := s.Nodes()
	if len(vols) != 1 || vols[0].Name != "vm1" || len(nodes) != 1 {
		t.Fatalf("volumes %v nodes %v", vols, nodes)
	}
	if err := s.DeleteNodeMappings(2); err != nil {
		t.Fatal(err)
	}
	n := 0
	s.ScanMappings(func(MapKey, uint64, uint32) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d mappings left after DeleteNodeMappings", n)
	}
}

func FuzzDecodeUint64(f *testing.F) {
	f.Add(EncodeUint64(0x1234))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeUint64(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(EncodeUint64(v), b) {
			t.Fatalf("round trip of %x gives %x", b, EncodeUint64(v))
		}
	})
}

// FuzzDecodeRecords feeds arbitrary bytes to the record decoders: a bad
// record is ErrCorrupt, never a panic, and a good one re-encodes to a value
// that decodes the same.
func FuzzDecodeRecords(f *testing.F) {
	f.Add([]byte(`{"id":3,"volume":1,"parent":2,"name":"s1","created":"2026-11-01T00:00:00Z","size":65536,"kind":"manual"}`))
	f.Add([]byte(`{"id":1,"name":"vm","size":65536,"backend":"row","head":3,"created":"2026-11-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":9,"kind":"delete","target":"vm@s1","state":"running","created":"2026-11-01T00:00:00Z"}`))
	f.Add([]byte(`{"format_version":1,"block_size":65536}`))
	f.Add([]byte(`{"id":"x"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, rec := range []any{&NodeRecord{}, &VolumeRecord{}, &JobRecord{}, &PoolRecord{}} {
			err := decodeJSON("fuzz", []byte("k"), b, rec)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error %v does not wrap ErrCorrupt", err)
				}
				continue
			}
			again, err := json.Marshal(rec)
			if err != nil {
				t.Fatalf("re-encode %T: %v", rec, err)
			}
			if err := decodeJSON("fuzz", []byte("k"), again, rec); err != nil {
				t.Fatalf("%T does not decode its own encoding %s: %v", rec, again, err)
			}
		}
	})
}
