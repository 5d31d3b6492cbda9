//go:build ceph

package rbd

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rowfs/rowfs/rowengine"
	"github.com/rowfs/rowfs/rowengine/conformance"
)

// testCluster returns the cluster make test started (CEPH_CONF). Without
// one the test is skipped, loudly, unless ROWFS_REQUIRE_CEPH says the
// cluster must be there (make test sets it).
func testCluster(t *testing.T) rowengine.RBDCluster {
	t.Helper()
	conf := os.Getenv("CEPH_CONF")
	if conf == "" {
		if os.Getenv("ROWFS_REQUIRE_CEPH") != "" {
			t.Fatal("CEPH_CONF is not set but ROWFS_REQUIRE_CEPH is: the test cluster did not start")
		}
		t.Skip("SKIPPED: no Ceph cluster (set CEPH_CONF, or run make test, which starts one)")
	}
	return New(Options{Conf: conf, Timeout: 20 * time.Second})
}

func TestRBDVolumesConform(t *testing.T) {
	c := testCluster(t)
	clock := &rowengine.TestClock{}
	p := rowengine.TestPool(t, rowengine.Options{RBD: c, Now: clock.Now})
	run := time.Now().UnixNano() % 1e9
	conformance.Run(t, conformance.Backend{
		Pool: p, Kind: rowengine.BackendRBD, Clock: clock,
		Create: func(t *testing.T, name string, size uint64) error {
			_, err := p.CreateRBDVolume(name, "rbd", fmt.Sprintf("%s-%d", name, run), size)
			return err
		},
	})
}
