package rowengine

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// MemoryRBD is an RBD cluster in memory, with the semantics the
// real-cluster tests show (rowengine/rbd against Ceph 16): images with
// independent snapshots, protection and clones, copy-up flatten, a diff
// of what was written since a snapshot, an exclusive lock taken by the
// writing handle and moved by the next writer, and a writeback cache per
// open image that other clients do not see until it is flushed (as
// librbd's cache with policy writeback). It lets the engine's RBD volumes
// and the conformance suite run in every go test, without cgo; make test
// runs the same suite against a real cluster.
//
// A MemoryRBD is one client of its cluster; Client gives another one on
// the same images (a second host). Errors wrap the engine's sentinels as
// rowengine/rbd's do. Safe for concurrent use.
type MemoryRBD struct {
	state *memCluster
	id    int
}

type memCluster struct {
	mu      sync.Mutex
	pools   map[string]map[string]*memImage
	groups  map[string]map[string]*memGroup // pool → group
	clients int
}

// memGroup is an RBD group: its images and its group snapshots, each the
// members' views at one instant (in the group's namespace: not among the
// images' own snapshots).
type memGroup struct {
	images []string
	snaps  []memGroupSnap
}

type memGroupSnap struct {
	name  string
	views map[string]memView // image → its view
}

// memPage is the unit the memory cluster tracks writes in.
const memPage = 4096

// memObjectSize is the object size its images report (RBD's default).
const memObjectSize = 4 << 20

// memView is an image's content: its head's, or a snapshot's.
type memView struct {
	data []byte
	// gen is, per page, the write that last changed it (0: never written
	// here); alloc says whether the page holds data (false after a
	// discard, or if it was never written and reads through the parent).
	gen   []uint64
	alloc []bool
}

func newView(size uint64) memView {
	pages := (size + memPage - 1) / memPage
	return memView{data: make([]byte, size), gen: make([]uint64, pages), alloc: make([]bool, pages)}
}

func (v memView) clone() memView {
	return memView{data: slices.Clone(v.data), gen: slices.Clone(v.gen), alloc: slices.Clone(v.alloc)}
}

func (v *memView) resize(size uint64) {
	pages := int((size + memPage - 1) / memPage)
	if size < uint64(len(v.data)) {
		v.data, v.gen, v.alloc = v.data[:size], v.gen[:pages], v.alloc[:pages]
		return
	}
	v.data = append(v.data, make([]byte, size-uint64(len(v.data)))...)
	v.gen = append(v.gen, make([]uint64, pages-len(v.gen))...)
	v.alloc = append(v.alloc, make([]bool, pages-len(v.alloc))...)
}

type memSnap struct {
	id        uint64
	name      string
	created   time.Time
	view      memView
	protected bool
	children  []string // "pool/image" of clones
}

type memImage struct {
	pool, name string
	head       memView
	snaps      []*memSnap
	nextSnap   uint64
	nextGen    uint64
	parent     string // "pool/image@snap" of a clone, until flattened
	metadata   map[string]string
	opens      int
	lockHolder *memHandle // the handle holding the exclusive lock, or nil
}

// NewMemoryRBD returns an empty cluster with the given Ceph pools ("rbd"
// if none).
func NewMemoryRBD(pools ...string) *MemoryRBD {
	if len(pools) == 0 {
		pools = []string{"rbd"}
	}
	c := &memCluster{pools: map[string]map[string]*memImage{}, groups: map[string]map[string]*memGroup{}, clients: 1}
	for _, p := range pools {
		c.pools[p] = map[string]*memImage{}
		c.groups[p] = map[string]*memGroup{}
	}
	return &MemoryRBD{state: c, id: 1}
}

// Client returns another client of the same cluster, as a second host's
// daemon would be.
func (m *MemoryRBD) Client() *MemoryRBD {
	m.state.mu.Lock()
	defer m.state.mu.Unlock()
	m.state.clients++
	return &MemoryRBD{state: m.state, id: m.state.clients}
}

// image finds pool/image. REQUIRES: state.mu.
func (c *memCluster) image(pool, image string) (*memImage, error) {
	images, ok := c.pools[pool]
	if !ok {
		return nil, fmt.Errorf("%w: Ceph pool %q", ErrNotFound, pool)
	}
	img, ok := images[image]
	if !ok {
		return nil, fmt.Errorf("%w: image %s/%s", ErrNotFound, pool, image)
	}
	return img, nil
}

func (m *MemoryRBD) CreateImage(pool, image string, size uint64) error {
	c := m.state
	c.mu.Lock()
	defer c.mu.Unlock()
	images, ok := c.pools[pool]
	if !ok {
		return fmt.Errorf("%w: Ceph pool %q", ErrNotFound, pool)
	}
	if images[image] != nil {
		return fmt.Errorf("%w: image %s/%s", ErrExists, pool, image)
	}
	images[image] = &memImage{pool: pool, name: image, head: newView(size), metadata: map[string]string{}}
	return nil
}

func (m *MemoryRBD) RemoveImage(pool, image string) error {
	c := m.state
	c.mu.Lock()
	defer c.mu.Unlock()
	img, err := c.image(pool, image)
	if err != nil {
		return err
	}
	switch {
	case len(img.snaps) > 0:
		return fmt.Errorf("%w: image %s/%s has snapshots", ErrBusy, pool, image)
	case img.opens > 0:
		return fmt.Errorf("%w: image %s/%s still has watchers", ErrBusy, pool, image)
	}
	if img.parent != "" {
		c.dropChild(img)
	}
	delete(c.pools[pool], image)
	return nil
}

// dropChild removes a clone from its parent snapshot's children.
// REQUIRES: state.mu.
func (c *memCluster) dropChild(img *memImage) {
	if parent, snap := c.parentOf(img); snap != nil {
		snap.children = slices.DeleteFunc(snap.children, func(s string) bool { return s == img.pool+"/"+img.name })
		_ = parent
	}
}

// parentOf resolves a clone's parent snapshot. REQUIRES: state.mu.
func (c *memCluster) parentOf(img *memImage) (*memImage, *memSnap) {
	if img.parent == "" {
		return nil, nil
	}
	var pool, image, snap string
	spec, snap, _ := cutLast(img.parent, "@")
	pool, image, _ = cutLast(spec, "/")
	parent, err := c.image(pool, image)
	if err != nil {
		return nil, nil
	}
	return parent, parent.snap(snap)
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func (img *memImage) snap(name string) *memSnap {
	for _, s := range img.snaps {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (m *MemoryRBD) OpenImage(pool, image string) (RBDImage, error) {
	return m.open(pool, image, "", false)
}

// OpenSnapshot opens snap read-only; snap "" opens the head read-only.
func (m *MemoryRBD) OpenSnapshot(pool, image, snap string) (RBDImage, error) {
	return m.open(pool, image, snap, true)
}

func (m *MemoryRBD) open(pool, image, snap string, readOnly bool) (RBDImage, error) {
	c := m.state
	c.mu.Lock()
	defer c.mu.Unlock()
	img, err := c.image(pool, image)
	if err != nil {
		return nil, err
	}
	if snap != "" && img.snap(snap) == nil {
		return nil, fmt.Errorf("%w: snapshot %s/%s@%s", ErrNotFound, pool, image, snap)
	}
	img.opens++
	spec := pool + "/" + image
	if snap != "" {
		spec += "@" + snap
	}
	return &memHandle{client: m, img: img, snapName: snap, readOnly: readOnly, spec: spec}, nil
}

// memHandle is one open image. Writes wait in its cache (pending) until a
// flush, close, or an operation that flushes first, as librbd's
// writeback cache does; this handle reads them, other handles do not.
type memHandle struct {
	client   *MemoryRBD
	img      *memImage
	snapName string
	readOnly bool
	spec     string
	closed   bool
	pending  []memWrite
}

type memWrite struct {
	off  uint64
	data []byte
}

// view is what this handle reads, without its cache. REQUIRES: state.mu.
func (h *memHandle) view() (*memView, error) {
	if h.closed {
		return nil, fmt.Errorf("%w: %s is closed", ErrInvalidArgument, h.spec)
	}
	if h.snapName == "" {
		return &h.img.head, nil
	}
	s := h.img.snap(h.snapName)
	if s == nil {
		return nil, fmt.Errorf("%w: snapshot %s was removed", ErrNotFound, h.spec)
	}
	return &s.view, nil
}

func (h *memHandle) lock() func() {
	h.client.state.mu.Lock()
	return h.client.state.mu.Unlock
}

func (h *memHandle) ReadAt(buf []byte, off int64) (int, error) {
	defer h.lock()()
	v, err := h.view()
	if err != nil {
		return 0, err
	}
	if off < 0 || off >= int64(len(v.data)) {
		return 0, fmt.Errorf("%w: read of %s at %d beyond its end", ErrInvalidArgument, h.spec, off)
	}
	n := copy(buf, v.data[off:])
	for _, w := range h.pending {
		overlay(buf[:n], off, w)
	}
	return n, nil
}

// overlay copies the part of w that falls in buf (which starts at off).
func overlay(buf []byte, off int64, w memWrite) {
	start, end := max(int64(w.off), off), min(int64(w.off)+int64(len(w.data)), off+int64(len(buf)))
	if start < end {
		copy(buf[start-off:end-off], w.data[start-int64(w.off):end-int64(w.off)])
	}
}

func (h *memHandle) WriteAt(data []byte, off int64) (int, error) {
	defer h.lock()()
	v, err := h.view()
	if err != nil {
		return 0, err
	}
	if h.readOnly {
		return 0, fmt.Errorf("%w: %s is open read-only", ErrReadOnly, h.spec)
	}
	if off < 0 || off+int64(len(data)) > int64(len(v.data)) {
		return 0, fmt.Errorf("%w: write of %s at %d+%d beyond its end", ErrInvalidArgument, h.spec, off, len(data))
	}
	h.img.lockHolder = h // librbd asks the holder to hand the lock over
	h.pending = append(h.pending, memWrite{off: uint64(off), data: slices.Clone(data)})
	return len(data), nil
}

// flush applies the cache to the image. REQUIRES: state.mu.
func (h *memHandle) flush() {
	for _, w := range h.pending {
		h.img.apply(w.off, w.data, true)
	}
	h.pending = nil
}

// apply writes data (nil: a discard of length) at off into the head.
func (img *memImage) apply(off uint64, data []byte, alloc bool) {
	img.nextGen++
	copy(img.head.data[off:], data)
	for p := off / memPage; p*memPage < off+uint64(len(data)); p++ {
		img.head.gen[p], img.head.alloc[p] = img.nextGen, alloc
	}
}

func (h *memHandle) Flush() error {
	defer h.lock()()
	if _, err := h.view(); err != nil {
		return err
	}
	h.flush()
	return nil
}

func (h *memHandle) WriteZeroes(off, length uint64) error {
	defer h.lock()()
	v, err := h.view()
	if err != nil {
		return err
	}
	if h.readOnly {
		return fmt.Errorf("%w: %s is open read-only", ErrReadOnly, h.spec)
	}
	if off+length > uint64(len(v.data)) {
		return fmt.Errorf("%w: zero of %s at %d+%d beyond its end", ErrInvalidArgument, h.spec, off, length)
	}
	h.img.lockHolder = h
	h.flush()
	// Whole pages are discarded (no data); partial ones written with zeros.
	h.img.apply(off, make([]byte, length), true)
	for p := (off + memPage - 1) / memPage; (p+1)*memPage <= off+length; p++ {
		h.img.head.alloc[p] = false
	}
	return nil
}

func (h *memHandle) Size() (uint64, error) {
	defer h.lock()()
	v, err := h.view()
	if err != nil {
		return 0, err
	}
	return uint64(len(v.data)), nil
}

func (h *memHandle) ObjectSize() (uint64, error) { return memObjectSize, nil }

func (h *memHandle) Resize(size uint64) error {
	defer h.lock()()
	if _, err := h.view(); err != nil {
		return err
	}
	if h.readOnly {
		return fmt.Errorf("%w: %s is open read-only", ErrReadOnly, h.spec)
	}
	h.flush()
	h.img.head.resize(size)
	return nil
}

func (h *memHandle) Snapshots() ([]RBDSnapshot, error) {
	defer h.lock()()
	if _, err := h.view(); err != nil {
		return nil, err
	}
	out := make([]RBDSnapshot, len(h.img.snaps))
	for i, s := range h.img.snaps {
		out[i] = RBDSnapshot{ID: s.id, Name: s.name, Size: uint64(len(s.view.data)), Created: s.created}
	}
	return out, nil
}

// CreateSnapshot flushes the cache first, as librbd does.
func (h *memHandle) CreateSnapshot(name string) error {
	defer h.lock()()
	if _, err := h.view(); err != nil {
		return err
	}
	if h.img.snap(name) != nil {
		return fmt.Errorf("%w: snapshot %s@%s", ErrExists, h.spec, name)
	}
	h.flush()
	h.img.nextSnap++
	h.img.snaps = append(h.img.snaps, &memSnap{id: h.img.nextSnap, name: name, created: time.Now().UTC(), view: h.img.head.clone()})
	return nil
}

func (h *memHandle) findSnap(name string) (*memSnap, error) {
	if _, err := h.view(); err != nil {
		return nil, err
	}
	s := h.img.snap(name)
	if s == nil {
		return nil, fmt.Errorf("%w: snapshot %s@%s", ErrNotFound, h.spec, name)
	}
	return s, nil
}

// RemoveSnapshot unprotects the snapshot first if it has no clones.
func (h *memHandle) RemoveSnapshot(name string) error {
	defer h.lock()()
	s, err := h.findSnap(name)
	if err != nil {
		return err
	}
	if len(s.children) > 0 {
		return fmt.Errorf("%w: unprotect %s@%s: it has clones", ErrBusy, h.spec, name)
	}
	h.img.snaps = slices.DeleteFunc(h.img.snaps, func(x *memSnap) bool { return x == s })
	return nil
}

// RollbackSnapshot fails (EROFS, as librbd's) while another handle holds
// the exclusive lock.
func (h *memHandle) RollbackSnapshot(name string) error {
	defer h.lock()()
	s, err := h.findSnap(name)
	if err != nil {
		return err
	}
	if holder := h.img.lockHolder; holder != nil && holder != h && !holder.closed {
		return fmt.Errorf("%w: roll back %s to %s: the image is locked by another client", ErrBusy, h.spec, name)
	}
	h.pending = nil // overwritten by the rollback
	h.img.head = s.view.clone()
	return nil
}

// CloneSnapshot protects snap and makes image a clone of it in the same
// pool. The clone reads its parent's data until it writes its own.
func (h *memHandle) CloneSnapshot(snap, image string) error {
	defer h.lock()()
	s, err := h.findSnap(snap)
	if err != nil {
		return err
	}
	c := h.client.state
	if c.pools[h.img.pool][image] != nil {
		return fmt.Errorf("%w: image %s/%s", ErrExists, h.img.pool, image)
	}
	s.protected = true
	view := s.view.clone()
	clear(view.gen)
	clear(view.alloc) // nothing of its own: every page reads through
	c.pools[h.img.pool][image] = &memImage{pool: h.img.pool, name: image, head: view, metadata: map[string]string{},
		parent: h.img.pool + "/" + h.img.name + "@" + snap}
	s.children = append(s.children, h.img.pool+"/"+image)
	return nil
}

// Flatten copies up every page the clone still reads from its parent.
func (h *memHandle) Flatten(progress func(done, total uint64)) error {
	defer h.lock()()
	if _, err := h.view(); err != nil {
		return err
	}
	if h.img.parent == "" {
		return fmt.Errorf("%w: %s is not a clone", ErrInvalidArgument, h.spec)
	}
	h.flush()
	h.img.nextGen++
	for p := range h.img.head.alloc {
		if h.img.head.gen[p] == 0 {
			h.img.head.gen[p], h.img.head.alloc[p] = h.img.nextGen, true
		}
	}
	h.client.state.dropChild(h.img)
	h.img.parent = ""
	size := uint64(len(h.img.head.data))
	progress(size, size)
	return nil
}

func (h *memHandle) Parent() (string, error) {
	defer h.lock()()
	if _, err := h.view(); err != nil {
		return "", err
	}
	return h.img.parent, nil
}

func (h *memHandle) Children(snap string) ([]string, error) {
	defer h.lock()()
	s, err := h.findSnap(snap)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(s.children)
	sort.Strings(out)
	return out, nil
}

// Diff reports the pages of this handle's view that hold data and were
// written after snapshot from ("": at all), parent excluded, as RBD's
// diff-iterate with whole objects off; adjacent pages merge into one
// extent.
func (h *memHandle) Diff(from string, fn func(off, length uint64) error) error {
	h.client.state.mu.Lock()
	v, err := h.view()
	if err != nil {
		h.client.state.mu.Unlock()
		return err
	}
	h.flush()
	var base *memView
	if from != "" {
		s := h.img.snap(from)
		if s == nil {
			h.client.state.mu.Unlock()
			return fmt.Errorf("%w: snapshot %s@%s", ErrNotFound, h.spec, from)
		}
		base = &s.view
	}
	size := uint64(len(v.data))
	var extents [][2]uint64
	for p := range v.gen {
		changed := v.gen[p] != 0 && (base == nil || p >= len(base.gen) || v.gen[p] != base.gen[p])
		if !changed || !v.alloc[p] {
			continue
		}
		off := uint64(p) * memPage
		length := min(memPage, size-off)
		if n := len(extents); n > 0 && extents[n-1][0]+extents[n-1][1] == off {
			extents[n-1][1] += length
		} else {
			extents = append(extents, [2]uint64{off, length})
		}
	}
	h.client.state.mu.Unlock()
	for _, e := range extents {
		if err := fn(e[0], e[1]); err != nil {
			return err
		}
	}
	return nil
}

// LockOwners names the live handle holding the exclusive lock by its
// client, as "client.N (memory)".
func (h *memHandle) LockOwners() ([]string, error) {
	defer h.lock()()
	if holder := h.img.lockHolder; holder != nil && !holder.closed {
		return []string{fmt.Sprintf("client.%d (memory)", holder.client.id)}, nil
	}
	return nil, nil
}

func (h *memHandle) SetMetadata(key, value string) error {
	defer h.lock()()
	h.img.metadata[key] = value
	return nil
}

func (h *memHandle) Metadata(key string) (string, error) {
	defer h.lock()()
	return h.img.metadata[key], nil
}

func (h *memHandle) RemoveMetadata(key string) error {
	defer h.lock()()
	if _, ok := h.img.metadata[key]; !ok {
		return fmt.Errorf("%w: metadata %s of %s", ErrNotFound, key, h.spec)
	}
	delete(h.img.metadata, key)
	return nil
}

// Close flushes the cache and releases the lock, as rbd_close does.
func (h *memHandle) Close() error {
	defer h.lock()()
	if h.closed {
		return nil
	}
	h.flush()
	h.closed = true
	h.img.opens--
	if h.img.lockHolder == h {
		h.img.lockHolder = nil
	}
	return nil
}

// withGroup runs fn on pool/group under the cluster's lock.
func (m *MemoryRBD) withGroup(pool, group string, fn func(c *memCluster, g *memGroup) error) error {
	c := m.state
	c.mu.Lock()
	defer c.mu.Unlock()
	g, err := c.groupOf(pool, group)
	if err != nil {
		return err
	}
	return fn(c, g)
}

// snapIndex is where snap is in g.snaps; ErrNotFound if it is not.
func (g *memGroup) snapIndex(pool, group, snap string) (int, error) {
	i := slices.IndexFunc(g.snaps, func(s memGroupSnap) bool { return s.name == snap })
	if i < 0 {
		return 0, fmt.Errorf("%w: group snapshot %s/%s@%s", ErrNotFound, pool, group, snap)
	}
	return i, nil
}

// groupOf finds pool/group. REQUIRES: state.mu.
func (c *memCluster) groupOf(pool, group string) (*memGroup, error) {
	groups, ok := c.groups[pool]
	if !ok {
		return nil, fmt.Errorf("%w: Ceph pool %q", ErrNotFound, pool)
	}
	g := groups[group]
	if g == nil {
		return nil, fmt.Errorf("%w: group %s/%s", ErrNotFound, pool, group)
	}
	return g, nil
}

func (m *MemoryRBD) CreateGroup(pool, group string) error {
	c := m.state
	c.mu.Lock()
	defer c.mu.Unlock()
	groups, ok := c.groups[pool]
	if !ok {
		return fmt.Errorf("%w: Ceph pool %q", ErrNotFound, pool)
	}
	if groups[group] != nil {
		return fmt.Errorf("%w: group %s/%s", ErrExists, pool, group)
	}
	groups[group] = &memGroup{}
	return nil
}

func (m *MemoryRBD) RemoveGroup(pool, group string) error {
	return m.withGroup(pool, group, func(c *memCluster, _ *memGroup) error {
		delete(c.groups[pool], group)
		return nil
	})
}

func (m *MemoryRBD) GroupAddImage(pool, group, image string) error {
	return m.withGroup(pool, group, func(c *memCluster, g *memGroup) error {
		if _, err := c.image(pool, image); err != nil {
			return err
		}
		for name, other := range c.groups[pool] {
			if slices.Contains(other.images, image) {
				return fmt.Errorf("%w: image %s/%s is in group %s already", ErrExists, pool, image, name)
			}
		}
		g.images = append(g.images, image)
		return nil
	})
}

func (m *MemoryRBD) GroupRemoveImage(pool, group, image string) error {
	return m.withGroup(pool, group, func(c *memCluster, g *memGroup) error {
		if !slices.Contains(g.images, image) {
			return fmt.Errorf("%w: image %s/%s is not in group %s", ErrNotFound, pool, image, group)
		}
		g.images = slices.DeleteFunc(g.images, func(i string) bool { return i == image })
		return nil
	})
}

// GroupSnapshot takes every image's flushed view at one instant (the
// cluster's lock is the instant).
func (m *MemoryRBD) GroupSnapshot(pool, group, snap string) error {
	return m.withGroup(pool, group, func(c *memCluster, g *memGroup) error {
		if slices.ContainsFunc(g.snaps, func(s memGroupSnap) bool { return s.name == snap }) {
			return fmt.Errorf("%w: group snapshot %s/%s@%s", ErrExists, pool, group, snap)
		}
		gs := memGroupSnap{name: snap, views: map[string]memView{}}
		for _, name := range g.images {
			img, err := c.image(pool, name)
			if err != nil {
				return err
			}
			gs.views[name] = img.head.clone()
		}
		g.snaps = append(g.snaps, gs)
		return nil
	})
}

func (m *MemoryRBD) GroupSnapshots(pool, group string) ([]string, error) {
	var out []string
	err := m.withGroup(pool, group, func(_ *memCluster, g *memGroup) error {
		for _, s := range g.snaps {
			out = append(out, s.name)
		}
		return nil
	})
	return out, err
}

// GroupRollback refuses, as RBD does, if the group's images are not those
// the snapshot was taken of, or one of them is locked by a live writer.
func (m *MemoryRBD) GroupRollback(pool, group, snap string) error {
	return m.withGroup(pool, group, func(c *memCluster, g *memGroup) error {
		i, err := g.snapIndex(pool, group, snap)
		if err != nil {
			return err
		}
		gs := g.snaps[i]
		if len(gs.views) != len(g.images) || slices.ContainsFunc(g.images, func(n string) bool { _, ok := gs.views[n]; return !ok }) {
			return fmt.Errorf("%w: roll group %s/%s back to %s: its images changed since", ErrInvalidArgument, pool, group, snap)
		}
		for _, name := range g.images {
			img, err := c.image(pool, name)
			if err != nil {
				return err
			}
			if h := img.lockHolder; h != nil && !h.closed {
				return fmt.Errorf("%w: roll group %s/%s back to %s: image %s is locked by another client", ErrBusy, pool, group, snap, name)
			}
		}
		for _, name := range g.images {
			img, _ := c.image(pool, name)
			img.head = gs.views[name].clone()
		}
		return nil
	})
}

func (m *MemoryRBD) GroupRemoveSnapshot(pool, group, snap string) error {
	return m.withGroup(pool, group, func(c *memCluster, g *memGroup) error {
		i, err := g.snapIndex(pool, group, snap)
		if err != nil {
			return err
		}
		g.snaps = slices.Delete(g.snaps, i, i+1)
		return nil
	})
}
