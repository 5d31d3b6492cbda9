package blockmap

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Dump is a pool's whole metadata as plain data, for test fixtures (the
// broken pools under testdata/fsck) and for reading a pool by hand.
// Mappings are [node, index, physical block] triples, and a fourth
// element, the valid sectors, for a partly written block.
type Dump struct {
	Pool     PoolRecord        `json:"pool"`
	NextID   uint64            `json:"next_id"`
	Volumes  []VolumeRecord    `json:"volumes"`
	Nodes    []NodeRecord      `json:"nodes"`
	Jobs     []JobRecord       `json:"jobs,omitempty"`
	RBD      []RBDVolumeRecord `json:"rbd_volumes,omitempty"`
	Mappings [][]uint64        `json:"mappings"`
}

// Export reads the whole store.
func (s *Store) Export() (Dump, error) {
	var d Dump
	var err error
	if d.Pool, err = s.Pool(); err != nil {
		return d, err
	}
	if d.Volumes, err = s.Volumes(); err != nil {
		return d, err
	}
	if d.Nodes, err = s.Nodes(); err != nil {
		return d, err
	}
	if d.Jobs, err = s.Jobs(); err != nil {
		return d, err
	}
	if d.RBD, err = s.RBDVolumes(); err != nil {
		return d, err
	}
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(seqKey())
		if errors.Is(err, badger.ErrKeyNotFound) {
			d.NextID = 1
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) (err error) {
			d.NextID, err = DecodeUint64(v)
			return err
		})
	})
	if err != nil {
		return d, err
	}
	err = s.ScanMappings(func(k MapKey, phys uint64, valid uint32) error {
		m := []uint64{k.Node, k.Index, phys}
		if valid != 0 {
			m = append(m, uint64(valid))
		}
		d.Mappings = append(d.Mappings, m)
		return nil
	})
	return d, err
}

// Import writes a dump into an empty store, as is: it checks nothing, so
// a fixture can hold exactly the damage it means to.
func (s *Store) Import(d Dump) error {
	if _, err := s.Pool(); !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("import: the store is not empty")
	}
	err := s.Update(func(tx *Txn) error {
		if err := tx.PutPool(d.Pool); err != nil {
			return err
		}
		if err := tx.txn.Set(seqKey(), EncodeUint64(d.NextID)); err != nil {
			return err
		}
		for _, v := range d.Volumes {
			if err := tx.PutVolume(v); err != nil {
				return err
			}
		}
		for _, v := range d.RBD {
			if err := tx.PutRBDVolume(v); err != nil {
				return err
			}
		}
		for _, n := range d.Nodes {
			if err := tx.PutNode(n); err != nil {
				return err
			}
		}
		for _, j := range d.Jobs {
			if err := tx.PutJob(j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	changes := make([]MapChange, len(d.Mappings))
	for i, m := range d.Mappings {
		if len(m) != 3 && len(m) != 4 {
			return fmt.Errorf("import: mapping %d has %d elements, want 3 or 4", i, len(m))
		}
		changes[i] = MapChange{Key: MapKey{Node: m[0], Index: m[1]}, Phys: m[2]}
		if len(m) == 4 {
			changes[i].Valid = uint32(m[3])
		}
	}
	if err := s.ApplyMapChanges(changes); err != nil {
		return err
	}
	return s.Sync()
}
