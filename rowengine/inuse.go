package rowengine

// Guest I/O runs outside mapMu (Pool.inUse). What mapMu's exclusive
// holders change under it can then race with a pread or pwrite that
// resolved its block just before: a block it resolved may be unmapped
// (a discard, a rollback, a merge that freed it) or frozen into a
// snapshot. Neither is a problem while the I/O is in flight: an unmapped
// block is quarantined, not reused, and a write into a block frozen a
// moment ago belongs to the snapshot, as any write in flight at the cut
// may. Both become one once the pool moves on: a reused block would take
// a late write of another volume, and a snapshot synced and returned
// must not change afterwards. So those steps wait for the I/O first.

// waitInUse waits for every guest read and write that resolved its blocks
// before the call. It must not be called holding mapMu (the I/O it waits
// for needs mapMu to finish), nor holding inUse.
func (p *Pool) waitInUse() {
	p.inUse.Lock()
	//lint:ignore SA2001 the empty critical section is the wait
	p.inUse.Unlock()
}

// reuseFreed is reuse for blocks that were mapped (whose unmapping is now
// durable): it first waits for I/O that may still hold them.
func (p *Pool) reuseFreed(blocks []uint64) {
	if len(blocks) == 0 {
		return
	}
	p.waitInUse()
	p.reuse(blocks)
}
