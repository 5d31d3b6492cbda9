package rowengine

import (
	"testing"
	"time"
)

func TestAutoSnapshotName(t *testing.T) {
	at := time.Date(2026, 12, 1, 16, 30, 0, 0, time.UTC)
	none := func(string) bool { return false }
	cases := []struct {
		last string
		now  time.Time
		want string
	}{
		{"", at, "auto-20261201T163000Z"},
		{"auto-20261201T163000Z", at, "auto-20261201T163000Z-2"},
		{"auto-20261201T163000Z-9", at, "auto-20261201T163000Z-10"},
		{"auto-20261201T163000Z-10", at.Add(time.Second), "auto-20261201T163001Z"},
		// The clock stepped back: the names go on from the last one.
		{"auto-20261201T170000Z-3", at, "auto-20261201T170000Z-4"},
		// A last name in another form (given by hand with --auto) is ignored.
		{"nightly", at, "auto-20261201T163000Z"},
		{"auto-20261201T163000Z-x", at, "auto-20261201T163000Z"},
	}
	for _, c := range cases {
		if got := autoSnapshotName("", c.last, c.now, none); got != c.want {
			t.Errorf("after %q at %s: %q, want %q", c.last, c.now, got, c.want)
		}
	}
	if got := autoSnapshotName("pre-resize", "", at, none); got != "auto-pre-resize-20261201T163000Z" {
		t.Errorf("pre-resize: %q", got)
	}
	if got := autoSnapshotName("pre-resize", "auto-pre-resize-20261201T163000Z", at, none); got != "auto-pre-resize-20261201T163000Z-2" {
		t.Errorf("second pre-resize in a second: %q", got)
	}
	if got := autoSnapshotName("", "auto-pre-resize-20261201T163000Z", at, none); got != "auto-20261201T163000Z" {
		t.Errorf("a plain one after a pre-resize one: %q", got)
	}
	taken := map[string]bool{"auto-20261201T163000Z": true, "auto-20261201T163000Z-2": true}
	if got := autoSnapshotName("", "", at, func(n string) bool { return taken[n] }); got != "auto-20261201T163000Z-3" {
		t.Errorf("with names in use: %q", got)
	}
}
