package rowengine

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/blockmap"
)

// Ranged data sync: what a background commit makes durable.
//
// A commit must make durable the data its map changes point at before the
// changes themselves (DESIGN invariant 1): the blocks redirects, sector
// writes and fills wrote. It need not make durable the guest's in-place
// overwrites of blocks already durably mapped; those are the guest's to
// flush, and a guest flush (barrier) still syncs the whole data file. But
// fdatasync has no range: on a pool of many volumes, each background
// commit wrote back every volume's dirty pages, and the first writes
// after a snapshot, which commit every second, stalled behind writeback
// of data nothing asked to be durable (issue 15, item 3).
//
// So a background commit syncs only its blocks: sync_file_range starts
// and then waits for their writeback, and one fsync of a range (io_uring's
// IORING_OP_FSYNC, vfs_fsync_range, the call that an O_DSYNC write makes)
// commits the file's metadata their allocation changed and flushes the
// device's cache. Where io_uring is missing or refused, or the batch is
// too scattered, the commit falls back to fdatasync.

// maxSyncRuns bounds the runs a ranged sync issues; beyond it a commit
// syncs the whole file (two syscalls a run stop paying off).
const maxSyncRuns = 4096

// blockRun is a run of consecutive physical blocks.
type blockRun struct{ first, count uint64 }

// changedRuns is the runs of physical blocks changes map, in order.
func changedRuns(changes []blockmap.MapChange) []blockRun {
	var blocks []uint64
	for _, c := range changes {
		if !c.Delete && c.Phys != blockmap.ZeroBlock {
			blocks = append(blocks, c.Phys)
		}
	}
	slices.Sort(blocks)
	blocks = slices.Compact(blocks)
	var runs []blockRun
	for _, b := range blocks {
		if n := len(runs); n > 0 && runs[n-1].first+runs[n-1].count == b {
			runs[n-1].count++
			continue
		}
		runs = append(runs, blockRun{first: b, count: 1})
	}
	return runs
}

// syncDataRuns makes the runs of the data file durable. It reports false,
// having done nothing that needs undoing, if ranged sync is unavailable
// here (the caller then syncs the whole file).
func (p *Pool) syncDataRuns(runs []blockRun) (bool, error) {
	if len(runs) == 0 {
		return true, nil
	}
	if len(runs) > maxSyncRuns {
		return false, nil
	}
	ring := p.rangeSyncRing()
	if ring == nil {
		return false, nil
	}
	fd, bs := int(p.data.Fd()), int64(p.blockSize)
	// Start every run's writeback, then wait for each: the device works
	// on all of them at once.
	for _, flags := range []int{unix.SYNC_FILE_RANGE_WRITE, unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER} {
		for _, r := range runs {
			if err := unix.SyncFileRange(fd, int64(r.first)*bs, int64(r.count)*bs, flags); err != nil {
				return false, fmt.Errorf("%w: sync pool data file blocks %d+%d: %v", ErrIO, r.first, r.count, err)
			}
		}
	}
	// Their data is on the device; one ranged fdatasync commits the
	// metadata that writeback allocated and flushes the device's cache.
	r := runs[0]
	if err := ring.fdatasyncRange(fd, uint64(r.first)*uint64(bs), uint32(min(r.count*uint64(bs), 1<<31))); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			p.log.Info("ranged data sync refused by the host filesystem; commits sync the whole data file", "err", err)
			p.ringBroken.Store(true)
			return false, nil
		}
		return false, fmt.Errorf("%w: sync pool data file: %v", ErrIO, err)
	}
	return true, nil
}

// rangedSyncFilesystems are where a ranged fsync is known to commit all
// the file's metadata that earlier writeback changed: ext4 and XFS force
// their journal up to the inode's last such change whatever the range.
// Elsewhere (btrfs logs extents by range; FUSE has no range) commits sync
// the whole file.
var rangedSyncFilesystems = map[int64]string{0xEF53: "ext4", 0x58465342: "xfs"}

// rangeSyncRing is the pool's io_uring, set up on first use; nil where
// the data file's filesystem is not one of rangedSyncFilesystems, or the
// kernel has no io_uring or refuses it (io_uring_disabled, seccomp), said
// once in the log.
func (p *Pool) rangeSyncRing() *fsyncRing {
	if p.ringBroken.Load() {
		return nil
	}
	if p.ring == nil {
		var st unix.Statfs_t
		if err := unix.Fstatfs(int(p.data.Fd()), &st); err != nil || rangedSyncFilesystems[int64(st.Type)] == "" {
			p.log.Info("commits sync the whole data file: ranged data sync is used on ext4 and XFS only", "filesystem_magic", fmt.Sprintf("%#x", st.Type))
			p.ringBroken.Store(true)
			return nil
		}
		ring, err := newFsyncRing()
		if err != nil {
			p.log.Info("no io_uring for ranged data sync; commits sync the whole data file", "err", err)
			p.ringBroken.Store(true)
			return nil
		}
		p.ring = ring
		p.log.Info("background commits sync only the blocks they map (ranged data sync)", "filesystem", rangedSyncFilesystems[int64(st.Type)])
	}
	return p.ring
}

// fsyncRing is a one-entry io_uring that runs ranged fdatasyncs, one at a
// time. REQUIRES: commitMu for every call but close.
type fsyncRing struct {
	fd                   int
	sqRing, cqRing, sqes []byte // cqRing is sqRing with IORING_FEAT_SINGLE_MMAP
	cqMapped             bool   // cqRing is a mapping of its own
	sqHead, sqTail       *uint32
	sqMask               uint32
	sqArray              *uint32
	cqHead, cqTail       *uint32
	cqMask               uint32
	cqesOffset           uint32
}

// The kernel ABI of io_uring (include/uapi/linux/io_uring.h).
const (
	ioringOffSQRing       = 0
	ioringOffCQRing       = 0x8000000
	ioringOffSQEs         = 0x10000000
	ioringOpFsync         = 3
	ioringFsyncDatasync   = 1
	ioringEnterGetEvents  = 1
	ioringFeatSingleMmap  = 1
	sqeSize, cqeSize      = 64, 16
	ioringParamsSizeBytes = 120
)

type ioSQRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type ioCQRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type ioUringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  ioSQRingOffsets
	cqOff                                                                  ioCQRingOffsets
}

func newFsyncRing() (*fsyncRing, error) {
	var params ioUringParams
	if unsafe.Sizeof(params) != ioringParamsSizeBytes {
		return nil, fmt.Errorf("io_uring params are %d bytes, want %d", unsafe.Sizeof(params), ioringParamsSizeBytes)
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params)), 0)
	if errno != 0 {
		return nil, os.NewSyscallError("io_uring_setup", errno)
	}
	r := &fsyncRing{fd: int(fd)}
	fail := func(err error) (*fsyncRing, error) {
		r.close()
		return nil, err
	}
	sqSize := int(params.sqOff.array + params.sqEntries*4)
	cqSize := int(params.cqOff.cqes + params.cqEntries*cqeSize)
	if params.features&ioringFeatSingleMmap != 0 {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if r.sqRing, err = unix.Mmap(r.fd, ioringOffSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fail(fmt.Errorf("mmap io_uring submission ring: %w", err))
	}
	r.cqRing = r.sqRing
	if params.features&ioringFeatSingleMmap == 0 {
		if r.cqRing, err = unix.Mmap(r.fd, ioringOffCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			return fail(fmt.Errorf("mmap io_uring completion ring: %w", err))
		}
		r.cqMapped = true
	}
	if r.sqes, err = unix.Mmap(r.fd, ioringOffSQEs, int(params.sqEntries)*sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fail(fmt.Errorf("mmap io_uring entries: %w", err))
	}
	word := func(ring []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&ring[off])) }
	r.sqHead, r.sqTail, r.sqArray = word(r.sqRing, params.sqOff.head), word(r.sqRing, params.sqOff.tail), word(r.sqRing, params.sqOff.array)
	r.sqMask = *word(r.sqRing, params.sqOff.ringMask)
	r.cqHead, r.cqTail = word(r.cqRing, params.cqOff.head), word(r.cqRing, params.cqOff.tail)
	r.cqMask = *word(r.cqRing, params.cqOff.ringMask)
	r.cqesOffset = params.cqOff.cqes
	return r, nil
}

// fdatasyncRange runs vfs_fsync_range(fd, off, off+length, datasync) and
// waits for it.
func (r *fsyncRing) fdatasyncRange(fd int, off uint64, length uint32) error {
	tail := atomic.LoadUint32(r.sqTail)
	slot := tail & r.sqMask
	sqe := r.sqes[slot*sqeSize : (slot+1)*sqeSize]
	clear(sqe)
	sqe[0] = ioringOpFsync
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
	*(*uint64)(unsafe.Pointer(&sqe[8])) = off
	*(*uint32)(unsafe.Pointer(&sqe[24])) = length
	*(*uint32)(unsafe.Pointer(&sqe[28])) = ioringFsyncDatasync
	*(*uint64)(unsafe.Pointer(&sqe[32])) = uint64(tail) // user_data
	*(*uint32)(unsafe.Add(unsafe.Pointer(r.sqArray), 4*slot)) = slot
	atomic.StoreUint32(r.sqTail, tail+1)
	// Submit and wait. A signal (the Go runtime's preemption, say) can
	// interrupt either: submit again only while the kernel has not taken
	// the entry (the ring's head has not passed it), else wait on.
	for atomic.LoadUint32(r.cqTail) == atomic.LoadUint32(r.cqHead) {
		submit := uintptr(0)
		if atomic.LoadUint32(r.sqHead) == tail {
			submit = 1
		}
		if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), submit, 1, ioringEnterGetEvents, 0, 0); errno != 0 && errno != unix.EINTR {
			return os.NewSyscallError("io_uring_enter", errno)
		}
	}
	head := atomic.LoadUint32(r.cqHead)
	cqe := r.cqRing[r.cqesOffset+(head&r.cqMask)*cqeSize:]
	res := *(*int32)(unsafe.Pointer(&cqe[8]))
	atomic.StoreUint32(r.cqHead, head+1)
	if res < 0 {
		return unix.Errno(-res)
	}
	return nil
}

func (r *fsyncRing) close() error {
	if r.sqes != nil {
		unix.Munmap(r.sqes)
	}
	if r.cqMapped {
		unix.Munmap(r.cqRing)
	}
	if r.sqRing != nil {
		unix.Munmap(r.sqRing)
	}
	return unix.Close(r.fd)
}
