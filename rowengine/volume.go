package rowengine

import (
	"fmt"
	"time"

	"github.com/rowfs/rowfs/blockmap"
)

// BackendRow is the backend name of volumes whose blocks live in the pool.
const BackendRow = "row"

// VolumeInfo describes a volume for the control API and xattrs.
type VolumeInfo struct {
	Name      string
	ID        uint64
	Size      uint64
	Backend   string
	Created   time.Time
	BlockSize uint64
	// UsedBytes is what the head node owns (its own, incremental blocks).
	UsedBytes uint64
	// OpenHandles and Writers count open files on the mount.
	OpenHandles int
	Writers     int
}

// PoolInfo describes the pool.
type PoolInfo struct {
	Dir       string
	BlockSize uint64
	Created   time.Time
	// UsedBytes is the space held by blocks in use (owned, or freed and
	// awaiting the commit that makes the free durable).
	UsedBytes uint64
	// CapacityBytes is the configured capacity, or used plus what the host
	// filesystem has free.
	CapacityBytes uint64
	FreeBytes     uint64
	// ProvisionedBytes is the sum of the volumes' virtual sizes.
	ProvisionedBytes uint64
	Volumes          int
}

// Overcommit is provisioned over capacity (1.0 = fully provisioned).
func (i PoolInfo) Overcommit() float64 {
	if i.CapacityBytes == 0 {
		return 0
	}
	return float64(i.ProvisionedBytes) / float64(i.CapacityBytes)
}

// CreateVolume creates an empty volume of the given virtual size.
func (p *Pool) CreateVolume(name string, size uint64) (VolumeInfo, error) {
	if err := ValidateVolumeName(name); err != nil {
		return VolumeInfo{}, err
	}
	if err := ValidateVolumeSize(size); err != nil {
		return VolumeInfo{}, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	p.mapMu.RLock()
	_, exists := p.volumes[name]
	closed := p.closed
	p.mapMu.RUnlock()
	if closed {
		return VolumeInfo{}, ErrClosed
	}
	if exists {
		return VolumeInfo{}, fmt.Errorf("%w: volume %q", ErrExists, name)
	}
	now := p.opts.Now().UTC()
	var vrec blockmap.VolumeRecord
	var nrec blockmap.NodeRecord
	err := p.store.Update(func(tx *blockmap.Txn) error {
		vid, err := tx.NextID()
		if err != nil {
			return err
		}
		nid, err := tx.NextID()
		if err != nil {
			return err
		}
		nrec = blockmap.NodeRecord{ID: nid, Volume: vid, Created: now}
		vrec = blockmap.VolumeRecord{ID: vid, Name: name, Size: size, Backend: BackendRow, Head: nid, Created: now}
		if err := tx.PutNode(nrec); err != nil {
			return err
		}
		return tx.PutVolume(vrec)
	})
	if err == nil {
		err = p.store.Sync()
	}
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("create volume %q: %w", name, err)
	}
	p.mapMu.Lock()
	head := &node{rec: nrec}
	p.ensureTable(head)
	p.nodes[nrec.ID] = head
	v := &volume{rec: vrec, head: head}
	p.volumes[name] = v
	info := p.volumeInfoLocked(v)
	p.mapMu.Unlock()
	p.log.Info("created volume", "name", name, "size", size)
	return info, nil
}

// DeleteVolume removes a volume and frees its blocks. It refuses an open
// volume unless force is set; handles left open then fail with ErrNotFound.
func (p *Pool) DeleteVolume(name string, force bool) error {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	v, err := p.lookup(name)
	if err != nil {
		return err
	}
	p.mapMu.RLock()
	opens := v.opens
	p.mapMu.RUnlock()
	if opens > 0 && !force {
		return fmt.Errorf("%w: volume %q is open (%d handles): stop the VM using it first, or force", ErrBusy, name, opens)
	}

	// Hold commitMu throughout: no batch with this volume's entries may be
	// in flight, and blocks freed here must not be reused before the
	// unmapping below is durable.
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.mapMu.Lock()
	v.deleted = true
	delete(p.volumes, name)
	var victims []*node
	for _, n := range p.nodes {
		if n.rec.Volume == v.rec.ID {
			victims = append(victims, n)
		}
	}
	gone := map[uint64]bool{}
	var freed []uint64
	for _, n := range victims {
		gone[n.rec.ID] = true
		delete(p.nodes, n.rec.ID)
		n.table.each(^uint64(0), func(_ uint64, e entry) {
			if e.owner == n.rec.ID && e.phys != blockmap.ZeroBlock {
				freed = append(freed, e.phys)
			}
		})
	}
	kept := p.pending[:0]
	for _, c := range p.pending {
		if !gone[c.Key.Node] {
			kept = append(kept, c)
		}
	}
	p.pending = kept
	p.mapMu.Unlock()

	err = p.store.Update(func(tx *blockmap.Txn) error {
		for _, n := range victims {
			if err := tx.DeleteNode(n.rec.ID); err != nil {
				return err
			}
		}
		return tx.DeleteVolume(name)
	})
	for _, n := range victims {
		if err == nil {
			// A crash before this finishes leaves orphaned entries, which
			// the next Open removes.
			err = p.store.DeleteNodeMappings(n.rec.ID)
		}
	}
	if err == nil {
		err = p.store.Sync()
	}
	if err != nil {
		return fmt.Errorf("delete volume %q: %w", name, err)
	}
	p.alloc.release(freed)
	p.punchHoles(freed)
	p.log.Info("deleted volume", "name", name, "freed_blocks", len(freed))
	return nil
}

// ResizeVolume changes a volume's virtual size. Shrinking discards the tail
// and is refused unless allowShrink is set.
func (p *Pool) ResizeVolume(name string, size uint64, allowShrink bool) (VolumeInfo, error) {
	if err := ValidateVolumeSize(size); err != nil {
		return VolumeInfo{}, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	v, err := p.lookup(name)
	if err != nil {
		return VolumeInfo{}, err
	}
	p.mapMu.Lock()
	old := v.rec.Size
	if size < old {
		if !allowShrink {
			p.mapMu.Unlock()
			return VolumeInfo{}, fmt.Errorf("%w: shrinking %q from %d to %d bytes discards its tail; allow it with --shrink",
				ErrInvalidArgument, name, old, size)
		}
		// Writers see the smaller size at once, so nothing lands in the
		// tail while it is being discarded.
		v.rec.Size = size
	}
	p.mapMu.Unlock()
	if size < old {
		if err := p.zeroRange(v, size, old-size, true); err != nil {
			return VolumeInfo{}, err
		}
		if err := p.commit(); err != nil {
			return VolumeInfo{}, err
		}
	}
	rec := v.rec
	rec.Size = size
	err = p.store.Update(func(tx *blockmap.Txn) error { return tx.PutVolume(rec) })
	if err == nil {
		err = p.store.Sync()
	}
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("resize volume %q: %w", name, err)
	}
	p.mapMu.Lock()
	v.rec.Size = size
	info := p.volumeInfoLocked(v)
	p.mapMu.Unlock()
	p.log.Info("resized volume", "name", name, "from", old, "to", size)
	return info, nil
}

func (p *Pool) lookup(name string) (*volume, error) {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	if p.closed {
		return nil, ErrClosed
	}
	v := p.volumes[name]
	if v == nil {
		return nil, fmt.Errorf("%w: volume %q", ErrNotFound, name)
	}
	return v, nil
}

// Volume returns one volume's description.
func (p *Pool) Volume(name string) (VolumeInfo, error) {
	v, err := p.lookup(name)
	if err != nil {
		return VolumeInfo{}, err
	}
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	return p.volumeInfoLocked(v), nil
}

// Volumes lists the volumes, ordered by name.
func (p *Pool) Volumes() []VolumeInfo {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	out := make([]VolumeInfo, 0, len(p.volumes))
	for _, v := range p.volumes {
		out = append(out, p.volumeInfoLocked(v))
	}
	sortByName(out)
	return out
}

func (p *Pool) volumeInfoLocked(v *volume) VolumeInfo {
	return VolumeInfo{
		Name: v.rec.Name, ID: v.rec.ID, Size: v.rec.Size, Backend: v.rec.Backend, Created: v.rec.Created,
		BlockSize: p.blockSize, UsedBytes: v.head.owned * p.blockSize, OpenHandles: v.opens, Writers: v.writers,
	}
}

// Info describes the pool.
func (p *Pool) Info() PoolInfo {
	used, _ := p.alloc.stats()
	info := PoolInfo{Dir: p.dir, BlockSize: p.blockSize, Created: p.created, UsedBytes: used * p.blockSize}
	p.mapMu.RLock()
	for _, v := range p.volumes {
		info.ProvisionedBytes += v.rec.Size
	}
	info.Volumes = len(p.volumes)
	p.mapMu.RUnlock()
	if p.opts.Capacity > 0 {
		info.CapacityBytes = p.opts.Capacity / p.blockSize * p.blockSize
	} else {
		info.CapacityBytes = info.UsedBytes + hostFree(p.dir)
	}
	if info.CapacityBytes > info.UsedBytes {
		info.FreeBytes = info.CapacityBytes - info.UsedBytes
	}
	return info
}
