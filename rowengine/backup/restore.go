package backup

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// Sink is where a restore writes: a new volume, an existing one, a file.
type Sink interface {
	io.WriterAt
}

// Zeroer is a Sink that can zero a range without writing zeros (a
// volume's ZeroRange frees the blocks).
type Zeroer interface {
	ZeroRange(off int64, length uint64) error
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Fresh says the sink reads as zeros already (a new volume, a new
	// sparse file): zero chunks are skipped, not written.
	Fresh bool
	// From is the first chunk to restore: a resumed restore starts where
	// the last one's progress was durable.
	From int
	// Progress, if set, is told the chunks done (in order: every chunk
	// below it is written) and the bytes so far and in all.
	Progress func(chunksDone int, done, total uint64)
	// Workers fetch and decode chunks in parallel. Default: the CPUs.
	Workers int
}

// Restore writes point id onto sink, chunk by chunk, each checked against
// its id before it is written.
func (r *Repo) Restore(ctx context.Context, id string, sink Sink, o RestoreOptions) (Manifest, error) {
	m, err := r.Point(ctx, id)
	if err != nil {
		return m, err
	}
	ix, err := r.index(ctx, m)
	if err != nil {
		return m, err
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	n := len(ix.Chunks)
	var (
		next     atomic.Int64
		mu       sync.Mutex
		firstErr error
		written  = make([]bool, n)
		lowest   = o.From
		bytes    uint64
		wg       sync.WaitGroup
	)
	next.Store(int64(o.From))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	zeros := make([]byte, ChunkSize)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				off, length := int64(i)*ChunkSize, chunkLen(ix.Size, i)
				var err error
				switch cid := ix.Chunks[i]; {
				case cid.IsZero() && o.Fresh:
				case cid.IsZero():
					if z, ok := sink.(Zeroer); ok {
						err = z.ZeroRange(off, uint64(length))
					} else {
						_, err = sink.WriteAt(zeros[:length], off)
					}
				default:
					var plain []byte
					if plain, err = r.readChunk(ctx, cid); err == nil {
						if len(plain) != length {
							err = fmt.Errorf("%w: chunk %s holds %d bytes, chunk %d of point %s needs %d", ErrCorrupt, cid, len(plain), i, id, length)
						} else {
							_, err = sink.WriteAt(plain, off)
						}
					}
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("restore %s at byte %d: %w", id, off, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				written[i] = true
				bytes += uint64(length)
				for lowest < n && written[lowest] {
					lowest++
				}
				if o.Progress != nil {
					o.Progress(lowest, bytes, ix.Size)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return m, firstErr
	}
	return m, ctx.Err()
}
