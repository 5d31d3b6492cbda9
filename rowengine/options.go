package rowengine

import (
	"fmt"
	"log/slog"
	"time"
)

// Block size limits and default (DESIGN: fixed when the pool is created).
const (
	DefaultBlockSize = 64 << 10
	MinBlockSize     = 4 << 10
	MaxBlockSize     = 1 << 20
	// MaxVolumeSize bounds a volume's virtual size (16 TiB). The in-memory
	// table grows with the highest written block, so the bound keeps its
	// page index under 8 MiB even at the smallest block size.
	MaxVolumeSize = 16 << 40
	// DefaultMaxSnapshots is the default chain limit (ZStack's and the
	// design's figure); MaxChainLimit bounds what may be configured.
	DefaultMaxSnapshots = 128
	MaxChainLimit       = 4096
	// SectorSize: volume sizes are multiples of it, as qemu's raw driver needs.
	SectorSize = 512
)

// Options configure a Pool. Zero values take the documented defaults.
type Options struct {
	// BlockSize is used only when the pool is created. Default 64 KiB;
	// a power of two from 4 KiB to 1 MiB. Opening an existing pool keeps
	// its own block size whatever this says.
	BlockSize uint32
	// Capacity caps the pool data file, in bytes. Default 0: the host
	// filesystem is the only limit.
	Capacity uint64
	// CommitInterval is how often unsynced metadata is committed in the
	// background (a guest fsync commits at once). Default 1s.
	CommitInterval time.Duration
	// CommitBatch commits early when this many map changes are pending.
	// Default 65536.
	CommitBatch int
	// MaxSnapshots is the default chain limit: how many snapshots may lie
	// on the path from a volume's head to its root. Default 128.
	MaxSnapshots int
	// Logger receives operational messages. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock, injectable for tests. Default time.Now.
	Now func() time.Time
	// MetadataReserve is host filesystem space that data blocks never
	// take, so Badger always has room and snapshot or volume deletes can
	// run to free space when the host filesystem fills. Default 64 MiB.
	MetadataReserve uint64
	// CloseGrace is how long volume delete and rollback wait for open
	// handles to close before refusing: the kernel sends a FUSE release
	// after close(2) has returned, so a VM that just stopped may still
	// hold one for a moment. Default 2s.
	CloseGrace time.Duration
	// RBD connects RBD volumes to Ceph (rowengine/rbd implements it).
	// Default nil: RBD volumes stay listed, and report ErrUnavailable.
	RBD RBDCluster
	// RBDMaxSnapshots is the chain limit of RBD volumes (rowctl volume set
	// overrides it per volume). Default 32.
	RBDMaxSnapshots int
	// CommitObserver, if set, is told how long each metadata commit took
	// (data sync, map changes, Badger sync) and whether it failed: the
	// daemon's metrics. Called with commitMu held: it must be quick.
	CommitObserver func(took time.Duration, err error)
	// CrashHook, for crash tests only, is called at every crash point (see
	// CrashPoints); a test hook kills the process there. Default nil.
	CrashHook func(point string)
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.BlockSize == 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = time.Second
	}
	if o.RBDMaxSnapshots == 0 {
		o.RBDMaxSnapshots = DefaultRBDMaxSnapshots
	}
	if o.CommitBatch == 0 {
		o.CommitBatch = 65536
	}
	if o.MaxSnapshots == 0 {
		o.MaxSnapshots = DefaultMaxSnapshots
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CloseGrace == 0 {
		o.CloseGrace = 2 * time.Second
	}
	if o.MetadataReserve == 0 {
		o.MetadataReserve = DefaultMetadataReserve
	}
}

// DefaultMetadataReserve is the default of Options.MetadataReserve.
const DefaultMetadataReserve = 64 << 20

// Validate reports options that cannot work.
func (o *Options) Validate() error {
	if o.MaxSnapshots < 1 || o.MaxSnapshots > MaxChainLimit {
		return fmt.Errorf("%w: max snapshots %d: must be 1 to %d", ErrInvalidArgument, o.MaxSnapshots, MaxChainLimit)
	}
	if o.RBDMaxSnapshots < 1 || o.RBDMaxSnapshots > MaxChainLimit {
		return fmt.Errorf("%w: RBD max snapshots %d: must be 1 to %d", ErrInvalidArgument, o.RBDMaxSnapshots, MaxChainLimit)
	}
	return ValidateBlockSize(o.BlockSize)
}

// ValidateBlockSize checks a pool block size.
func ValidateBlockSize(bs uint32) error {
	if bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0 {
		return fmt.Errorf("%w: block size %d: must be a power of two from %d (4 KiB) to %d (1 MiB)",
			ErrInvalidArgument, bs, MinBlockSize, MaxBlockSize)
	}
	return nil
}
