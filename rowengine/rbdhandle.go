package rowengine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
)

// rbdHandle is an open RBD volume: the volume's shared head image, or its
// own read-only image of snapshot snapName.
type rbdHandle struct {
	pool     *Pool
	v        *rbdVolume
	img      RBDImage
	snapName string
	writable bool
}

// open opens a handle on the head, opening the image on first use.
func (k rbdKind) open(writable bool) (*Handle, error) {
	p, v := k.p, k.v
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.deleted {
		return nil, fmt.Errorf("%w: volume %q", ErrNotFound, v.rec.Name)
	}
	if v.img == nil {
		c, err := p.cluster()
		if err != nil {
			return nil, err
		}
		img, err := c.OpenImage(v.rec.Pool, v.rec.Image)
		if err != nil {
			return nil, fmt.Errorf("open volume %q (RBD image %s): %w", v.rec.Name, v.spec(), err)
		}
		if v.size, err = img.Size(); err != nil {
			img.Close()
			return nil, fmt.Errorf("open volume %q (RBD image %s): %w", v.rec.Name, v.spec(), err)
		}
		v.img = img
	}
	v.opens++
	if writable {
		v.writers++
	}
	return newHandle(&rbdHandle{pool: p, v: v, img: v.img, writable: writable}, writable), nil
}

func (h *rbdHandle) close() {
	v := h.v
	if h.snapName != "" {
		h.img.Close()
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.opens--
	if h.writable {
		v.writers--
	}
	v.closeHeadIfUnused(h.pool.log)
}

// closeHeadIfUnused closes the shared head once no handle and no
// withImage call uses it. Closing releases the exclusive lock, so another
// host may write. REQUIRES: v.mu.
func (v *rbdVolume) closeHeadIfUnused(log *slog.Logger) {
	if v.opens == 0 && v.pins == 0 && v.img != nil {
		if err := v.img.Close(); err != nil {
			log.Warn("close RBD image", "image", v.spec(), "err", err)
		}
		v.img = nil
	}
}

func (h *rbdHandle) size() uint64 {
	size, err := h.img.Size()
	if err != nil {
		return 0
	}
	if h.snapName == "" {
		h.v.mu.Lock()
		h.v.size = size
		h.v.mu.Unlock()
	}
	return size
}

func (h *rbdHandle) checkRange(off int64, length uint64) error {
	if h.snapName == "" {
		h.v.mu.Lock()
		deleted := h.v.deleted
		h.v.mu.Unlock()
		if deleted {
			return fmt.Errorf("%w: volume %q was removed", ErrNotFound, h.v.rec.Name)
		}
	}
	size := h.size()
	if off < 0 || uint64(off) > size || length > size-uint64(off) {
		return fmt.Errorf("%w: range %d+%d is outside volume %q of %d bytes", ErrInvalidArgument, off, length, h.v.rec.Name, size)
	}
	return nil
}

func (h *rbdHandle) readAt(buf []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset", ErrInvalidArgument)
	}
	size := h.size()
	if uint64(off) >= size {
		return 0, io.EOF
	}
	n := min(uint64(len(buf)), size-uint64(off))
	got, err := h.img.ReadAt(buf[:n], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return got, fmt.Errorf("%w: read volume %q: %v", ErrIO, h.v.rec.Name, err)
	}
	return got, nil
}

func (h *rbdHandle) writeAt(data []byte, off int64) (int, error) {
	if err := h.checkRange(off, uint64(len(data))); err != nil {
		return 0, err
	}
	n, err := h.img.WriteAt(data, off)
	if err != nil {
		return n, fmt.Errorf("%w: write volume %q: %v", ErrIO, h.v.rec.Name, err)
	}
	return n, nil
}

// writeAtSync: librbd may acknowledge a write from its cache (rbd_cache);
// the flush makes it durable in the cluster.
func (h *rbdHandle) writeAtSync(data []byte, off int64) (int, error) {
	n, err := h.writeAt(data, off)
	if err != nil {
		return n, err
	}
	return n, h.sync()
}

func (h *rbdHandle) zeroRange(off int64, length uint64) error {
	if err := h.checkRange(off, length); err != nil {
		return err
	}
	if err := h.img.WriteZeroes(uint64(off), length); err != nil {
		return fmt.Errorf("%w: zero range of volume %q: %v", ErrIO, h.v.rec.Name, err)
	}
	return nil
}

func (h *rbdHandle) sync() error {
	if err := h.img.Flush(); err != nil {
		return fmt.Errorf("%w: flush volume %q: %v", ErrIO, h.v.rec.Name, err)
	}
	return nil
}

// seekData: an RBD volume is all data, as far as seeking goes: librbd has
// no cheap way to ask, and data everywhere is always a correct answer.
func (h *rbdHandle) seekData(off uint64) (uint64, bool) { return off, off < h.size() }

func (h *rbdHandle) seekHole(off uint64) (uint64, bool) {
	if size := h.size(); off < size {
		return size, true
	}
	return 0, false
}

func (k rbdKind) openSnapshot(name string) (*Handle, error) {
	p, v := k.p, k.v
	c, err := p.cluster()
	if err != nil {
		return nil, err
	}
	img, err := c.OpenSnapshot(v.rec.Pool, v.rec.Image, name)
	if err != nil {
		return nil, fmt.Errorf("open snapshot %s@%s: %w", v.rec.Name, name, err)
	}
	return newHandle(&rbdHandle{pool: p, v: v, img: img, snapName: name}, false), nil
}

// flushRBDHeads flushes every open RBD head image: a barrier without a
// handle (Pool.Sync, a handle-less fsync) must cover RBD volumes as well
// as the pool's own data.
func (p *Pool) flushRBDHeads() error {
	p.mapMu.RLock()
	vols := slices.Collect(maps.Values(p.rbd))
	p.mapMu.RUnlock()
	var errs []error
	for _, v := range vols {
		v.mu.Lock()
		if v.img != nil {
			if err := v.img.Flush(); err != nil {
				errs = append(errs, fmt.Errorf("%w: flush volume %q: %v", ErrIO, v.rec.Name, err))
			}
		}
		v.mu.Unlock()
	}
	return errors.Join(errs...)
}
