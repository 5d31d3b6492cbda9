package rowengine

import (
	"fmt"
	"maps"
	"slices"
)

import "github.com/rowfs/rowfs/blockmap"

type blockmapTxn = blockmap.Txn

func (p *Pool) debugBlock(index uint64) string {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	out := ""
	for _, id := range slices.Sorted(maps.Keys(p.nodes)) {
		n := p.nodes[id]
		pid := uint64(0)
		if n.parent != nil {
			pid = n.parent.rec.ID
		}
		vol := ""
		if n.vol != nil {
			vol = n.vol.rec.Name
		}
		e := n.table.get(index)
		out += fmt.Sprintf("node %d vol %s name %s parent %d(rec %d) hidden %v size %d: phys %d owner %d\n", id, vol, n.rec.Name, pid, n.rec.Parent, n.rec.Hidden, n.rec.Size, int64(e.phys), e.owner)
	}
	return out
}
