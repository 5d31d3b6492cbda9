package rowengine

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// planCase is a snapshot forest for the planner, written out: each node's
// parent and the blocks it wrote, and which nodes are deleted. What a merge
// frees follows from the writes alone (a naive model, not the engine's
// tables): s's block b is freed by merging s into c if c, or a node between
// c and s, wrote b too. Blocks take 4 bytes on disk; an upper-case letter
// is a partly written block holding 1 of its 4 sectors, which a merge of
// the node it reads the rest from first fills (3 bytes written).
type planCase struct {
	name    string
	nodes   []planCaseNode // parents before children, ids 1, 2, …
	deleted []string
	want    []string // DeleteStep.String of each step, in order
}

type planCaseNode struct {
	name, parent string
	writes       string // one letter a block; upper case: partly written
}

// planCaseBytes is what a block written as letter b takes on disk.
func planCaseBytes(b rune) uint64 {
	if unicode.IsUpper(b) {
		return 1
	}
	return 4
}

func (c planCase) tree() planTree {
	ids := map[string]uint64{}
	byID := map[uint64]planCaseNode{}
	t := planTree{nodes: map[uint64]*planNode{}}
	for i, n := range c.nodes {
		id := uint64(i + 1)
		ids[n.name], byID[id] = id, n
		var bytes uint64
		for _, b := range n.writes {
			bytes += planCaseBytes(b)
		}
		t.nodes[id] = &planNode{id: id, ref: n.name, owned: uint64(len(n.writes)), ownedBytes: bytes, parent: ids[n.parent]}
		if p := ids[n.parent]; p != 0 {
			t.nodes[p].children = append(t.nodes[p].children, id)
		}
	}
	for _, d := range c.deleted {
		t.nodes[ids[d]].hidden = true
	}
	t.freeable = func(s, d uint64) mergeFrees {
		var f mergeFrees
		for _, b := range byID[s].writes {
			for x := d; x != s && x != 0; x = t.nodes[x].parent {
				if i := strings.IndexFunc(byID[x].writes, func(r rune) bool { return unicode.ToLower(r) == unicode.ToLower(b) }); i >= 0 {
					f.blocks++
					f.bytes += planCaseBytes(b)
					if unicode.IsUpper(rune(byID[x].writes[i])) {
						f.filled += 3
					}
					break
				}
			}
		}
		return f
	}
	return t
}

func TestPlanReap(t *testing.T) {
	cases := []planCase{{
		// Alibaba's example: deleting snapshot 2 frees B1 (snapshot 3 has
		// its own B2) and hands C1 to snapshot 3.
		name: "alibaba delete of a middle snapshot",
		nodes: []planCaseNode{
			{"snap1", "", "abcd"}, {"snap2", "snap1", "bc"}, {"snap3", "snap2", "b"}, {"head", "snap3", ""},
		},
		deleted: []string{"snap2"},
		want:    []string{"merge snap2 into snap3: frees 1 blocks, moves 1"},
	}, {
		// ZStack's rollback timeline: after rolling back to snapshot 1 it
		// has two children (snapshot 2's branch and the new head), so
		// deleting it keeps it hidden.
		name: "zstack: a snapshot with two children stays hidden",
		nodes: []planCaseNode{
			{"snap1", "", "abcd"}, {"snap2", "snap1", "a"}, {"snap3", "snap2", "b"}, {"snap4", "snap3", "c"},
			{"old-head", "snap4", ""}, {"head", "snap1", "d"},
		},
		deleted: []string{"snap1"},
		want:    []string{"keep snap1 hidden: still read by head, snap2"},
	}, {
		name: "zstack: deleting the abandoned branch's newest snapshot merges it into the old head",
		nodes: []planCaseNode{
			{"snap1", "", "abcd"}, {"snap2", "snap1", "a"}, {"snap3", "snap2", "b"}, {"snap4", "snap3", "c"},
			{"old-head", "snap4", "c"}, {"head", "snap1", "d"},
		},
		deleted: []string{"snap4"},
		want:    []string{"merge snap4 into old-head: frees 1 blocks, moves 0"},
	}, {
		name: "a deleted leaf is removed whole",
		nodes: []planCaseNode{
			{"base", "", "ab"}, {"head", "base", "c"}, {"branch", "base", "abc"},
		},
		deleted: []string{"branch"},
		want:    []string{"remove branch: frees 3 blocks"},
	}, {
		// A hidden node kept for its two children: deleting one of them
		// unblocks it, and it merges into the other.
		name: "a hidden ancestor unblocked by the delete",
		nodes: []planCaseNode{
			{"root", "", "abcd"}, {"clone1", "root", "a"}, {"clone2", "root", "b"},
		},
		deleted: []string{"root", "clone2"},
		want: []string{
			"remove clone2: frees 1 blocks",
			"merge root into clone1: frees 1 blocks, moves 3",
		},
	}, {
		// The removal climbs: a leaf goes, then its parent is a leaf, and
		// its grandparent, kept for two children, has one left.
		name: "several levels unblocked",
		nodes: []planCaseNode{
			{"top", "", "abcd"}, {"mid", "top", "a"}, {"low", "mid", "b"}, {"keep", "top", "c"}, {"other-head", "keep", ""},
		},
		deleted: []string{"top", "mid", "low"},
		want: []string{
			"remove low: frees 1 blocks",
			"remove mid: frees 1 blocks",
			"merge top into keep: frees 1 blocks, moves 3",
		},
	}, {
		name: "three children: still kept after one goes",
		nodes: []planCaseNode{
			{"s", "", "ab"}, {"c1", "s", "a"}, {"c2", "s", ""}, {"c3", "s", "b"},
		},
		deleted: []string{"s", "c2"},
		want: []string{
			"remove c2: frees 0 blocks",
			"keep s hidden: still read by c1, c3",
		},
	}, {
		// A recursive delete of a subtree without a head: leaves first.
		name: "recursive delete of a branch",
		nodes: []planCaseNode{
			{"base", "", "abcd"}, {"head", "base", ""}, {"b1", "base", "a"}, {"b2", "b1", "b"}, {"b3", "b2", "c"},
			{"b2x", "b1", "d"},
		},
		deleted: []string{"b1", "b2", "b3", "b2x"},
		want: []string{
			"remove b2x: frees 1 blocks",
			"remove b3: frees 1 blocks",
			"remove b2: frees 1 blocks",
			"remove b1: frees 1 blocks",
		},
	}, {
		// A merge hands the child its parent's place: the grandparent,
		// deleted too, then has that child as its only one.
		name: "a chain of deleted snapshots merges down into the head",
		nodes: []planCaseNode{
			{"s1", "", "abcd"}, {"s2", "s1", "ab"}, {"s3", "s2", "a"}, {"head", "s3", "c"},
		},
		deleted: []string{"s1", "s2", "s3"},
		want: []string{
			"merge s3 into head: frees 0 blocks, moves 1",
			"merge s2 into head: frees 1 blocks, moves 1",
			"merge s1 into head: frees 3 blocks, moves 1",
		},
	}, {
		// Deleting a volume whose snapshot two clones read: the snapshot
		// stays for them; the rest of the volume goes.
		name: "volume delete with clones",
		nodes: []planCaseNode{
			{"vm@s0", "", "abcd"}, {"vm@s1", "vm@s0", "a"}, {"vm-head", "vm@s1", "b"},
			{"copy2", "vm@s1", "c"}, {"copy3", "vm@s1", ""}, {"vm@s2", "vm@s1", "d"}, {"copy4", "vm@s2", "a"},
		},
		deleted: []string{"vm@s0", "vm@s1", "vm-head", "vm@s2"},
		want: []string{
			"merge vm@s2 into copy4: frees 0 blocks, moves 1",
			"remove vm-head: frees 1 blocks",
			"merge vm@s0 into vm@s1: frees 1 blocks, moves 3",
			"keep vm@s1 hidden: still read by copy2, copy3, copy4",
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, s := range planReap(c.tree()) {
				got = append(got, s.String())
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

// TestPlanReapBytes: a plan's bytes count partly written blocks by their
// sectors, and a merge frees its node's block less what it fills in the
// child's partly written block over it.
func TestPlanReapBytes(t *testing.T) {
	c := planCase{
		nodes: []planCaseNode{
			{"s1", "", "abcd"}, {"s2", "s1", "AB"}, {"s3", "s2", "a"}, {"head", "s3", "C"}, {"branch", "s1", "d"},
		},
		deleted: []string{"s1", "s2", "s3", "branch"},
	}
	var got []string
	for _, s := range planReap(c.tree()) {
		got = append(got, fmt.Sprintf("%s %s into %s: frees %d bytes, moves %d, fills %d", s.Kind, s.Ref, s.IntoRef, s.FreedBytes, s.MovedBytes, s.FilledBytes))
	}
	want := []string{
		"remove branch into : frees 4 bytes, moves 0, fills 0",
		// s3's a moves (4 bytes).
		"merge s3 into head: frees 0 bytes, moves 4, fills 0",
		// s2's A is under the a that moved: freed (1 byte); its B moves.
		"merge s2 into head: frees 1 bytes, moves 1, fills 0",
		// s1's a is hidden: freed (4). Its b and c are under the partly
		// written B and C: freed (8), after 3 + 3 filled into them. Its
		// d moves.
		"merge s1 into head: frees 12 bytes, moves 4, fills 6",
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestPlanReapNothingDeleted: a forest without deleted nodes has no plan.
func TestPlanReapNothingDeleted(t *testing.T) {
	c := planCase{nodes: []planCaseNode{{"s", "", "a"}, {"head", "s", "b"}}}
	if steps := planReap(c.tree()); len(steps) != 0 {
		t.Errorf("steps %v", steps)
	}
}
