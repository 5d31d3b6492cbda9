package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

func testSnapshots(n int) []api.Snapshot {
	out := make([]api.Snapshot, n)
	for i := range out {
		out[i] = api.Snapshot{Name: fmt.Sprintf("auto-%05d", i), ID: uint64(i + 2), Volume: "vm1", Parent: uint64(i + 1),
			Created: time.Unix(1_800_000_000+int64(i), 0).UTC(), Kind: "auto", Size: 8 << 30, OwnBytes: uint64(i) << 16,
			Path: "/mnt/.snapshots/vm1/" + fmt.Sprint(i)}
	}
	return out
}

// reencodeDoc is the document as json.Marshal of the whole struct gives
// it, dropping the oldest until it fits: what snapshotsDoc must equal.
func reencodeDoc(volume string, snaps []api.Snapshot, limit int) []byte {
	type doc struct {
		Volume    string         `json:"volume"`
		Snapshots []api.Snapshot `json:"snapshots"`
		Truncated bool           `json:"truncated"`
	}
	d := doc{Volume: volume, Snapshots: snaps}
	for {
		out, _ := json.Marshal(d)
		if len(out) < limit || len(d.Snapshots) == 0 {
			return out
		}
		d.Snapshots, d.Truncated = d.Snapshots[1:], true
	}
}

// TestSnapshotsDocOnePass: the snapshots xattr of 2,000 snapshots encodes
// each snapshot it keeps once and no other (it re-encoded the list per
// dropped entry: 7.7 s per getfattr), and is byte for byte the
// whole-struct encoding at every limit.
func TestSnapshotsDocOnePass(t *testing.T) {
	snaps := testSnapshots(2000)
	encodings := 0
	counting := func(v any) ([]byte, error) { encodings++; return json.Marshal(v) }
	const xattrLimit = 64 << 10
	doc, err := snapshotsDoc("vm1", snaps, xattrLimit, counting)
	if err != nil {
		t.Fatal(err)
	}
	var kept struct{ Snapshots []api.Snapshot }
	if err := json.Unmarshal(doc, &kept); err != nil {
		t.Fatal(err)
	}
	// The kept ones, the first that did not fit, and the volume's name.
	if want := len(kept.Snapshots) + 2; encodings != want {
		t.Errorf("%d encodings for a document of %d of %d snapshots; want %d", encodings, len(kept.Snapshots), len(snaps), want)
	}
	if len(doc) >= xattrLimit {
		t.Errorf("document of %d bytes, limit %d", len(doc), xattrLimit)
	}
	if want := reencodeDoc("vm1", snaps, xattrLimit); !bytes.Equal(doc, want) {
		t.Errorf("document differs from the whole-struct encoding:\n got %.200s\nwant %.200s", doc, want)
	}
	small := snaps[:5]
	for limit := 0; limit < 1500; limit += 7 {
		got, _ := snapshotsDoc("vm1", small, limit, json.Marshal)
		if want := reencodeDoc("vm1", small, limit); !bytes.Equal(got, want) {
			t.Fatalf("limit %d:\n got %s\nwant %s", limit, got, want)
		}
	}
	got, _ := snapshotsDoc("vm1", nil, 100, json.Marshal)
	if want := reencodeDoc("vm1", []api.Snapshot{}, 100); !bytes.Equal(got, want) {
		t.Errorf("no snapshots: got %s want %s", got, want)
	}
}
