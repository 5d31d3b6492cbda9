package fs

import (
	"context"
	"strconv"
	"strings"
	"syscall"

	"github.com/rowfs/rowfs/rowengine"
)

const (
	xattrPrefix    = "user.rowfs."
	xattrKeys      = xattrPrefix + "keys"
	xattrKind      = xattrPrefix + "kind"
	xattrSize      = xattrPrefix + "size"
	xattrUsed      = xattrPrefix + "used"
	xattrBlockSize = xattrPrefix + "block_size"
	xattrInfoJSON  = xattrPrefix + "info.json"
	xattrPoolJSON  = xattrPrefix + "pool.json"
	xattrBtime     = xattrPrefix + "btime"
	// On volume files.
	xattrSnapshots     = xattrPrefix + "snapshots"
	xattrSnapshotsJSON = xattrPrefix + "snapshots.json"
	xattrParent        = xattrPrefix + "parent"
	xattrSnapshotBytes = xattrPrefix + "snapshot_bytes"
	xattrPolicies      = xattrPrefix + "policies"
	xattrGroup         = xattrPrefix + "group"
	xattrBackupsJSON   = xattrPrefix + "backups.json"
	// On RBD volume files.
	xattrRBDPool  = xattrPrefix + "rbd.pool"
	xattrRBDImage = xattrPrefix + "rbd.image"
)

var volumeXattrs = []string{xattrKeys, xattrKind, xattrSize, xattrUsed, xattrBlockSize, xattrInfoJSON,
	xattrSnapshots, xattrSnapshotsJSON, xattrParent, xattrSnapshotBytes, xattrPolicies, xattrGroup, xattrBackupsJSON}

var rbdVolumeXattrs = append(volumeXattrs[:len(volumeXattrs):len(volumeXattrs)], xattrRBDPool, xattrRBDImage)

// xattrValue copies value into dest following getxattr(2): with an empty
// dest it reports the size; a dest too small gives ERANGE.
func xattrValue(dest, value []byte, err error) (uint32, syscall.Errno) {
	if err != nil {
		return 0, toErrno(err)
	}
	if len(dest) == 0 {
		return uint32(len(value)), 0
	}
	if len(dest) < len(value) {
		return uint32(len(value)), syscall.ERANGE
	}
	return uint32(copy(dest, value)), 0
}

func (v *volumeNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !strings.HasPrefix(attr, xattrPrefix) {
		return 0, syscall.ENODATA
	}
	// An RBD volume's figures come from Ceph: asked for here, never for
	// file attributes, and only for the attributes made of them.
	info, err := v.root.opts.Engine.Volume(v.name)
	if err == nil && info.Backend == rowengine.BackendRBD && needsDetail[attr] {
		info, err = v.root.opts.Engine.VolumeDetail(v.name)
	}
	if err != nil {
		return 0, toErrno(err)
	}
	rbd := info.Backend == rowengine.BackendRBD
	switch attr {
	case xattrKeys:
		keys := volumeXattrs
		if rbd {
			keys = rbdVolumeXattrs
		}
		return xattrValue(dest, []byte(strings.Join(keys, "\n")+"\n"), nil)
	case xattrKind:
		if rbd {
			return xattrValue(dest, []byte(rowengine.BackendRBD), nil)
		}
		return xattrValue(dest, []byte("volume"), nil)
	case xattrGroup:
		group, err := v.root.opts.Engine.GroupOf(v.name)
		return xattrValue(dest, []byte(group), err)
	case xattrPolicies:
		names, err := v.root.opts.Engine.PoliciesOf(v.name)
		return xattrValue(dest, []byte(strings.Join(names, "\n")), err)
	case xattrRBDPool, xattrRBDImage:
		if !rbd {
			return 0, syscall.ENODATA
		}
		if attr == xattrRBDPool {
			return xattrValue(dest, []byte(info.RBDPool), nil)
		}
		return xattrValue(dest, []byte(info.RBDImage), nil)
	case xattrSize:
		return xattrValue(dest, strconv.AppendUint(nil, info.Size, 10), nil)
	case xattrUsed:
		return xattrValue(dest, strconv.AppendUint(nil, info.UsedBytes, 10), nil)
	case xattrBlockSize:
		return xattrValue(dest, strconv.AppendUint(nil, info.BlockSize, 10), nil)
	case xattrInfoJSON:
		value, err := v.root.opts.Describer.VolumeJSON(v.name)
		return xattrValue(dest, value, err)
	case xattrSnapshots:
		return xattrValue(dest, strconv.AppendInt(nil, int64(info.Snapshots), 10), nil)
	case xattrBackupsJSON:
		value, err := v.root.opts.Describer.BackupsJSON(v.name, maxSnapshotsJSON)
		return xattrValue(dest, value, err)
	case xattrSnapshotsJSON:
		value, err := v.root.opts.Describer.SnapshotsJSON(v.name, maxSnapshotsJSON)
		return xattrValue(dest, value, err)
	case xattrParent:
		return xattrValue(dest, []byte(info.Parent), nil)
	case xattrSnapshotBytes:
		return xattrValue(dest, strconv.AppendUint(nil, info.SnapshotBytes, 10), nil)
	}
	return 0, syscall.ENODATA
}

// needsDetail are the attributes made of what an RBD volume's cheap
// description (Engine.Volume) leaves out.
var needsDetail = map[string]bool{xattrSize: true, xattrUsed: true, xattrSnapshots: true, xattrParent: true, xattrSnapshotBytes: true}

// Listxattr lists nothing: see the package doc.
func (v *volumeNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) { return 0, 0 }

func (v *volumeNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return refuseSetxattr(attr)
}

func (v *volumeNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return refuseSetxattr(attr)
}

// refuseSetxattr: rowfs attributes are read-only; other attributes are not
// stored at all.
func refuseSetxattr(attr string) syscall.Errno {
	if strings.HasPrefix(attr, xattrPrefix) {
		return syscall.EPERM
	}
	return syscall.EOPNOTSUPP
}
