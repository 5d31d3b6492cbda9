package conformance

import (
	"testing"

	"github.com/rowfs/rowfs/rowengine"
)

func TestLocalVolumes(t *testing.T) {
	p := rowengine.TestPool(t, rowengine.Options{})
	Run(t, Backend{
		Pool: p, Tree: true, Kind: rowengine.BackendRow,
		Create: func(t *testing.T, name string, size uint64) error {
			_, err := p.CreateVolume(name, size)
			return err
		},
	})
}
