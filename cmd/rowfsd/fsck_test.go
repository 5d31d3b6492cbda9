package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rowfs/rowfs/blockmap"
)

// fixture is a deliberately broken pool under testdata/fsck.
type fixture struct {
	About      string        `json:"about"`
	DataBlocks int           `json:"data_blocks"`
	Meta       blockmap.Dump `json:"meta"`
}

// buildFixturePool writes a fixture's metadata and a data file whose block
// i is filled with byte i+1.
func buildFixturePool(t *testing.T, path, dir string) fixture {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fx fixture
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	store, err := blockmap.Open(blockmap.Options{Dir: filepath.Join(dir, "meta")})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Import(fx.Meta); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	bs := int(fx.Meta.Pool.BlockSize)
	var data []byte
	for i := range fx.DataBlocks {
		data = append(data, bytes.Repeat([]byte{byte(i + 1)}, bs)...)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return fx
}

// TestFsckFixtures runs rowctl fsck --pool on each broken pool: exit 2
// and a report naming each problem; --repair all lists the data it gives
// up and leaves a pool that checks clean, opens, and checks clean online.
func TestFsckFixtures(t *testing.T) {
	fixtures, _ := filepath.Glob("../../testdata/fsck/*.json")
	if len(fixtures) == 0 {
		t.Fatal("no fixtures under testdata/fsck")
	}
	for _, path := range fixtures {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			e := newEnv(t)
			fx := buildFixturePool(t, path, e.pool)
			r := rowctl(t, e.sock, "fsck", "--pool", e.pool)
			t.Logf("%s\nrowctl fsck --pool (exit %d):\n%s%s", fx.About, r.code, r.stdout, r.stderr)
			if r.code != 2 || !strings.Contains(r.stdout, "ERROR: ") || !strings.Contains(r.stdout, "errors were found on the pool") {
				t.Fatalf("want exit 2 and a report of errors")
			}
			var rep struct{ Corruptions, Leaks []string }
			if err := json.Unmarshal([]byte(rowctl(t, e.sock, "fsck", "--pool", e.pool, "--json").stdout), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Leaks) > 0 {
				// Leaks alone can be repaired with the corruptions left for later.
				r = rowctl(t, e.sock, "fsck", "--pool", e.pool, "--repair", "leaks")
				if r.code != 2 || strings.Contains(r.stdout, "Leaked:") || !strings.Contains(r.stdout, "REPAIRED: ") {
					t.Fatalf("--repair leaks: want exit 2, no leaks left, repairs listed; exit %d:\n%s%s", r.code, r.stdout, r.stderr)
				}
			}
			r = rowctl(t, e.sock, "fsck", "--pool", e.pool, "--repair", "all")
			t.Logf("rowctl fsck --pool --repair all (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
			if r.code != 0 || !strings.Contains(r.stdout, "REPAIRED: ") || !strings.Contains(r.stdout, "DATA LOST: ") {
				t.Fatalf("--repair all: want exit 0 with repairs and data lost listed")
			}
			if r = rowctl(t, e.sock, "fsck", "--pool", e.pool); r.code != 0 {
				t.Fatalf("fsck after repair: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
			}
			requireE2E(t)
			e.start()
			if r = rowctl(t, e.sock, "fsck"); r.code != 0 {
				t.Fatalf("online fsck of the repaired pool: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestFsckOnlineLeak: data in the pool file that no map points at is a
// leak (exit 3) that the running daemon repairs with --repair leaks.
func TestFsckOnlineLeak(t *testing.T) {
	requireE2E(t, "qemu-io")
	e := newEnv(t)
	e.start()
	mustRowctl(t, e.sock, "volume", "create", "vm", "--size", "1M")
	qemuIO(t, filepath.Join(e.mnt, "vm"), "none", "write -P 0x5a 0 128k")
	f, err := os.OpenFile(filepath.Join(e.pool, "data"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xee}, 64<<10), 10<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := rowctl(t, e.sock, "fsck")
	if r.code != 3 || !strings.Contains(r.stdout, "Leaked: 1 blocks (64 KiB)") {
		t.Fatalf("want exit 3 and one leaked block, got exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = rowctl(t, e.sock, "fsck", "--repair", "leaks")
	if r.code != 0 || !strings.Contains(r.stdout, "REPAIRED: punched 1 stray blocks") {
		t.Fatalf("--repair leaks: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	qemuIO(t, filepath.Join(e.mnt, "vm"), "none", "read -P 0x5a 0 128k")
}
