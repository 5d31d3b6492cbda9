// Package crashtest drives a mixed workload (writes, discards, syncs,
// snapshots, rollbacks, deletes, clones, flattens, volume create and
// delete) against a rowfs target, keeps the model of what a crash may
// leave behind, and checks a recovered target against it. The engine's
// crash-point tests, the power-loss test and the daemon's kill -9 loop
// all use it, through the Target and Reader interfaces.
//
// The model follows the durability promise, not the implementation: a
// sector written since its volume's last fsync may read as any value it
// held since then; a sector covered by an fsync reads exactly; snapshot
// create, rollback, clone and deletes are durable when they return, and the
// one operation in flight when the crash hit may or may not have happened.
//
// Nothing here is safe for concurrent use.
package crashtest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
)

// SectorSize is the unit the workload writes and checks: every 8-byte
// word of a sector holds its tag, so a torn or misplaced sector shows.
const SectorSize = 4096

// Model is what the target may hold. It is plain data, so a workload in a
// child process can save it for the parent that checks after the crash.
type Model struct {
	Volumes map[string]*Volume `json:"volumes"`
	// Inflight is the operation that had started, not returned, when the
	// model was saved.
	Inflight *Op    `json:"inflight,omitempty"`
	NextTag  uint64 `json:"next_tag"`
	NextName int    `json:"next_name"`
	Steps    int    `json:"steps"`
}

// Volume is one volume of the model.
type Volume struct {
	// Sectors holds, per sector, every tag it may read as; the last is
	// the newest. 0 is zeros.
	Sectors [][]uint64 `json:"sectors"`
	// Snapshots are exact: a snapshot never changes.
	Snapshots map[string][]uint64 `json:"snapshots"`
	// Clone is true while the volume still reads from its origin.
	Clone bool `json:"clone,omitempty"`
}

// Op is one workload operation.
type Op struct {
	Kind   string   `json:"kind"`
	Volume string   `json:"volume"`
	Snap   string   `json:"snap,omitempty"`
	Target string   `json:"target,omitempty"` // a clone's or new volume's name
	First  int      `json:"first,omitempty"`  // first sector
	Tags   []uint64 `json:"tags,omitempty"`   // written tags, or a clone's content
}

func (o *Op) String() string {
	switch o.Kind {
	case "write", "write-sync", "discard":
		return fmt.Sprintf("%s %s sectors %d+%d", o.Kind, o.Volume, o.First, len(o.Tags))
	case "clone":
		return fmt.Sprintf("clone %s@%s → %s", o.Volume, o.Snap, o.Target)
	}
	if o.Snap != "" {
		return fmt.Sprintf("%s %s@%s", o.Kind, o.Volume, o.Snap)
	}
	return o.Kind + " " + o.Volume
}

// NewModel is an empty model.
func NewModel() *Model { return &Model{Volumes: map[string]*Volume{}, NextTag: 1} }

// Save writes the model to path atomically (a rename), so a process
// killed at any point leaves the previous or the new model.
func (m *Model) Save(path string) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LoadModel reads a model saved by Save.
func LoadModel(path string) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := NewModel()
	return m, json.Unmarshal(b, m)
}

// Fill writes tag into every word of sector.
func Fill(sector []byte, tag uint64) {
	for i := 0; i+8 <= len(sector); i += 8 {
		binary.LittleEndian.PutUint64(sector[i:], tag)
	}
}

// TagOf decodes a sector, or reports it torn (words that differ).
func TagOf(sector []byte) (uint64, error) {
	tag := binary.LittleEndian.Uint64(sector)
	for i := 8; i+8 <= len(sector); i += 8 {
		if w := binary.LittleEndian.Uint64(sector[i:]); w != tag {
			return 0, fmt.Errorf("torn sector: word 0 is tag %d, word %d is %d", tag, i/8, w)
		}
	}
	return tag, nil
}

// Reader reads a target's state for Verify.
type Reader interface {
	Volumes() ([]string, error)
	Snapshots(volume string) ([]string, error) // visible snapshots only
	ReadVolume(volume string) ([]byte, error)
	ReadSnapshot(volume, snap string) ([]byte, error)
}

// Verify checks a recovered target against the model, and returns the
// model of what it found, for a workload to go on from.
func Verify(r Reader, m *Model) (*Model, error) {
	in := m.Inflight
	maybe := func(kind, vol string) bool { return in != nil && in.Kind == kind && in.Volume == vol }
	got, err := r.Volumes()
	if err != nil {
		return nil, err
	}
	out := &Model{Volumes: map[string]*Volume{}, NextTag: m.NextTag, NextName: m.NextName, Steps: m.Steps}
	for _, name := range got {
		mv := m.Volumes[name]
		switch {
		case mv != nil:
		case in != nil && (in.Kind == "create" || in.Kind == "clone") && in.Target == name:
			// The create or clone in flight happened: the new volume reads
			// as zeros or as the snapshot.
			mv = &Volume{Snapshots: map[string][]uint64{}, Clone: in.Kind == "clone"}
			for _, tag := range in.Tags {
				mv.Sectors = append(mv.Sectors, []uint64{tag})
			}
		default:
			return nil, fmt.Errorf("volume %q exists but the model has no such volume", name)
		}
		ov, err := verifyVolume(r, name, mv, in)
		if err != nil {
			return nil, err
		}
		out.Volumes[name] = ov
	}
	for name := range m.Volumes {
		if _, ok := out.Volumes[name]; !ok && !maybe("delete-volume", name) {
			return nil, fmt.Errorf("volume %q is missing", name)
		}
	}
	return out, nil
}

func verifyVolume(r Reader, name string, mv *Volume, in *Op) (*Volume, error) {
	data, err := r.ReadVolume(name)
	if err != nil {
		return nil, fmt.Errorf("read volume %q: %w", name, err)
	}
	tags, err := decode(data, len(mv.Sectors))
	if err != nil {
		return nil, fmt.Errorf("volume %q: %w", name, err)
	}
	ov := &Volume{Snapshots: map[string][]uint64{}, Clone: mv.Clone}
	rolledBack := in != nil && in.Kind == "rollback" && in.Volume == name && slices.Equal(tags, mv.Snapshots[in.Snap])
	for i, tag := range tags {
		if !rolledBack && !slices.Contains(mv.Sectors[i], tag) {
			return nil, fmt.Errorf("volume %q sector %d reads tag %d; the model allows %v (newest last)", name, i, tag, mv.Sectors[i])
		}
		ov.Sectors = append(ov.Sectors, []uint64{tag})
	}
	snaps, err := r.Snapshots(name)
	if err != nil {
		return nil, err
	}
	for _, s := range snaps {
		want, ok := mv.Snapshots[s]
		data, err := r.ReadSnapshot(name, s)
		if err != nil {
			return nil, fmt.Errorf("read snapshot %s@%s: %w", name, s, err)
		}
		got, err := decode(data, len(mv.Sectors))
		if err == nil && ok {
			got, err = decode(data, len(want))
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot %s@%s: %w", name, s, err)
		}
		switch {
		case ok && !slices.Equal(got, want):
			return nil, fmt.Errorf("snapshot %s@%s reads %v, want %v", name, s, got, want)
		case !ok && !(in != nil && in.Kind == "snapshot" && in.Volume == name && in.Snap == s):
			return nil, fmt.Errorf("snapshot %s@%s exists but the model has no such snapshot", name, s)
		case !ok:
			// The snapshot in flight was taken: each sector holds a value
			// the head may have had.
			for i, tag := range got {
				if !slices.Contains(mv.Sectors[i], tag) {
					return nil, fmt.Errorf("snapshot %s@%s (in flight) sector %d reads tag %d; the model allows %v", name, s, i, tag, mv.Sectors[i])
				}
			}
		}
		ov.Snapshots[s] = got
	}
	for s := range mv.Snapshots {
		if _, ok := ov.Snapshots[s]; !ok && !(in != nil && in.Kind == "delete-snapshot" && in.Volume == name && in.Snap == s) {
			return nil, fmt.Errorf("snapshot %s@%s is missing", name, s)
		}
	}
	return ov, nil
}

func decode(data []byte, sectors int) ([]uint64, error) {
	if len(data) != sectors*SectorSize {
		return nil, fmt.Errorf("%d bytes, want %d sectors of %d", len(data), sectors, SectorSize)
	}
	tags := make([]uint64, sectors)
	for i := range tags {
		tag, err := TagOf(data[i*SectorSize : (i+1)*SectorSize])
		if err != nil {
			return nil, fmt.Errorf("sector %d: %w", i, err)
		}
		tags[i] = tag
	}
	return tags, nil
}

// newest is what a volume reads when nothing crashed.
func (v *Volume) newest() []uint64 {
	out := make([]uint64, len(v.Sectors))
	for i, s := range v.Sectors {
		out[i] = s[len(s)-1]
	}
	return out
}

// settle makes every sector exactly its newest value (a durable point).
func (v *Volume) settle() {
	for i, s := range v.Sectors {
		v.Sectors[i] = []uint64{s[len(s)-1]}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Report prints a test's headline figure and, when ROWFS_REPORT names a
// file, appends it there: go test shows a passing test's output only with
// -v, and make test prints that file at the end.
func Report(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	fmt.Println(line)
	if path := os.Getenv("ROWFS_REPORT"); path != "" {
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
}
