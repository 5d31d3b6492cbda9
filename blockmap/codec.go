package blockmap

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// Key prefixes. One byte each; see layout.md.
const (
	prefixPool    = 'P' // 'P' → PoolRecord (JSON)
	prefixSeq     = 'Q' // 'Q' → next free id (uint64 BE)
	prefixVolume  = 'V' // 'V' + name → VolumeRecord (JSON)
	prefixNode    = 'N' // 'N' + node id → NodeRecord (JSON)
	prefixMapping = 'B' // 'B' + node id + block index → physical block (uint64 BE)
	prefixJob     = 'J' // 'J' + job id → JobRecord (JSON)
	prefixRBD     = 'R' // 'R' + name → RBDVolumeRecord (JSON)
	prefixPolicy  = 'L' // 'L' + name → PolicyRecord (JSON)
	prefixGroup   = 'G' // 'G' + name → GroupRecord (JSON)
	prefixTarget  = 'T' // 'T' + name → BackupTargetRecord (JSON)
)

// ZeroBlock is the physical block number of a map entry that reads as zeros.
// It lets a node hide what its ancestors map (write-zeroes, discard over a
// snapshot) without owning a block.
const ZeroBlock = ^uint64(0)

// PoolRecord describes a pool. Written when the pool is created, and
// again when a setting changes.
type PoolRecord struct {
	FormatVersion int       `json:"format_version"`
	BlockSize     uint32    `json:"block_size"`
	Created       time.Time `json:"created"`
	// Settings are the operator's (rowctl pool set); the zero value is the
	// defaults.
	Settings PoolSettings `json:"settings,omitzero"`
}

// PoolSettings are a pool's settings, named so that false is the default.
type PoolSettings struct {
	// NoSnapshotBeforeResize and NoSnapshotBeforeReset turn off the
	// automatic snapshot taken before a volume resize or reset.
	NoSnapshotBeforeResize bool `json:"no_snapshot_before_resize,omitempty"`
	NoSnapshotBeforeReset  bool `json:"no_snapshot_before_reset,omitempty"`
	// SnapshotBeforeRollback turns on the automatic snapshot before a
	// rollback (off by default, as in ZStack).
	SnapshotBeforeRollback bool `json:"snapshot_before_rollback,omitempty"`
}

// CurrentFormatVersion is written into new pools; Open refuses newer ones.
// Format 2 added partly written blocks (12-byte map values); format 1
// pools are upgraded when opened.
const CurrentFormatVersion = 2

// VolumeRecord is one volume. Head is the node that takes writes.
type VolumeRecord struct {
	ID      uint64    `json:"id"`
	Name    string    `json:"name"`
	Size    uint64    `json:"size"`
	Backend string    `json:"backend"`
	Head    uint64    `json:"head"`
	Created time.Time `json:"created"`
	// MaxSnapshots overrides the pool's chain limit for this volume; 0 means
	// the pool default.
	MaxSnapshots int `json:"max_snapshots,omitempty"`
	// LastAuto is the last name given to an automatic snapshot of the
	// volume, by kind ("" for plain ones, "pre-resize" …); later ones are
	// named after it, so no name is given twice.
	LastAuto map[string]string `json:"last_auto,omitempty"`
}

// RBDVolumeRecord is a volume whose data and snapshots live in a Ceph RBD
// image. It has no nodes and no map: RBD keeps both. Names share one
// namespace with VolumeRecord.
type RBDVolumeRecord struct {
	// ID comes from the sequence volumes and nodes share.
	ID      uint64    `json:"id"`
	Name    string    `json:"name"`
	Pool    string    `json:"pool"`
	Image   string    `json:"image"`
	Created time.Time `json:"created"`
	// MaxSnapshots overrides the RBD chain limit for this volume; 0 means
	// the daemon's default.
	MaxSnapshots int `json:"max_snapshots,omitempty"`
	// LastAuto is as VolumeRecord's.
	LastAuto map[string]string `json:"last_auto,omitempty"`
}

// NodeRecord is one point of a volume's snapshot tree. Parent is 0 for a root.
type NodeRecord struct {
	ID      uint64    `json:"id"`
	Volume  uint64    `json:"volume"`
	Parent  uint64    `json:"parent"`
	Name    string    `json:"name,omitempty"`
	Created time.Time `json:"created"`
	// Size is the volume's virtual size when the node was frozen; for a head
	// it is unused (the volume record has the live size).
	Size uint64 `json:"size"`
	// Kind is "manual" or "auto" for a snapshot, empty for a head.
	Kind        string `json:"kind,omitempty"`
	Description string `json:"description,omitempty"`
	// Hidden marks a deleted snapshot kept because children still read it,
	// or one whose merge into its only child is under way.
	Hidden bool `json:"hidden,omitempty"`
	// Policy names the snapshot policy that took an automatic snapshot; a
	// policy prunes only its own.
	Policy string `json:"policy,omitempty"`
	// Group names the snapshot group this snapshot is one member of;
	// Consistency is "frozen" if the group's freeze hook ran before the
	// cut, "crash" (or empty) otherwise.
	Group       string `json:"group,omitempty"`
	Consistency string `json:"consistency,omitempty"`
}

// GroupRecord is a snapshot group: volumes snapshotted together, at one
// instant. A volume belongs to one group at most.
type GroupRecord struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Volumes []string  `json:"volumes"`
	// FreezeCmd and ThawCmd, if set, run (sh -c) before and after the cut
	// of a group snapshot, to make it application-consistent.
	FreezeCmd string `json:"freeze_cmd,omitempty"`
	ThawCmd   string `json:"thaw_cmd,omitempty"`
	// QGASocket, if set, is the qemu guest agent socket of the VM the
	// group's volumes belong to: its filesystems are frozen around the cut.
	QGASocket string `json:"qga_socket,omitempty"`
	// RBDPool is the Ceph pool of a group of RBD volumes, whose group
	// snapshots are RBD's own (RBD group "rowfs-NAME"); empty for a group
	// of local volumes.
	RBDPool string `json:"rbd_pool,omitempty"`
}

// PolicyRecord is a snapshot policy and its schedule's state. The daemon's
// scheduler interprets it; the store only keeps it.
type PolicyRecord struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// Kind is "weekly" (Hours × Weekdays), "every" (Every from Start,
	// Times runs or forever) or "cron" (Cron).
	Kind     string `json:"kind"`
	Hours    []int  `json:"hours,omitempty"`
	Weekdays []int  `json:"weekdays,omitempty"` // 1 Monday … 7 Sunday
	// Every is the period in seconds; Times the number of runs (0: forever).
	Every int64     `json:"every,omitempty"`
	Times int       `json:"times,omitempty"`
	Start time.Time `json:"start,omitzero"`
	Cron  string    `json:"cron,omitempty"`
	// Timezone is an IANA name; empty: the host's.
	Timezone string `json:"timezone,omitempty"`
	// Keep and RetainDays bound the policy's own snapshots (0: no bound).
	Keep       int      `json:"keep,omitempty"`
	RetainDays int      `json:"retain_days,omitempty"`
	Volumes    []string `json:"volumes"`
	// Groups are snapshot groups the policy takes group snapshots of.
	Groups []string `json:"groups,omitempty"`
	Paused bool     `json:"paused,omitempty"`
	// Task is what a run does: "" (snapshots) or "backup" (a backup point
	// of each volume to Target, pruned by Keep and RetainDays).
	Task   string `json:"task,omitempty"`
	Target string `json:"target,omitempty"`
	// LastDue is the last due time handled (run or skipped), so a restart
	// neither repeats it nor runs the ones it missed more than once.
	LastDue    time.Time `json:"last_due,omitzero"`
	LastRun    time.Time `json:"last_run,omitzero"`
	LastResult string    `json:"last_result,omitempty"`
	// LastSuccess is the last run that had no error (alerts watch it).
	LastSuccess time.Time `json:"last_success,omitzero"`
	Runs        int       `json:"runs,omitempty"`
	Skipped     int       `json:"skipped,omitempty"`
}

// JobRecord is one background job (delete-merge, rollback, flatten). A job
// whose State is "running" when the pool opens is resumed.
type JobRecord struct {
	ID       uint64    `json:"id"`
	Kind     string    `json:"kind"`
	Target   string    `json:"target"`
	State    string    `json:"state"`
	Error    string    `json:"error,omitempty"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	// Args are an external job's parameters and durable progress (a
	// backup's volume and snapshot, a restore's next chunk), so that the
	// daemon can resume it after a restart.
	Args map[string]string `json:"args,omitempty"`
}

// MapKey addresses one entry of a node's block map.
type MapKey struct {
	Node  uint64
	Index uint64
}

// MapChange sets (Phys, Valid) or removes (Delete) one map entry.
type MapChange struct {
	Key  MapKey
	Phys uint64
	// Valid is which sectors of a partly written block hold the node's
	// data (bit i: sector i); the others read from the parent. 0 means
	// the whole block (and is what every entry of a pool whose blocks
	// have one sector carries).
	Valid  uint32
	Delete bool
	// WithNext makes this change and the next one durable together or not
	// at all, as when a block's ownership moves from one node to another.
	WithNext bool
}

func poolKey() []byte { return []byte{prefixPool} }
func seqKey() []byte  { return []byte{prefixSeq} }

func volumeKey(name string) []byte { return append([]byte{prefixVolume}, name...) }

func rbdKey(name string) []byte { return append([]byte{prefixRBD}, name...) }

func policyKey(name string) []byte { return append([]byte{prefixPolicy}, name...) }

func groupKey(name string) []byte { return append([]byte{prefixGroup}, name...) }

func targetKey(name string) []byte { return append([]byte{prefixTarget}, name...) }

func nodeKey(id uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixNode
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

// EncodeMapKey returns 'B' + node (8 bytes BE) + index (8 bytes BE).
func EncodeMapKey(k MapKey) []byte {
	b := make([]byte, 17)
	b[0] = prefixMapping
	binary.BigEndian.PutUint64(b[1:], k.Node)
	binary.BigEndian.PutUint64(b[9:], k.Index)
	return b
}

// DecodeMapKey is the inverse of EncodeMapKey.
func DecodeMapKey(b []byte) (MapKey, error) {
	if len(b) != 17 || b[0] != prefixMapping {
		return MapKey{}, fmt.Errorf("%w: map key %x", ErrCorrupt, b)
	}
	return MapKey{Node: binary.BigEndian.Uint64(b[1:]), Index: binary.BigEndian.Uint64(b[9:])}, nil
}

func jobKey(id uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixJob
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

func mapPrefix(node uint64) []byte {
	b := make([]byte, 9)
	b[0] = prefixMapping
	binary.BigEndian.PutUint64(b[1:], node)
	return b
}

// EncodeMapValue is a map entry's value: the physical block, 8 bytes
// big-endian, then for a partly written block its valid sectors, 4 bytes.
func EncodeMapValue(phys uint64, valid uint32) []byte {
	if valid == 0 {
		return EncodeUint64(phys)
	}
	b := make([]byte, 12)
	binary.BigEndian.PutUint64(b, phys)
	binary.BigEndian.PutUint32(b[8:], valid)
	return b
}

// DecodeMapValue is the inverse of EncodeMapValue.
func DecodeMapValue(b []byte) (phys uint64, valid uint32, err error) {
	switch len(b) {
	case 8:
		return binary.BigEndian.Uint64(b), 0, nil
	case 12:
		valid = binary.BigEndian.Uint32(b[8:])
		if valid == 0 {
			return 0, 0, fmt.Errorf("%w: partial map entry with no valid sector", ErrCorrupt)
		}
		return binary.BigEndian.Uint64(b), valid, nil
	}
	return 0, 0, fmt.Errorf("%w: %d-byte map entry, want 8 or 12", ErrCorrupt, len(b))
}

// EncodeUint64 is the 8-byte big-endian value of full map entries and the sequence.
func EncodeUint64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// DecodeUint64 is the inverse of EncodeUint64.
func DecodeUint64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %d-byte integer value, want 8", ErrCorrupt, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

func decodeJSON(what string, key, val []byte, into any) error {
	if err := json.Unmarshal(val, into); err != nil {
		return fmt.Errorf("%w: %s record %q: %v", ErrCorrupt, what, key, err)
	}
	return nil
}

// BackupTargetRecord is a backup target added with rowctl (no secrets:
// the daemon reads credentials from its config or environment).
type BackupTargetRecord struct {
	Name     string    `json:"name"`
	URL      string    `json:"url"`
	Endpoint string    `json:"endpoint,omitempty"`
	Region   string    `json:"region,omitempty"`
	KeyFile  string    `json:"key_file,omitempty"`
	Insecure bool      `json:"insecure,omitempty"`
	Created  time.Time `json:"created"`
}
