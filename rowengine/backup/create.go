package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Extent is a byte range of a volume.
type Extent struct{ Offset, Length uint64 }

// CreateOptions say what one point is made of.
type CreateOptions struct {
	Volume string
	Size   uint64
	// Source reads the snapshot the point is taken from (safe for
	// concurrent ReadAt).
	Source io.ReaderAt
	// Snapshot names it, for the manifest.
	Snapshot string
	// Data are the extents that may hold data; the rest reads as zeros and
	// is not read. Nil: all of it.
	Data []Extent
	// Parent, if set, makes an incremental point on Parent's chain: only
	// chunks that overlap Changed (what differs between Parent's snapshot
	// and this one) are read; the others are Parent's. Nil Changed with a
	// Parent: unknown, every chunk is read (and only new ones uploaded).
	Parent  *Manifest
	Changed []Extent
	// Group, Consistency and Policy are recorded in the manifest.
	Group, Consistency, Policy string
	// Now is the point's time. Default time.Now().
	Now time.Time
	// Progress, if set, is told the bytes processed so far and in all.
	Progress func(done, total uint64)
	// Workers read, hash and upload chunks in parallel. Default: twice
	// the CPUs, at least 4, so that uploads and fsyncs overlap the hashing.
	Workers int
}

// Create makes one point: its chunks (those the target lacks), then its
// index, then its manifest, so an interrupted Create leaves no point, only
// chunks a later point or gc deals with. A chunk an earlier point counts
// on but the target lost (gc after corruption, verify's quarantine) is
// read again and uploaded, when this point has it.
func (r *Repo) Create(ctx context.Context, o CreateOptions) (Manifest, error) {
	r.gcMu.RLock()
	defer r.gcMu.RUnlock()
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	workers := o.Workers
	if workers <= 0 {
		workers = max(2*runtime.NumCPU(), 4)
	}
	if err := r.writeConfig(ctx); err != nil {
		return Manifest{}, err
	}
	m := Manifest{Format: FormatVersion, ID: newPointID(o.Now), Volume: o.Volume, Size: o.Size, Created: o.Now.UTC(),
		Kind: "full", Snapshot: o.Snapshot, Group: o.Group, Consistency: o.Consistency, Policy: o.Policy, ChunkSize: ChunkSize, Encrypted: r.keys != nil}
	m.Chain = m.ID
	var parent Index
	if o.Parent != nil {
		if o.Parent.Volume != o.Volume {
			return m, fmt.Errorf("%w: point %s is of volume %s, not %s", ErrInvalid, o.Parent.ID, o.Parent.Volume, o.Volume)
		}
		var err error
		if parent, err = r.index(ctx, *o.Parent); err != nil {
			return m, err
		}
		m.Kind, m.Chain, m.Parent = "incremental", o.Parent.Chain, o.Parent.ID
	}
	stored, err := r.chunkIDs(ctx)
	if err != nil {
		return m, err
	}
	n := chunkCount(o.Size)
	ix := Index{Size: o.Size, Chunks: make([]ChunkID, n)}
	// What each chunk needs: reuse the parent's id, or read it.
	read := make([]bool, n)
	changed, data := chunksOf(o.Changed, n), chunksOf(o.Data, n)
	for i := range n {
		switch {
		case o.Parent == nil || o.Changed == nil || i >= len(parent.Chunks) || chunkLen(o.Size, i) != chunkLen(parent.Size, i):
			read[i] = true
		case changed[i]:
			read[i] = true
		case !parent.Chunks[i].IsZero() && !stored[parent.Chunks[i]]:
			read[i] = true // lost from the target: upload it again
		case parent.Chunks[i].IsZero():
			m.Stats.ZeroChunks++
		default:
			ix.Chunks[i] = parent.Chunks[i]
			m.Stats.ReusedBytes += uint64(chunkLen(o.Size, i))
		}
		if read[i] && o.Data != nil && !data[i] {
			read[i] = false // a hole: zeros, nothing to read
			m.Stats.ZeroChunks++
		}
	}
	var (
		mu        sync.Mutex
		done      atomic.Uint64
		next      atomic.Int64
		firstErr  error
		wg        sync.WaitGroup
		readBytes atomic.Uint64
		sentBytes atomic.Uint64
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	for range workers {
		wg.Go(func() {
			buf := make([]byte, ChunkSize)
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				length := chunkLen(o.Size, i)
				if read[i] {
					plain := buf[:length]
					if _, err := o.Source.ReadAt(plain, int64(i)*ChunkSize); err != nil && !errors.Is(err, io.EOF) {
						fail(fmt.Errorf("read %s at %d: %w", o.Volume, int64(i)*ChunkSize, err))
						return
					}
					readBytes.Add(uint64(length))
					if isZero(plain) {
						mu.Lock()
						m.Stats.ZeroChunks++
						mu.Unlock()
					} else {
						id := r.keys.chunkID(plain)
						mu.Lock()
						have := stored[id]
						mu.Unlock()
						if !have {
							obj := r.keys.encodeChunk(id, plain)
							if err := r.target.Put(ctx, chunkKey(id), obj); err != nil {
								fail(err)
								return
							}
							sentBytes.Add(uint64(len(obj)))
							mu.Lock()
							stored[id] = true
							mu.Unlock()
						} else {
							mu.Lock()
							m.Stats.ReusedBytes += uint64(length)
							mu.Unlock()
						}
						ix.Chunks[i] = id
					}
					mu.Lock()
					m.Stats.ChangedChunks++
					mu.Unlock()
				}
				if d := done.Add(uint64(length)); o.Progress != nil {
					o.Progress(d, o.Size)
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return m, firstErr
	}
	if err := ctx.Err(); err != nil {
		return m, err
	}
	m.Stats.ReadBytes, m.Stats.UploadedBytes = readBytes.Load(), sentBytes.Load()
	raw := ix.encode()
	m.Chunks, m.IndexSHA256 = n, sha256Hex(raw)
	if err := r.target.Put(ctx, indexKey(m.ID), raw); err != nil {
		return m, err
	}
	doc, _ := json.MarshalIndent(m, "", "  ")
	if err := r.target.Put(ctx, manifestKey(m.ID), doc); err != nil {
		return m, err
	}
	return m, nil
}

// chunksOf marks the chunks (of n) that extents overlap.
func chunksOf(extents []Extent, n int) []bool {
	out := make([]bool, n)
	for _, e := range extents {
		if e.Length == 0 {
			continue
		}
		for i := e.Offset / ChunkSize; i <= (e.Offset+e.Length-1)/ChunkSize && i < uint64(n); i++ {
			out[i] = true
		}
	}
	return out
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
