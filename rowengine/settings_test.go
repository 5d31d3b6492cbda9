package rowengine

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

// autoSnapshots lists a volume's visible snapshots whose names start with prefix.
func autoSnapshots(t *testing.T, p *Pool, volume, prefix string) []string {
	t.Helper()
	list, err := p.Snapshots(volume)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range list {
		if !s.Head && !s.Hidden && strings.HasPrefix(s.Name, prefix) {
			out = append(out, s.Name)
		}
	}
	return out
}

// readSnapshot reads n bytes at 0 of snapshot volume@name.
func readSnapshot(t *testing.T, p *Pool, volume, name string, n int) []byte {
	t.Helper()
	h, err := p.OpenSnapshot(volume, name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	buf := make([]byte, n)
	if _, err := h.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	return buf
}

// TestSnapshotsBeforeRiskyOperations: resize and reset take an automatic
// snapshot first (by default), rollback when the pool setting says so; each
// reads as the volume did before the operation. A refused operation takes
// none. The settings persist.
func TestSnapshotsBeforeRiskyOperations(t *testing.T) {
	dir := t.TempDir()
	opts := Options{BlockSize: MinBlockSize, CommitInterval: 1 << 40, CloseGrace: 1}
	p, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	before := bytes.Repeat([]byte("before"), 1000)
	h := mustCreate(t, p, "vm", 1<<20)
	h.WriteAt(before, 0)
	h.Close()

	if _, err := p.ResizeVolume("vm", 2<<20, false); err != nil {
		t.Fatal(err)
	}
	pre := autoSnapshots(t, p, "vm", "auto-pre-resize-")
	if len(pre) != 1 || !bytes.Equal(readSnapshot(t, p, "vm", pre[0], len(before)), before) {
		t.Fatalf("after a resize: pre-resize snapshots %v", pre)
	}
	if info, _ := p.Snapshot("vm", pre[0]); info.Size != 1<<20 || info.Kind != KindAuto {
		t.Errorf("pre-resize snapshot: size %d kind %s, want the size before and automatic", info.Size, info.Kind)
	}
	if _, err := p.ResizeVolume("vm", 2<<20, false); err != nil {
		t.Fatal(err)
	}
	if got := autoSnapshots(t, p, "vm", "auto-pre-resize-"); len(got) != 1 {
		t.Errorf("a resize to the same size took a snapshot: %v", got)
	}

	// Reset: zeros, with the old content kept in the pre-reset snapshot.
	if _, err := p.ResetVolume("vm", false); err != nil {
		t.Fatal(err)
	}
	h, _ = p.OpenVolume("vm", true)
	got := make([]byte, len(before))
	h.ReadAt(got, 0)
	if !bytes.Equal(got, make([]byte, len(before))) {
		t.Error("a reset volume does not read as zeros")
	}
	preReset := autoSnapshots(t, p, "vm", "auto-pre-reset-")
	if len(preReset) != 1 || !bytes.Equal(readSnapshot(t, p, "vm", preReset[0], len(before)), before) {
		t.Fatalf("pre-reset snapshots %v", preReset)
	}

	// Rollback: no snapshot by default; with the setting, one holding the
	// head as it was. A rollback refused (open for writing) takes none.
	h.WriteAt([]byte("discarded by the rollback"), 0)
	h.Sync()
	if _, err := p.SetSetting("snapshot-before-rollback", "true"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RollbackVolume("vm", preReset[0], false); !errors.Is(err, ErrBusy) {
		t.Fatalf("rollback while open for writing: %v, want ErrBusy", err)
	}
	if got := autoSnapshots(t, p, "vm", "auto-pre-rollback-"); len(got) != 0 {
		t.Errorf("a refused rollback took a snapshot: %v", got)
	}
	h.Close()
	if _, err := p.RollbackVolume("vm", preReset[0], false); err != nil {
		t.Fatal(err)
	}
	preRollback := autoSnapshots(t, p, "vm", "auto-pre-rollback-")
	if len(preRollback) != 1 || string(readSnapshot(t, p, "vm", preRollback[0], 25)) != "discarded by the rollback" {
		t.Fatalf("pre-rollback snapshots %v", preRollback)
	}

	for _, bad := range [][2]string{{"snapshot-before-lunch", "true"}, {"snapshot-before-resize", "maybe"}} {
		if _, err := p.SetSetting(bad[0], bad[1]); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("set %s=%s: %v, want ErrInvalidArgument", bad[0], bad[1], err)
		}
	}
	if _, err := p.SetSetting("snapshot-before-resize", "false"); err != nil {
		t.Fatal(err)
	}
	MustCheck(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if s := p.Settings(); s.SnapshotBeforeResize || !s.SnapshotBeforeReset || !s.SnapshotBeforeRollback {
		t.Fatalf("settings after reopen: %+v", s)
	}
	if _, err := p.ResizeVolume("vm", 4<<20, false); err != nil {
		t.Fatal(err)
	}
	if got := autoSnapshots(t, p, "vm", "auto-pre-resize-"); len(got) != 1 {
		t.Errorf("with snapshot-before-resize off a resize took a snapshot: %v", got)
	}
	MustCheck(t, p)
}

// TestResetClone: a clone goes back to the snapshot it was cloned from,
// keeping its own snapshots.
func TestResetClone(t *testing.T) {
	p := TestPool(t, Options{})
	h := mustCreate(t, p, "base", 1<<20)
	h.WriteAt([]byte("golden image"), 0)
	h.Close()
	mustSnapshot(t, p, "base", "gold")
	if _, err := p.CloneVolume("base", "gold", "vm"); err != nil {
		t.Fatal(err)
	}
	c, _ := p.OpenVolume("vm", true)
	c.WriteAt([]byte("guest changes"), 0)
	c.Close()
	mustSnapshot(t, p, "vm", "mine")
	if _, err := p.ResetVolume("vm", false); err != nil {
		t.Fatal(err)
	}
	c, _ = p.OpenVolume("vm", false)
	defer c.Close()
	got := make([]byte, 12)
	c.ReadAt(got, 0)
	if string(got) != "golden image" {
		t.Errorf("reset clone reads %q", got)
	}
	names := autoSnapshots(t, p, "vm", "")
	if !slices.Contains(names, "mine") || len(autoSnapshots(t, p, "vm", "auto-pre-reset-")) != 1 {
		t.Errorf("snapshots after the reset: %v", names)
	}
	if info, _ := p.Volume("vm"); info.Parent != "base@gold" {
		t.Errorf("reset clone's parent %q", info.Parent)
	}
}
