package blockmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// prefixCapacity keys capacity samples: 'C' + series id + unix seconds →
// three uint64 (head, snapshot, total bytes). A series is a volume's id.
// prefixCapacityLast is the single key 'H' → the unix seconds of the
// newest sample, so the sampler finds when it is due without a scan.
const (
	prefixCapacity     = 'C'
	prefixCapacityLast = 'H'
)

// CapacitySample is one point of a volume's capacity history.
type CapacitySample struct {
	Series                 uint64 // the volume's id
	At                     time.Time
	Head, Snapshots, Total uint64
}

const capacityKeyLen, capacityValueLen = 17, 24

func capacityKey(series uint64, at time.Time) []byte {
	k := make([]byte, capacityKeyLen)
	k[0] = prefixCapacity
	binary.BigEndian.PutUint64(k[1:], series)
	binary.BigEndian.PutUint64(k[9:], uint64(max(at.Unix(), 0))) // the zero time: from the start
	return k
}

func capacitySeriesPrefix(series uint64) []byte {
	return capacityKey(series, time.Unix(0, 0))[:9]
}

func decodeCapacityKey(k []byte) (series uint64, at time.Time, err error) {
	if len(k) != capacityKeyLen || k[0] != prefixCapacity {
		return 0, time.Time{}, fmt.Errorf("%w: capacity key %x", ErrCorrupt, k)
	}
	return binary.BigEndian.Uint64(k[1:]), time.Unix(int64(binary.BigEndian.Uint64(k[9:])), 0).UTC(), nil
}

// AppendCapacity writes samples (no sync: losing the newest samples to a
// crash costs a point of a chart, nothing more), then trims every series
// in the store: samples before dropBefore go, so do those beyond the
// newest maxPerSeries of a series, and whole series whose id keep says
// false (a deleted volume's). Returns how many samples it removed.
func (s *Store) AppendCapacity(samples []CapacitySample, dropBefore time.Time, maxPerSeries int, keep func(series uint64) bool) (int, error) {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, c := range samples {
		v := make([]byte, capacityValueLen)
		binary.BigEndian.PutUint64(v, c.Head)
		binary.BigEndian.PutUint64(v[8:], c.Snapshots)
		binary.BigEndian.PutUint64(v[16:], c.Total)
		if err := wb.Set(capacityKey(c.Series, c.At), v); err != nil {
			return 0, err
		}
	}
	newest := uint64(0)
	for _, c := range samples {
		newest = max(newest, uint64(c.At.Unix()))
	}
	if len(samples) > 0 {
		if err := wb.Set([]byte{prefixCapacityLast}, EncodeUint64(newest)); err != nil {
			return 0, err
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, err
	}
	// Newest first within a series: the count says which are beyond the bound.
	var drop [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixCapacity}, Reverse: true})
		defer it.Close()
		var series uint64
		count := 0
		for it.Seek([]byte{prefixCapacity, 0xff}); it.Valid(); it.Next() {
			k := it.Item().Key()
			id, at, err := decodeCapacityKey(k)
			if err != nil {
				return err
			}
			if id != series || count == 0 {
				series, count = id, 0
			}
			count++
			if count > maxPerSeries || at.Before(dropBefore) || !keep(id) {
				drop = append(drop, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	trim := s.db.NewWriteBatch()
	defer trim.Cancel()
	for _, k := range drop {
		if err := trim.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(drop), trim.Flush()
}

// CapacitySeries returns a series' samples from since to until, oldest first.
func (s *Store) CapacitySeries(series uint64, since, until time.Time) ([]CapacitySample, error) {
	var out []CapacitySample
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: capacitySeriesPrefix(series), PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Seek(capacityKey(series, since)); it.Valid(); it.Next() {
			item := it.Item()
			_, at, err := decodeCapacityKey(item.Key())
			if err != nil {
				return err
			}
			if at.After(until) {
				break
			}
			c := CapacitySample{Series: series, At: at}
			if err := item.Value(func(v []byte) error {
				if len(v) != capacityValueLen {
					return fmt.Errorf("%w: capacity sample %x: %d bytes", ErrCorrupt, item.Key(), len(v))
				}
				c.Head, c.Snapshots, c.Total = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), binary.BigEndian.Uint64(v[16:])
				return nil
			}); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// LastCapacitySample is the time of the newest sample written (zero if none).
func (s *Store) LastCapacitySample() (time.Time, error) {
	var last time.Time
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{prefixCapacityLast})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			secs, err := DecodeUint64(v)
			last = time.Unix(int64(secs), 0).UTC()
			return err
		})
	})
	return last, err
}
