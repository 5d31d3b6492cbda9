// Package api holds the control API's wire types, shared by the server in
// daemon and the client in ctl. It imports nothing outside the standard
// library, so rowctl links no engine, FUSE or Ceph code.
//
// The API is HTTP + JSON over a Unix socket, under versioned paths
// (/v1/...). Every error response is an Error with a stable Code; clients
// match on Code, never on Message.
package api

import "time"

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
)

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
	UsedBytes   uint64 `json:"used_bytes"`
	OpenHandles int    `json:"open_handles"`
	Writers     int    `json:"writers"`
	// Path is the volume file on the mount.
	Path string `json:"path"`
}

// Pool describes the pool.
type Pool struct {
	Dir              string    `json:"dir"`
	Mount            string    `json:"mount"`
	BlockSize        uint64    `json:"block_size"`
	Created          time.Time `json:"created"`
	UsedBytes        uint64    `json:"used_bytes"`
	FreeBytes        uint64    `json:"free_bytes"`
	CapacityBytes    uint64    `json:"capacity_bytes"`
	ProvisionedBytes uint64    `json:"provisioned_bytes"`
	// Overcommit is provisioned over capacity.
	Overcommit float64 `json:"overcommit"`
	Volumes    int     `json:"volumes"`
}

// CreateVolumeRequest is the body of POST PathVolumes.
type CreateVolumeRequest struct {
	Name string `json:"name"`
	Size uint64 `json:"size"`
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
