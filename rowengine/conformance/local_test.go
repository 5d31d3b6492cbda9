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
