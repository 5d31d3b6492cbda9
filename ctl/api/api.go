// Package api holds the control API's wire types, shared by the server in
// daemon and the client in ctl. It imports nothing outside the standard
// library, so rowctl links no engine, FUSE or Ceph code.
//
// The API is HTTP + JSON over a Unix socket, under versioned paths
// (/v1/...). Every error response is an Error with a stable Code; clients
// match on Code, never on Message.
package api

import (
	"strconv"
	"time"
)

// Version is the rowfs release, set at build time by the Makefile.
var Version = "dev"

// DefaultSocket is where rowfsd listens and rowctl connects unless told otherwise.
const DefaultSocket = "/run/rowfs/rowfsd.sock"

// SocketEnv names the environment variable rowctl reads for the socket path.
const SocketEnv = "ROWFS_SOCKET"

// Paths of the v1 API. {name} is a volume name.
const (
	PathVersion      = "/v1/version"
	PathPool         = "/v1/pool"
	PathVolumes      = "/v1/volumes"
	PathVolume       = "/v1/volumes/{name}"
	PathVolumeResize = "/v1/volumes/{name}/resize"
	PathVolumeSet    = "/v1/volumes/{name}/set"
	// PathVolumeAttach: POST exposes an existing RBD image as a volume.
	PathVolumeAttach = "/v1/volumes/attach"
	// PathVolumeDetach: POST removes an RBD volume and leaves its image.
	PathVolumeDetach = "/v1/volumes/{name}/detach"
	// PathSnapshots: GET lists the volume's tree, POST creates a snapshot.
	PathSnapshots = "/v1/volumes/{name}/snapshots"
	// PathSnapshot: GET describes, DELETE deletes (?recursive=true&dry_run=true).
	PathSnapshot = "/v1/volumes/{name}/snapshots/{snap}"
	PathRollback = "/v1/volumes/{name}/rollback"
	// PathReset: POST resets a volume ({"force": bool}); answers a RollbackResult.
	PathReset = "/v1/volumes/{name}/reset"
	// PathPoolSettings: POST {"key": K, "value": V} changes a pool setting.
	PathPoolSettings = "/v1/pool/settings"
	// PathGroups: GET lists the snapshot groups, POST creates one.
	PathGroups = "/v1/groups"
	// PathGroup: GET describes a group with its points, DELETE deletes it.
	PathGroup = "/v1/groups/{name}"
	// PathGroupAction: POST add, remove ({"volumes": […]}), snapshot,
	// rollback and delete-snapshot (GroupSnapshotRequest).
	PathGroupAction = "/v1/groups/{name}/{action}"
	// PathPolicies: GET lists the snapshot policies, POST creates one.
	PathPolicies = "/v1/policies"
	// PathPolicy: GET describes a policy, DELETE deletes it.
	PathPolicy = "/v1/policies/{name}"
	// PathPolicyAction: POST apply, remove ({"volumes": […]}), run, pause, resume.
	PathPolicyAction = "/v1/policies/{name}/{action}"
	// PathDiff: GET ?from=SNAP[&to=SNAP]; to defaults to the head.
	PathDiff    = "/v1/volumes/{name}/diff"
	PathClone   = "/v1/volumes/{name}/clone"
	PathFlatten = "/v1/volumes/{name}/flatten"
	// PathHistory is GET: a volume's capacity history, ?since= and
	// ?until= RFC 3339 times (default: all that is kept).
	PathHistory = "/v1/volumes/{name}/history"
	PathJobs    = "/v1/jobs"
	PathJob     = "/v1/jobs/{id}"
	// PathFsck: POST checks the pool (?repair=leaks frees what leaked).
	PathFsck = "/v1/fsck"

	// PathBackupTargets: GET lists, POST adds a backup target;
	// PathBackupTarget: DELETE removes one (its backups stay on it).
	PathBackupTargets = "/v1/backup-targets"
	PathBackupTarget  = "/v1/backup-targets/{name}"
	// PathBackups: GET lists points (?target=&volume=), POST makes one (a job).
	PathBackups = "/v1/backups"
	// PathBackupAction: POST restore, delete, verify (point "-" with All)
	// or gc (point "-") on a point.
	PathBackupAction = "/v1/backups/{point}/{action}"
)

// Stable error codes.
const (
	CodeNotFound        = "not_found"
	CodeExists          = "exists"
	CodeInvalidArgument = "invalid_argument"
	CodeBusy            = "busy"
	CodeNoSpace         = "no_space"
	CodeReadOnly        = "read_only"
	CodeInternal        = "internal"
	CodeUnavailable     = "unavailable"
	CodeChainLimit      = "chain_limit"
	CodeJobFailed       = "job_failed"
	CodeForbidden       = "forbidden"
	CodeCorrupt         = "corrupt"
	CodeIO              = "io_error"
	// CodeTarget: a backup target failed or timed out; CodeKey: an
	// encrypted target without its key, or with another.
	CodeTarget = "target_failed"
	CodeKey    = "backup_key"
)

// Codes lists every error code, for the test that each has an exit code.
var Codes = []string{CodeNotFound, CodeExists, CodeInvalidArgument, CodeBusy, CodeNoSpace, CodeReadOnly,
	CodeInternal, CodeUnavailable, CodeChainLimit, CodeJobFailed, CodeForbidden, CodeCorrupt, CodeIO, CodeTarget, CodeKey}

// Error is the body of every non-2xx response.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// VersionInfo answers PathVersion.
type VersionInfo struct {
	Version   string `json:"version"`
	API       string `json:"api"`
	GoVersion string `json:"go_version"`
}

// Volume describes one volume. Sizes are bytes; times are RFC 3339 UTC.
type Volume struct {
	Name    string    `json:"name"`
	ID      uint64    `json:"id"`
	Backend string    `json:"backend"`
	Size    uint64    `json:"size"`
	Created time.Time `json:"created"`
	// BlockSize is the pool's allocation unit.
	BlockSize uint64 `json:"block_size"`
	// UsedBytes is what the volume's head owns.
	UsedBytes uint64 `json:"used_bytes"`
	// SnapshotBytes is what its snapshots own; TotalBytes adds the head.
	SnapshotBytes uint64 `json:"snapshot_bytes"`
	TotalBytes    uint64 `json:"total_bytes"`
	Snapshots     int    `json:"snapshots"`
	// ChainLength counts the snapshots on the head's path; MaxSnapshots
	// is the limit in force.
	ChainLength  int `json:"chain_length"`
	MaxSnapshots int `json:"max_snapshots"`
	// Parent is VOL@SNAP for a clone still sharing blocks, else empty.
	Parent      string `json:"parent"`
	OpenHandles int    `json:"open_handles"`
	Writers     int    `json:"writers"`
	// Path is the volume file on the mount.
	Path string `json:"path"`
	// RBDPool and RBDImage name an RBD volume's image in Ceph.
	RBDPool  string `json:"rbd_pool,omitempty"`
	RBDImage string `json:"rbd_image,omitempty"`
	// Note says which figures Ceph could not give, if any.
	Note string `json:"note,omitempty"`
}

// Pool describes the pool.
type Pool struct {
	Dir       string    `json:"dir"`
	Mount     string    `json:"mount"`
	BlockSize uint64    `json:"block_size"`
	Created   time.Time `json:"created"`
	// UsedBytes is the space of the blocks in use, which the capacity
	// limits; StoredBytes what they hold (a partly written block only the
	// sectors written), which deletes free on the host.
	UsedBytes        uint64 `json:"used_bytes"`
	StoredBytes      uint64 `json:"stored_bytes"`
	FreeBytes        uint64 `json:"free_bytes"`
	CapacityBytes    uint64 `json:"capacity_bytes"`
	ProvisionedBytes uint64 `json:"provisioned_bytes"`
	// Overcommit is provisioned over capacity.
	Overcommit float64 `json:"overcommit"`
	Volumes    int     `json:"volumes"`
	// DataBytesWritten counts bytes written to the pool data file since
	// the daemon started.
	DataBytesWritten uint64 `json:"data_bytes_written"`
	// Settings are the pool's settings (rowctl pool set), by key.
	Settings map[string]string `json:"settings"`
}

// PolicyRequest is the body of POST PathPolicies: one schedule (Hours with
// Weekdays, Every, or Cron) and the retention.
type PolicyRequest struct {
	Name string `json:"name"`
	// Hours (0–23) × Weekdays (1–7 or mon … sun): Alibaba's kind.
	Hours    []int    `json:"hours,omitempty"`
	Weekdays []string `json:"weekdays,omitempty"`
	// Every ("30m", "4h", "1d") from Start (RFC 3339; default now), Times
	// runs (0: forever): ZStack's kind.
	Every string `json:"every,omitempty"`
	Times int    `json:"times,omitempty"`
	Start string `json:"start,omitempty"`
	Cron  string `json:"cron,omitempty"`
	// Timezone is an IANA name; default the host's.
	Timezone string `json:"timezone,omitempty"`
	// Keep bounds the policy's own snapshots per volume; RetainDays their
	// age ("forever" or 1–65536). Both may be given.
	Keep       int      `json:"keep,omitempty"`
	RetainDays string   `json:"retain_days,omitempty"`
	Volumes    []string `json:"volumes,omitempty"`
	// Task is "snapshot" (the default) or "backup": each run backs the
	// volumes up to Target ("": the only target), and Keep and RetainDays
	// bound the policy's backup points, pruned only after a good run.
	Task   string `json:"task,omitempty"`
	Target string `json:"target,omitempty"`
}

// Policy answers GET PathPolicy.
type Policy struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"` // weekly, every, cron
	Task        string    `json:"task"` // snapshot, backup
	Target      string    `json:"target,omitempty"`
	Schedule    string    `json:"schedule"`
	Timezone    string    `json:"timezone"`
	Keep        int       `json:"keep,omitempty"`
	RetainDays  int       `json:"retain_days,omitempty"`
	Volumes     []string  `json:"volumes"`
	Groups      []string  `json:"groups,omitempty"`
	State       string    `json:"state"` // active, paused, done
	NextRun     time.Time `json:"next_run,omitzero"`
	LastRun     time.Time `json:"last_run,omitzero"`
	LastResult  string    `json:"last_result,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	Runs        int       `json:"runs"`
	Skipped     int       `json:"skipped"`
}

// PolicyList answers GET PathPolicies.
type PolicyList struct {
	Policies []Policy `json:"policies"`
}

// PolicyVolumesRequest is the body of POST PathPolicyAction apply and
// remove: volumes, and snapshot groups (a group snapshot a run).
type PolicyVolumesRequest struct {
	Volumes []string `json:"volumes"`
	Groups  []string `json:"groups,omitempty"`
}

// PolicyRunResult answers POST PathPolicyAction run.
type PolicyRunResult struct {
	Policy  Policy   `json:"policy"`
	Created []string `json:"created"`
	Pruned  []string `json:"pruned"`
	Errors  []string `json:"errors"`
}

// GroupRequest is the body of POST PathGroups, and of add and remove;
// FreezeCmd and ThawCmd (create, or the hooks action) run around each
// group snapshot's cut.
type GroupRequest struct {
	Name      string   `json:"name,omitempty"`
	Volumes   []string `json:"volumes"`
	FreezeCmd string   `json:"freeze_cmd,omitempty"`
	ThawCmd   string   `json:"thaw_cmd,omitempty"`
	// QGASocket is the VM's qemu guest agent socket, asked to freeze the
	// guest's filesystems around each cut.
	QGASocket string `json:"qga_socket,omitempty"`
}

// Group answers GET PathGroup.
type Group struct {
	Name      string       `json:"name"`
	Created   time.Time    `json:"created"`
	Volumes   []string     `json:"volumes"`
	FreezeCmd string       `json:"freeze_cmd,omitempty"`
	ThawCmd   string       `json:"thaw_cmd,omitempty"`
	QGASocket string       `json:"qga_socket,omitempty"`
	Points    []GroupPoint `json:"points"`
}

// GroupPoint is one group snapshot and whether it can be rolled back as a
// group (Why says why not).
type GroupPoint struct {
	Name        string    `json:"name"`
	Created     time.Time `json:"created"`
	Members     []string  `json:"members"`
	Consistency string    `json:"consistency"` // frozen or crash
	Valid       bool      `json:"valid"`
	Why         string    `json:"why,omitempty"`
}

// GroupList answers GET PathGroups.
type GroupList struct {
	Groups []Group `json:"groups"`
}

// GroupSnapshotRequest is the body of POST PathGroupAction snapshot,
// rollback and delete-snapshot.
type GroupSnapshotRequest struct {
	Snapshot    string `json:"snapshot,omitempty"`
	Description string `json:"description,omitempty"`
	Auto        bool   `json:"auto,omitempty"`
	Force       bool   `json:"force,omitempty"`
}

// GroupSnapshotResult answers snapshot, rollback and delete-snapshot:
// the member snapshots, or the members rolled back.
type GroupSnapshotResult struct {
	Group    string `json:"group"`
	Snapshot string `json:"snapshot"`
	// Consistency is "frozen" if the freeze hook ran, else "crash"; Note
	// says why a hook did not freeze.
	Consistency string     `json:"consistency,omitempty"`
	Note        string     `json:"note,omitempty"`
	Snapshots   []Snapshot `json:"snapshots,omitempty"`
	Volumes     []Volume   `json:"volumes,omitempty"`
}

// SetPoolSettingRequest is the body of POST PathPoolSettings.
type SetPoolSettingRequest struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ResetRequest is the body of POST PathReset.
type ResetRequest struct {
	Force bool `json:"force,omitempty"`
}

// CreateVolumeRequest is the body of POST PathVolumes.
type CreateVolumeRequest struct {
	Name string `json:"name"`
	Size uint64 `json:"size"`
	// Backend is "row" (the default) or "rbd".
	Backend string `json:"backend,omitempty"`
	// RBDPool names the Ceph pool of an rbd volume; RBDImage its image
	// (default: the volume's name).
	RBDPool  string `json:"rbd_pool,omitempty"`
	RBDImage string `json:"rbd_image,omitempty"`
}

// AttachVolumeRequest is the body of POST PathVolumeAttach.
type AttachVolumeRequest struct {
	Name     string `json:"name"`
	RBDPool  string `json:"rbd_pool"`
	RBDImage string `json:"rbd_image"`
}

// ResizeVolumeRequest is the body of POST PathVolumeResize.
type ResizeVolumeRequest struct {
	Size   uint64 `json:"size"`
	Shrink bool   `json:"shrink"`
}

// VolumeList answers GET PathVolumes.
type VolumeList struct {
	Volumes []Volume `json:"volumes"`
}

// SetVolumeRequest is the body of POST PathVolumeSet. Absent fields are
// left alone.
type SetVolumeRequest struct {
	// MaxSnapshots: 0 restores the pool default.
	MaxSnapshots *int `json:"max_snapshots,omitempty"`
}

// Snapshot is one node of a volume's tree.
type Snapshot struct {
	Name   string `json:"name"`
	ID     uint64 `json:"id"`
	Volume string `json:"volume"`
	// Parent is the parent node's id (0 for a root); ParentRef names it
	// as VOL@SNAP when it belongs to another volume.
	Parent      uint64    `json:"parent"`
	ParentRef   string    `json:"parent_ref,omitempty"`
	Created     time.Time `json:"created"`
	Kind        string    `json:"kind"` // manual, auto, head
	Description string    `json:"description,omitempty"`
	Size        uint64    `json:"size"`
	OwnBytes    uint64    `json:"own_bytes"`
	Hidden      bool      `json:"hidden"`
	Head        bool      `json:"head"`
	Children    int       `json:"children"`
	// Path is the read-only snapshot file; empty for the head and hidden nodes.
	Path string `json:"path,omitempty"`
	// Policy names the snapshot policy that took it; Group the group whose
	// snapshot it is one member of.
	Policy      string `json:"policy,omitempty"`
	Group       string `json:"group,omitempty"`
	Consistency string `json:"consistency,omitempty"`
}

// SnapshotList answers GET PathSnapshots: every node of the volume's tree,
// hidden ones and the head included, in creation order.
type SnapshotList struct {
	Volume    string     `json:"volume"`
	Snapshots []Snapshot `json:"snapshots"`
}

// CreateSnapshotRequest is the body of POST PathSnapshots.
type CreateSnapshotRequest struct {
	// Name may be empty when Auto is set: auto-<UTC timestamp>.
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Auto        bool   `json:"auto,omitempty"`
}

// DeletePlan says what a snapshot delete frees and moves.
type DeletePlan struct {
	Deleted    []string `json:"deleted"`
	FreedBytes uint64   `json:"freed_bytes"`
	MovedBytes uint64   `json:"moved_bytes"`
	// FilledBytes is what merges write first into the partly written
	// blocks of children that read the rest from what they free.
	FilledBytes uint64   `json:"filled_bytes,omitempty"`
	KeptHidden  []string `json:"kept_hidden"`
	// Steps are what the delete's job does, in order: the plan the dry
	// run shows is the one it executes.
	Steps []DeleteStep `json:"steps"`
}

// DeleteStep is one step of a delete plan: "remove" a deleted node
// without children, "merge" one into its only child (Into), or "keep" one
// that several children (Readers) still read.
type DeleteStep struct {
	Kind        string   `json:"kind"`
	Node        string   `json:"node"`
	Into        string   `json:"into,omitempty"`
	Readers     []string `json:"readers,omitempty"`
	FreedBytes  uint64   `json:"freed_bytes"`
	MovedBytes  uint64   `json:"moved_bytes"`
	FilledBytes uint64   `json:"filled_bytes,omitempty"`
}

// DeleteSnapshotResult answers DELETE PathSnapshot.
type DeleteSnapshotResult struct {
	DryRun bool       `json:"dry_run"`
	Plan   DeletePlan `json:"plan"`
	Job    *Job       `json:"job,omitempty"`
}

// DeleteVolumeResult answers DELETE PathVolume.
type DeleteVolumeResult struct {
	// KeptForClones lists snapshots kept hidden because clones read them.
	KeptForClones []string `json:"kept_for_clones"`
	Job           *Job     `json:"job,omitempty"`
}

// RollbackRequest is the body of POST PathRollback.
type RollbackRequest struct {
	Snapshot string `json:"snapshot"`
	Force    bool   `json:"force,omitempty"`
}

// RollbackResult answers POST PathRollback.
type RollbackResult struct {
	Volume Volume `json:"volume"`
	Job    *Job   `json:"job,omitempty"`
}

// CloneRequest is the body of POST PathClone ({name} is the source volume).
type CloneRequest struct {
	Snapshot string `json:"snapshot"`
	Name     string `json:"name"`
}

// Extent is a byte range.
type Extent struct {
	Offset uint64 `json:"offset"`
	Length uint64 `json:"length"`
}

// Diff answers GET PathDiff.
type Diff struct {
	Volume       string   `json:"volume"`
	From         string   `json:"from"`
	To           string   `json:"to"` // empty: the head
	ChangedBytes uint64   `json:"changed_bytes"`
	Extents      []Extent `json:"extents"`
}

// Job is a background job. Done and Total are bytes processed.
type Job struct {
	ID       uint64    `json:"id"`
	Kind     string    `json:"kind"`
	Target   string    `json:"target"`
	State    string    `json:"state"` // running, done, failed
	Done     uint64    `json:"done_bytes"`
	Total    uint64    `json:"total_bytes"`
	Error    string    `json:"error,omitempty"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
}

// JobList answers GET PathJobs.
type JobList struct {
	Jobs []Job `json:"jobs"`
}

// FsckReport answers POST PathFsck and is what rowfsd fsck --json prints.
// Leaks waste space and lose nothing; corruptions are metadata that
// contradicts itself. Repaired and Lost say what a repair did and gave up.
type FsckReport struct {
	Pool         string   `json:"pool"`
	Online       bool     `json:"online"`
	Volumes      int      `json:"volumes"`
	Nodes        int      `json:"nodes"`
	MappedBlocks uint64   `json:"mapped_blocks"`
	FileBlocks   uint64   `json:"file_blocks"`
	Leaks        []string `json:"leaks"`
	Corruptions  []string `json:"corruptions"`
	Repaired     []string `json:"repaired,omitempty"`
	Lost         []string `json:"lost,omitempty"`
}

// CapacitySample is one point of a volume's capacity history.
type CapacitySample struct {
	Time          time.Time `json:"time"`
	HeadBytes     uint64    `json:"head_bytes"`
	SnapshotBytes uint64    `json:"snapshot_bytes"`
	TotalBytes    uint64    `json:"total_bytes"`
}

// CapacityHistory answers GET PathHistory.
type CapacityHistory struct {
	Volume string `json:"volume"`
	// Interval and Retention are the daemon's sampling settings, like "1h"
	// and "2160h0m0s"; Interval is "off" when it samples nothing.
	Interval  string           `json:"interval"`
	Retention string           `json:"retention"`
	Samples   []CapacitySample `json:"samples"`
	// Current is the volume's capacity now (not a stored sample), when
	// the range reaches now: a new volume has it before its first sample.
	Current *CapacitySample `json:"current,omitempty"`
}

// FormatPeriod writes a duration as ParsePeriod reads it: whole days as
// 90d, others as Go does (1h0m0s).
func FormatPeriod(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// BackupTarget is a place backups are kept. Credentials are never here:
// rowfsd reads them from its config or environment.
type BackupTarget struct {
	Name string `json:"name"`
	// URL is dir:///path or s3://bucket/prefix.
	URL      string `json:"url"`
	Endpoint string `json:"endpoint,omitempty"`
	Region   string `json:"region,omitempty"`
	// KeyFile encrypts the target's chunks (AES-256-GCM).
	KeyFile  string `json:"key_file,omitempty"`
	Insecure bool   `json:"insecure,omitempty"`
	// Source is "config" (rowfsd.toml) or "pool" (rowctl backup target add).
	Source string `json:"source,omitempty"`
}

// BackupTargetList answers GET PathBackupTargets.
type BackupTargetList struct {
	Targets []BackupTarget `json:"targets"`
}

// BackupRequest is the body of POST PathBackups.
type BackupRequest struct {
	Volume string `json:"volume"`
	// Target: default the only target there is.
	Target string `json:"target,omitempty"`
	// Full starts a new chain; otherwise the point is incremental on the
	// volume's newest point on the target, if there is one.
	Full bool `json:"full,omitempty"`
	// FromSnapshot reads that snapshot; default one taken for the backup
	// (auto-backup-TARGET-…), kept as the next incremental's base.
	FromSnapshot string `json:"from_snapshot,omitempty"`
	// Group backs up every member of a group from one group snapshot.
	Group string `json:"group,omitempty"`
}

// BackupPoint is one point of a backup chain.
type BackupPoint struct {
	ID          string    `json:"id"`
	Target      string    `json:"target"`
	Volume      string    `json:"volume"`
	Size        uint64    `json:"size"`
	Created     time.Time `json:"created"`
	Kind        string    `json:"kind"` // full, incremental
	Chain       string    `json:"chain"`
	Parent      string    `json:"parent,omitempty"`
	Snapshot    string    `json:"snapshot"`
	Group       string    `json:"group,omitempty"`
	Consistency string    `json:"consistency,omitempty"`
	Encrypted   bool      `json:"encrypted,omitempty"`
	// ReadBytes, UploadedBytes, ReusedBytes: what making it cost.
	ReadBytes     uint64 `json:"read_bytes"`
	UploadedBytes uint64 `json:"uploaded_bytes"`
	ReusedBytes   uint64 `json:"reused_bytes"`
}

// BackupList answers GET PathBackups.
type BackupList struct {
	Points []BackupPoint `json:"points"`
}

// BackupResult answers POST PathBackups and restore: the jobs doing it
// (one per volume; a group backup has one per member).
type BackupResult struct {
	Jobs []Job `json:"jobs"`
}

// BackupActionRequest is the body of POST PathBackupAction.
type BackupActionRequest struct {
	Target string `json:"target,omitempty"`
	// restore: To a new volume, or onto Volume (refused while it is open).
	To     string `json:"to,omitempty"`
	Volume string `json:"volume,omitempty"`
	// restore: Group restores every member point of point's group backup
	// onto its volume.
	Group bool `json:"group,omitempty"`
	// delete: Only this point (the others stay restorable).
	Only   bool `json:"only,omitempty"`
	DryRun bool `json:"dry_run,omitempty"`
}

// BackupDeleteResult answers delete: the points that go (or would).
type BackupDeleteResult struct {
	DryRun bool              `json:"dry_run"`
	Points []string          `json:"points"`
	Why    map[string]string `json:"why,omitempty"`
}

// BackupVerifyResult answers verify.
type BackupVerifyResult struct {
	Points      int            `json:"points"`
	Chunks      int            `json:"chunks"`
	Bytes       uint64         `json:"bytes"`
	Quarantined int            `json:"quarantined"`
	Damaged     []BackupDamage `json:"damaged"`
}

// BackupDamage is a chunk verify found missing or corrupt, and the byte
// ranges of each point it breaks.
type BackupDamage struct {
	Chunk  string        `json:"chunk"`
	Error  string        `json:"error"`
	Breaks []BackupBreak `json:"breaks"`
}

// BackupBreak is one point's ranges lost to a bad chunk, as "OFFSET+LENGTH".
type BackupBreak struct {
	Point  string   `json:"point"`
	Volume string   `json:"volume"`
	Ranges []string `json:"ranges"`
}

// BackupGCResult answers gc.
type BackupGCResult struct {
	DryRun     bool `json:"dry_run"`
	Chunks     int  `json:"chunks"`
	Indexes    int  `json:"indexes"`
	Referenced int  `json:"referenced"`
}
