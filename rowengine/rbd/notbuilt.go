//go:build !ceph

package rbd

import (
	"fmt"

	"github.com/rowfs/rowfs/rowengine"
)

// BuiltIn reports whether this binary has the RBD backend.
const BuiltIn = false

// New returns a cluster that reports, on every call, that the backend is
// not built in.
func New(opts Options) rowengine.RBDCluster { return notBuilt{} }

type notBuilt struct{}

var errNotBuilt = fmt.Errorf("%w: the RBD backend is not built into this rowfsd: build it with make (needs librbd-dev and librados-dev)", rowengine.ErrUnavailable)

func (notBuilt) CreateImage(pool, image string, size uint64) error { return errNotBuilt }
func (notBuilt) RemoveImage(pool, image string) error              { return errNotBuilt }
func (notBuilt) OpenImage(pool, image string) (rowengine.RBDImage, error) {
	return nil, errNotBuilt
}
func (notBuilt) OpenSnapshot(pool, image, snap string) (rowengine.RBDImage, error) {
	return nil, errNotBuilt
}

func (notBuilt) CreateGroup(pool, group string) error                { return errNotBuilt }
func (notBuilt) RemoveGroup(pool, group string) error                { return errNotBuilt }
func (notBuilt) GroupAddImage(pool, group, image string) error       { return errNotBuilt }
func (notBuilt) GroupRemoveImage(pool, group, image string) error    { return errNotBuilt }
func (notBuilt) GroupSnapshot(pool, group, snap string) error        { return errNotBuilt }
func (notBuilt) GroupSnapshots(pool, group string) ([]string, error) { return nil, errNotBuilt }
func (notBuilt) GroupRollback(pool, group, snap string) error        { return errNotBuilt }
func (notBuilt) GroupRemoveSnapshot(pool, group, snap string) error  { return errNotBuilt }
