package rowengine

import (
	"fmt"
	"maps"
	"slices"
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
	// SnapshotBytes is what the volume's snapshots own, hidden ones
	// included; TotalBytes adds the head's.
	SnapshotBytes uint64
	TotalBytes    uint64
	// Snapshots counts visible snapshots; ChainLength those on the head's
	// path, which MaxSnapshots limits.
	Snapshots    int
	ChainLength  int
	MaxSnapshots int
	// Parent is VOL@SNAP for a clone that still shares blocks with its
	// origin, else empty.
	Parent string
	// OpenHandles and Writers count open files on the mount.
	OpenHandles int
	Writers     int
	// RBDPool and RBDImage name an RBD volume's image in Ceph.
	RBDPool, RBDImage string
}

// PoolInfo describes the pool.
type PoolInfo struct {
	Dir       string
	BlockSize uint64
	Created   time.Time
	// UsedBytes is the space held by blocks in use (owned, or freed and
	// awaiting the commit that makes the free durable): what the capacity
	// limits, since a partly written block may fill without a new one.
	UsedBytes uint64
	// StoredBytes is what the owned blocks hold on the host: a partly
	// written block counts only its sectors. Volume and snapshot sizes
	// and what deletes free are in these terms.
	StoredBytes uint64
	// CapacityBytes is the configured capacity, or used plus what the host
	// filesystem has free.
	CapacityBytes uint64
	FreeBytes     uint64
	// ProvisionedBytes is the sum of the volumes' virtual sizes.
	ProvisionedBytes uint64
	Volumes          int
	// DataBytesWritten counts bytes written to the pool data file since
	// the pool was opened (guest writes, redirects, copies).
	DataBytesWritten uint64
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
	info, err := p.newVolume(name, size, nil)
	if err != nil {
		return VolumeInfo{}, err
	}
	p.log.Info("created volume", "name", name, "size", size)
	return info, nil
}

// newVolume creates a volume whose head starts under parent (a
// clone), or empty if parent is nil. REQUIRES: adminMu.
func (p *Pool) newVolume(name string, size uint64, parent *node) (VolumeInfo, error) {
	p.mapMu.Lock()
	defer p.mapMu.Unlock()
	if p.closed {
		return VolumeInfo{}, ErrClosed
	}
	if err := p.nameTakenLocked(name); err != nil {
		return VolumeInfo{}, err
	}
	now := p.opts.Now().UTC()
	var vrec blockmap.VolumeRecord
	var nrec blockmap.NodeRecord
	err := p.syncedUpdate(func(tx *blockmap.Txn) error {
		vid, err := tx.NextID()
		if err != nil {
			return err
		}
		nid, err := tx.NextID()
		if err != nil {
			return err
		}
		nrec = blockmap.NodeRecord{ID: nid, Volume: vid, Created: now}
		if parent != nil {
			nrec.Parent = parent.rec.ID
		}
		vrec = blockmap.VolumeRecord{ID: vid, Name: name, Size: size, Backend: BackendRow, Head: nid, Created: now}
		if err := tx.PutNode(nrec); err != nil {
			return err
		}
		return tx.PutVolume(vrec)
	})
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("create volume %q: %w", name, err)
	}
	p.crashPoint(CrashVolumeCreate)
	v := &volume{rec: vrec, nodes: map[uint64]*node{}}
	p.volumes[name] = v
	p.attachLocked(v, parent, nrec)
	return p.volumeInfoLocked(v), nil
}

// DeleteVolume removes a volume and frees its blocks. It refuses an open
// volume unless force is set; handles left open then fail with ErrNotFound.
// Snapshots a clone still reads stay, hidden, until the clone no longer
// needs them; the result names them. The rest is freed by a job.
func (p *Pool) DeleteVolume(name string, force bool) (VolumeDeleteResult, error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	k, err := p.kindOf(name)
	if err != nil {
		return VolumeDeleteResult{}, err
	}
	if _, isRBD := k.(rbdKind); isRBD {
		// RBD refuses to remove an image in a group; say what to do first.
		if g, err := p.GroupOf(name); err != nil {
			return VolumeDeleteResult{}, err
		} else if g != "" {
			return VolumeDeleteResult{}, fmt.Errorf("%w: volume %q is in snapshot group %q: rowctl group remove %s %s first", ErrBusy, name, g, g, name)
		}
	}
	res, err := k.remove(force)
	if err == nil {
		p.forgetPolicyVolume(name)
		p.forgetGroupVolume(name)
	}
	return res, err
}

func (l localVolume) remove(force bool) (VolumeDeleteResult, error) {
	p, v := l.p, l.v
	name := v.rec.Name
	opens := p.waitClosed(v, false)
	if opens > 0 && !force {
		return VolumeDeleteResult{}, fmt.Errorf("%w: volume %q is open (%d handles): stop the VM using it first, or force", ErrBusy, name, opens)
	}

	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.mapMu.Lock()
	head := v.head
	snaps := slices.DeleteFunc(p.nodesOfLocked(v), func(n *node) bool { return n == head })
	var res VolumeDeleteResult
	// Only a snapshot that more than one clone still reads stays (hidden):
	// one read by a single clone merges into it at once.
	res.KeptForClones = p.planDeleteLocked(append(slices.Clone(snaps), head)).KeptHidden
	// A job merges the volume's snapshots, and any deleted node the head
	// was keeping (a clone's hidden origin).
	needJob := len(snaps) > 0 || head.parent != nil && head.parent.rec.Hidden
	var jobRec blockmap.JobRecord
	err := p.syncedUpdate(func(tx *blockmap.Txn) error {
		for _, n := range snaps {
			rec := n.rec
			rec.Hidden = true
			if err := tx.PutNode(rec); err != nil {
				return err
			}
		}
		if needJob {
			var err error
			if jobRec, err = p.newJobTx(tx, JobVolumeDelete, name); err != nil {
				return err
			}
		}
		if err := tx.DeleteNode(head.rec.ID); err != nil {
			return err
		}
		return tx.DeleteVolume(name)
	})
	if err != nil {
		p.mapMu.Unlock()
		return VolumeDeleteResult{}, fmt.Errorf("delete volume %q: %w", name, err)
	}
	p.crashPoint(CrashVolumeDelete)
	v.deleted = true
	delete(p.volumes, name)
	freed := p.detachLocked(head)
	for _, n := range p.nodesOfLocked(v) {
		n.rec.Hidden = true
		n.vol = nil
	}
	var total uint64
	for _, n := range snaps {
		total += n.owned
	}
	// Unlocked before the purge, which waits for I/O in flight (inuse.go).
	p.mapMu.Unlock()
	headID := head.rec.ID
	run := func(j *job) error {
		if err := p.purge([]uint64{headID}, freed); err != nil {
			return err
		}
		return p.runReap(j)
	}
	if !needJob {
		// Nothing to merge: finish now.
		if err := p.purge([]uint64{headID}, freed); err != nil {
			return VolumeDeleteResult{}, fmt.Errorf("delete volume %q: %w", name, err)
		}
	} else {
		info := p.launch(jobRec, (uint64(len(freed))+total)*p.blockSize, run)
		res.Job = &info
	}
	p.log.Info("deleted volume", "name", name, "freed_blocks", len(freed), "snapshots", len(snaps), "kept_for_clones", len(res.KeptForClones))
	return res, nil
}

// VolumeDeleteResult says what a volume delete left to do.
type VolumeDeleteResult struct {
	// KeptForClones lists snapshots kept (hidden) because clones read them.
	KeptForClones []string
	// Job frees the volume's snapshots; nil if it had none.
	Job *JobInfo
}

// ResizeVolume changes a volume's virtual size. Shrinking discards the tail
// and is refused unless allowShrink is set.
func (p *Pool) ResizeVolume(name string, size uint64, allowShrink bool) (VolumeInfo, error) {
	if err := ValidateVolumeSize(size); err != nil {
		return VolumeInfo{}, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	k, err := p.kindOf(name)
	if err != nil {
		return VolumeInfo{}, err
	}
	if current := k.info().Size; size != current {
		// A refused resize must change nothing: no snapshot for it either.
		if size < current && !allowShrink {
			return VolumeInfo{}, fmt.Errorf("%w: shrinking %q from %d to %d bytes discards its tail; allow it with --shrink",
				ErrInvalidArgument, name, current, size)
		}
		if err := p.snapshotBefore(k, p.Settings().SnapshotBeforeResize, "pre-resize"); err != nil {
			return VolumeInfo{}, err
		}
	}
	return k.resize(size, allowShrink)
}

func (l localVolume) resize(size uint64, allowShrink bool) (VolumeInfo, error) {
	p, v := l.p, l.v
	name := v.rec.Name
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
	err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutVolume(rec) })
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

// Volume returns one volume's description. For an RBD volume it is what
// rowfs knows without asking Ceph (name, image, last size seen, opens):
// file attributes must not wait on a cluster. VolumeDetail asks.
func (p *Pool) Volume(name string) (VolumeInfo, error) {
	k, err := p.kindOf(name)
	if err != nil {
		return VolumeInfo{}, err
	}
	return k.info(), nil
}

func (l localVolume) info() VolumeInfo {
	l.p.mapMu.RLock()
	defer l.p.mapMu.RUnlock()
	return l.p.volumeInfoLocked(l.v)
}

// VolumeDetail is Volume plus, for an RBD volume, what Ceph reports:
// snapshot count, clone parent and capacity.
func (p *Pool) VolumeDetail(name string) (VolumeInfo, error) {
	k, err := p.kindOf(name)
	if err != nil {
		return VolumeInfo{}, err
	}
	return k.detail()
}

func (l localVolume) detail() (VolumeInfo, error) { return l.info(), nil }

// Volumes lists the volumes, local and RBD, ordered by name. RBD volumes
// are described as by Volume.
func (p *Pool) Volumes() []VolumeInfo {
	p.mapMu.RLock()
	out := make([]VolumeInfo, 0, len(p.volumes)+len(p.rbd))
	for _, v := range p.volumes {
		out = append(out, p.volumeInfoLocked(v))
	}
	rbd := slices.Collect(maps.Values(p.rbd))
	p.mapMu.RUnlock()
	for _, v := range rbd {
		out = append(out, p.rbdInfo(v))
	}
	sortByName(out)
	return out
}

func (p *Pool) volumeInfoLocked(v *volume) VolumeInfo {
	used, total := p.ownedBytes(v.head.owned, v.head.unwritten), p.ownedBytes(v.owned, v.unwritten)
	info := VolumeInfo{
		Name: v.rec.Name, ID: v.rec.ID, Size: v.rec.Size, Backend: v.rec.Backend, Created: v.rec.Created,
		BlockSize: p.blockSize, UsedBytes: used, SnapshotBytes: total - used, TotalBytes: total,
		ChainLength: len(chainLocked(v)), MaxSnapshots: p.maxSnapshotsLocked(v),
		OpenHandles: v.opens, Writers: v.writers,
	}
	for _, n := range v.nodes {
		if n != v.head && !n.rec.Hidden {
			info.Snapshots++
		}
	}
	if root := cloneRootLocked(v); root != nil {
		info.Parent = nodeRef(root.parent)
	}
	return info
}

// Info describes the pool.
func (p *Pool) Info() PoolInfo {
	used, _ := p.alloc.stats()
	info := PoolInfo{Dir: p.dir, BlockSize: p.blockSize, Created: p.created, UsedBytes: used * p.blockSize,
		DataBytesWritten: p.dataWritten.Load()}
	p.mapMu.RLock()
	for _, v := range p.volumes {
		info.ProvisionedBytes += v.rec.Size
	}
	var owned, unwritten uint64
	for _, n := range p.nodes {
		owned, unwritten = owned+n.owned, unwritten+n.unwritten
	}
	info.StoredBytes = p.ownedBytes(owned, unwritten)
	// RBD volumes count as volumes, but their bytes are Ceph's, not the pool's.
	info.Volumes = len(p.volumes) + len(p.rbd)
	p.mapMu.RUnlock()
	// Free is the smaller of what the capacity leaves and what the host
	// filesystem has beyond the metadata reserve, in whole blocks: the
	// figure at which writes start to get ErrNoSpace.
	hostFree := p.space.available() / p.blockSize * p.blockSize
	info.FreeBytes = hostFree
	if p.opts.Capacity > 0 {
		info.CapacityBytes = p.opts.Capacity / p.blockSize * p.blockSize
		info.FreeBytes = 0
		if info.CapacityBytes > info.UsedBytes {
			info.FreeBytes = min(info.CapacityBytes-info.UsedBytes, hostFree)
		}
	} else {
		info.CapacityBytes = info.UsedBytes + hostFree
	}
	return info
}
