//go:build ceph

package rbd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/rowfs/rowfs/rowengine"
)

// BuiltIn reports whether this binary has the RBD backend.
const BuiltIn = true

// Cluster is a lazily connected Ceph cluster.
type Cluster struct {
	opts Options

	mu    sync.Mutex
	conn  *rados.Conn
	pools map[string]*rados.IOContext
	// previous is the client id of the last run (0: unknown): locks it
	// holds are stale.
	previous int64
}

// New returns a cluster that connects on first use.
func New(opts Options) rowengine.RBDCluster {
	opts.EnsureDefaults()
	return &Cluster{opts: opts, pools: map[string]*rados.IOContext{}}
}

// ioctx returns the I/O context of a Ceph pool, connecting first if need be.
func (c *Cluster) ioctx(pool string) (*rados.IOContext, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		conn, err := c.connect()
		if err != nil {
			return nil, err
		}
		c.conn = conn
		c.previous = c.swapClientID(int64(conn.GetInstanceID()))
	}
	if ioctx := c.pools[pool]; ioctx != nil {
		return ioctx, nil
	}
	ioctx, err := c.conn.OpenIOContext(pool)
	if err != nil {
		if errors.Is(err, rados.ErrNotFound) {
			return nil, fmt.Errorf("%w: Ceph pool %q", rowengine.ErrNotFound, pool)
		}
		return nil, fmt.Errorf("%w: open Ceph pool %q: %v", rowengine.ErrUnavailable, pool, err)
	}
	c.pools[pool] = ioctx
	return ioctx, nil
}

func (c *Cluster) connect() (*rados.Conn, error) {
	where := c.opts.Conf
	if where == "" {
		where = "the default ceph.conf"
	}
	fail := func(err error) (*rados.Conn, error) {
		return nil, fmt.Errorf("%w: Ceph cluster of %s (client.%s) not reachable: %v", rowengine.ErrUnavailable, where, c.opts.ID, err)
	}
	conn, err := rados.NewConnWithUser(c.opts.ID)
	if err != nil {
		return fail(err)
	}
	if c.opts.Conf != "" {
		err = conn.ReadConfigFile(c.opts.Conf)
	} else {
		err = conn.ReadDefaultConfigFile()
	}
	if err != nil {
		return fail(err)
	}
	secs := strconv.Itoa(max(1, int(c.opts.Timeout/time.Second)))
	for _, opt := range []string{"client_mount_timeout", "rados_mon_op_timeout", "rados_osd_op_timeout"} {
		if err := conn.SetConfigOption(opt, secs); err != nil {
			return fail(err)
		}
	}
	if err := conn.Connect(); err != nil {
		conn.Shutdown()
		return fail(err)
	}
	return conn, nil
}

// CreateImage creates an image with the cluster's default features
// (layering and exclusive-lock among them on pacific).
func (c *Cluster) CreateImage(pool, image string, size uint64) error {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	opts := rbd.NewRbdImageOptions()
	defer opts.Destroy()
	if err := rbd.CreateImage(ioctx, image, size, opts); err != nil {
		return wrap(err, "image "+pool+"/"+image)
	}
	return nil
}

// RemoveImage removes an image that has no snapshots.
func (c *Cluster) RemoveImage(pool, image string) error {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	return wrap(rbd.RemoveImage(ioctx, image), "image "+pool+"/"+image)
}

// OpenImage opens the head of an image for reading and writing.
func (c *Cluster) OpenImage(pool, image string) (rowengine.RBDImage, error) {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return nil, err
	}
	img, err := rbd.OpenImage(ioctx, image, rbd.NoSnapshot)
	if err != nil {
		return nil, wrap(err, "image "+pool+"/"+image)
	}
	c.breakStaleLock(img, pool+"/"+image)
	return &Image{img: img, ioctx: ioctx, spec: pool + "/" + image}, nil
}

// swapClientID records this run's client id in the state file and returns
// the previous run's.
func (c *Cluster) swapClientID(id int64) int64 {
	if c.opts.StateFile == "" {
		return 0
	}
	var previous int64
	if data, err := os.ReadFile(c.opts.StateFile); err == nil {
		previous, _ = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	}
	tmp := c.opts.StateFile + ".tmp"
	if f, err := os.Create(tmp); err == nil {
		_, err = fmt.Fprintln(f, id)
		err = errors.Join(err, f.Sync(), f.Close())
		if err == nil {
			_ = os.Rename(tmp, c.opts.StateFile)
		}
	}
	return previous
}

// breakStaleLock breaks the exclusive lock if the previous run's client
// holds it: that rowfsd is dead, but its watch lives on in the OSDs for
// 30 s, and until then the new run's first write would wait. Breaking
// blocklists the dead client, so nothing it had in flight lands later.
// Best effort: if anything fails, the write waits as it would have.
func (c *Cluster) breakStaleLock(img *rbd.Image, spec string) {
	c.mu.Lock()
	previous := c.previous
	c.mu.Unlock()
	if previous == 0 {
		return
	}
	owners, err := img.LockGetOwners()
	if err != nil || len(owners) == 0 {
		return
	}
	watchers, err := img.ListWatchers()
	if err != nil {
		return
	}
	for _, o := range owners {
		for _, w := range watchers {
			if w.Addr == o.Owner && w.Id == previous {
				if err := img.LockBreak(o.Mode, o.Owner); err == nil {
					c.opts.Logger.Info("broke the exclusive lock of this pool's previous rowfsd", "image", spec, "client", fmt.Sprintf("client.%d", w.Id))
				}
			}
		}
	}
}

// OpenSnapshot opens a snapshot of an image read-only.
func (c *Cluster) OpenSnapshot(pool, image, snap string) (rowengine.RBDImage, error) {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return nil, err
	}
	img, err := rbd.OpenImageReadOnly(ioctx, image, snap)
	if err != nil {
		return nil, wrap(err, "snapshot "+pool+"/"+image+"@"+snap)
	}
	return &Image{img: img, ioctx: ioctx, spec: pool + "/" + image + "@" + snap}, nil
}

// wrap turns a librbd error into one of rowengine's, naming what it was
// about.
func wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	var coded interface{ ErrorCode() int }
	errno := 0
	if errors.As(err, &coded) {
		errno = -coded.ErrorCode()
		if errno < 0 {
			errno = -errno
		}
	}
	switch {
	case errors.Is(err, rbd.ErrNotFound) || syscall.Errno(errno) == syscall.ENOENT:
		return fmt.Errorf("%w: %s", rowengine.ErrNotFound, what)
	case syscall.Errno(errno) == syscall.EEXIST:
		return fmt.Errorf("%w: %s", rowengine.ErrExists, what)
	case syscall.Errno(errno) == syscall.EBUSY || syscall.Errno(errno) == syscall.ENOTEMPTY:
		return fmt.Errorf("%w: %s: %v", rowengine.ErrBusy, what, err)
	case syscall.Errno(errno) == syscall.EROFS:
		return fmt.Errorf("%w: %s is locked by another client: %v", rowengine.ErrBusy, what, err)
	case syscall.Errno(errno) == syscall.ETIMEDOUT || syscall.Errno(errno) == syscall.ENOTCONN || syscall.Errno(errno) == syscall.ESHUTDOWN:
		return fmt.Errorf("%w: %s: Ceph did not answer: %v", rowengine.ErrUnavailable, what, err)
	case syscall.Errno(errno) == syscall.EINVAL || syscall.Errno(errno) == syscall.EDOM:
		return fmt.Errorf("%w: %s: %v", rowengine.ErrInvalidArgument, what, err)
	}
	return fmt.Errorf("%w: %s: %v", rowengine.ErrIO, what, err)
}

// CreateGroup creates an RBD group.
func (c *Cluster) CreateGroup(pool, group string) error {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	return wrap(rbd.GroupCreate(ioctx, group), "group "+pool+"/"+group)
}

// RemoveGroup removes a group and its group snapshots.
func (c *Cluster) RemoveGroup(pool, group string) error {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	return wrap(rbd.GroupRemove(ioctx, group), "group "+pool+"/"+group)
}

func (c *Cluster) GroupAddImage(pool, group, image string) error {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	return wrap(rbd.GroupImageAdd(ioctx, group, ioctx, image), "add "+image+" to group "+pool+"/"+group)
}

func (c *Cluster) GroupRemoveImage(pool, group, image string) error {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	return wrap(rbd.GroupImageRemove(ioctx, group, ioctx, image), "remove "+image+" from group "+pool+"/"+group)
}

func (c *Cluster) GroupSnapshot(pool, group, snap string) error {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	return wrap(rbd.GroupSnapCreate(ioctx, group, snap), "group snapshot "+pool+"/"+group+"@"+snap)
}

func (c *Cluster) GroupSnapshots(pool, group string) ([]string, error) {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return nil, err
	}
	snaps, err := rbd.GroupSnapList(ioctx, group)
	if err != nil {
		return nil, wrap(err, "group snapshots of "+pool+"/"+group)
	}
	out := make([]string, len(snaps))
	for i, s := range snaps {
		out[i] = s.Name
	}
	return out, nil
}

func (c *Cluster) GroupRollback(pool, group, snap string) error {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	return wrap(rbd.GroupSnapRollback(ioctx, group, snap), "roll group "+pool+"/"+group+" back to "+snap)
}

func (c *Cluster) GroupRemoveSnapshot(pool, group, snap string) error {
	ioctx, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	return wrap(rbd.GroupSnapRemove(ioctx, group, snap), "remove group snapshot "+pool+"/"+group+"@"+snap)
}
