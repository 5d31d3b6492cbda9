package rowengine

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestScenarios replays the worked examples under testdata/scenarios (the
// command language is described at the top of zstack-rollback.txt),
// checking contents and capacities at every step they state.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("../testdata/scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios found: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runScenario(t, file)
		})
	}
}

const scenarioBlock = 4096

// tagBlock is the content a scenario's TAG stands for: one block whose
// bytes derive from the tag, so no two tags read alike.
func tagBlock(tag string) []byte {
	if tag == "-" {
		return make([]byte, scenarioBlock)
	}
	sum := sha256.Sum256([]byte(tag))
	return bytes.Repeat(sum[:], scenarioBlock/len(sum))
}

func runScenario(t *testing.T, file string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := TestPool(t, Options{BlockSize: scenarioBlock})
	settle := func() {
		WaitJobs(t, p)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	handles := map[string]*Handle{}
	closeAll := func() {
		for k, h := range handles {
			h.Close()
			delete(handles, k)
		}
	}
	// open returns a handle on VOL or VOL@SNAP.
	open := func(ref string) *Handle {
		if h := handles[ref]; h != nil {
			return h
		}
		var h *Handle
		var err error
		if vol, snap, ok := strings.Cut(ref, "@"); ok {
			h, err = p.OpenSnapshot(vol, snap)
		} else {
			h, err = p.OpenVolume(ref, true)
		}
		if err != nil {
			t.Fatalf("open %s: %v", ref, err)
		}
		handles[ref] = h
		return h
	}
	blockIndex := func(s string) int64 {
		if len(s) != 1 || s[0] < 'A' || s[0] > 'Z' {
			t.Fatalf("block %q: want a letter A–Z", s)
		}
		return int64(s[0]-'A') * scenarioBlock
	}
	atoi := func(s string) uint64 {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("number %q: %v", s, err)
		}
		return n
	}
	sc := bufio.NewScanner(f)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("%s:%d: %s: %s", filepath.Base(file), lineNo, line, strings.TrimSpace(fmt.Sprintf(format, args...)))
		}
		w := strings.Fields(line)
		vol, snap, _ := strings.Cut(w[1], "@")
		switch w[0] {
		case "create":
			size := atoi(strings.TrimSuffix(w[2], "K")) << 10
			if _, err := p.CreateVolume(w[1], size); err != nil {
				fail("%v", err)
			}
		case "write":
			if _, err := open(w[1]).WriteAt(tagBlock(w[3]), blockIndex(w[2])); err != nil {
				fail("%v", err)
			}
		case "snapshot":
			if _, err := p.CreateSnapshot(vol, snap, SnapshotOptions{}); err != nil {
				fail("%v", err)
			}
		case "rollback":
			closeAll()
			if _, err := p.RollbackVolume(vol, snap, false); err != nil {
				fail("%v", err)
			}
			settle()
		case "delete":
			want := map[string]uint64{}
			for _, kv := range w[2:] {
				k, v, _ := strings.Cut(kv, "=")
				want[k] = atoi(v) * scenarioBlock
			}
			closeAll()
			settle()
			dry, err := p.DeleteSnapshot(vol, snap, DeleteOptions{DryRun: true})
			if err != nil {
				fail("dry run: %v", err)
			}
			if dry.Plan.FreedBytes != want["freed"] || dry.Plan.MovedBytes != want["moved"] {
				fail("dry run frees %d and moves %d bytes, want %d and %d", dry.Plan.FreedBytes, dry.Plan.MovedBytes, want["freed"], want["moved"])
			}
			before := p.Info()
			if _, err := p.DeleteSnapshot(vol, snap, DeleteOptions{}); err != nil {
				fail("%v", err)
			}
			settle()
			after := p.Info()
			if freed := before.UsedBytes - after.UsedBytes; freed != want["freed"] {
				fail("freed %d bytes, want %d", freed, want["freed"])
			}
			if written := after.DataBytesWritten - before.DataBytesWritten; written != 0 {
				fail("delete wrote %d bytes to the pool data file", written)
			}
		case "delete-volume":
			closeAll()
			if _, err := p.DeleteVolume(w[1], false); err != nil {
				fail("%v", err)
			}
			settle()
		case "clone":
			if _, err := p.CloneVolume(vol, snap, w[2]); err != nil {
				fail("%v", err)
			}
		case "expect":
			h := open(w[1])
			for _, kv := range w[2:] {
				block, tag, _ := strings.Cut(kv, "=")
				got := make([]byte, scenarioBlock)
				if _, err := h.ReadAt(got, blockIndex(block)); err != nil {
					fail("read %s: %v", block, err)
				}
				if !bytes.Equal(got, tagBlock(tag)) {
					fail("block %s does not read as %s", block, tag)
				}
			}
		case "own":
			settle()
			var own uint64
			if snap != "" {
				info, err := p.Snapshot(vol, snap)
				if err != nil {
					fail("%v", err)
				}
				own = info.OwnBytes
			} else {
				info, err := p.Volume(vol)
				if err != nil {
					fail("%v", err)
				}
				own = info.UsedBytes
			}
			if want := atoi(w[2]) * scenarioBlock; own != want {
				fail("owns %d bytes, want %d", own, want)
			}
		case "used":
			settle()
			if used, want := p.Info().UsedBytes, atoi(w[1])*scenarioBlock; used != want {
				fail("pool uses %d bytes, want %d", used, want)
			}
		case "children":
			info, err := p.Snapshot(vol, snap)
			if err != nil {
				fail("%v", err)
			}
			if want := int(atoi(w[2])); info.Children != want {
				fail("%d children, want %d", info.Children, want)
			}
		default:
			fail("unknown command %q", w[0])
		}
		t.Logf("%s:%d ok: %s", filepath.Base(file), lineNo, line)
	}
	closeAll()
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}
