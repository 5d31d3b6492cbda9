package conformance

import (
	"testing"

	"github.com/rowfs/rowfs/rowengine"
)

func TestLocalVolumes(t *testing.T) {
	clock := &rowengine.TestClock{}
	p := rowengine.TestPool(t, rowengine.Options{Now: clock.Now})
	Run(t, Backend{
		Pool: p, Tree: true, Kind: rowengine.BackendRow, Clock: clock,
		Create: func(t *testing.T, name string, size uint64) error {
			_, err := p.CreateVolume(name, size)
			return err
		},
	})
}

// TestMemoryRBDVolumes runs the suite on RBD volumes over the in-memory
// cluster; rowengine/rbd runs it on a real one (make test), and the two
// must agree.
func TestMemoryRBDVolumes(t *testing.T) {
	clock := &rowengine.TestClock{}
	p := rowengine.TestPool(t, rowengine.Options{RBD: rowengine.NewMemoryRBD(), Now: clock.Now})
	Run(t, Backend{
		Pool: p, Kind: rowengine.BackendRBD, Clock: clock,
		Create: func(t *testing.T, name string, size uint64) error {
			_, err := p.CreateRBDVolume(name, "rbd", name+"-img", size)
			return err
		},
	})
}
