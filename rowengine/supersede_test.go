package rowengine

import (
	"slices"
	"testing"

	"github.com/rowfs/rowfs/blockmap"
)

func TestDropSuperseded(t *testing.T) {
	key := func(node, index uint64) blockmap.MapKey { return blockmap.MapKey{Node: node, Index: index} }
	changes := []blockmap.MapChange{
		{Key: key(1, 5), Phys: 10, Valid: 0b1},                 // superseded by the widening below
		{Key: key(1, 6), Phys: 11, Valid: 0b1},                 // the only change of its key
		{Key: key(2, 5), Phys: 12},                             // another node's block 5
		{Key: key(1, 5), Phys: 10, Valid: 0b11},                // superseded by the move
		{Key: key(3, 7), Phys: 13, Valid: 0b1, WithNext: true}, // a move, kept whole…
		{Key: key(1, 5), Delete: true},                         // …though a later change of its key follows
		{Key: key(3, 7), Phys: 14},                             // supersedes nothing of a group
		{Key: key(1, 5), Phys: 15},                             // the last of its key
		{Key: key(1, 8), Delete: true, WithNext: true},         // a group's first half is kept,
		{Key: key(1, 8), Phys: 16},                             // and so is its second
	}
	want := []blockmap.MapChange{changes[1], changes[2], changes[4], changes[5], changes[6], changes[7], changes[8], changes[9]}
	if got := dropSuperseded(slices.Clone(changes)); !slices.Equal(got, want) {
		t.Errorf("kept\n%v\nwant\n%v", got, want)
	}
	unique := []blockmap.MapChange{{Key: key(1, 1)}, {Key: key(1, 2)}, {Key: key(2, 1)}}
	if got := dropSuperseded(slices.Clone(unique)); !slices.Equal(got, unique) {
		t.Errorf("a batch without repeated keys became %v", got)
	}
}
