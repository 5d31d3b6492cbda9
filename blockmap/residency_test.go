package blockmap

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// residentTables is the resident size of this process's mappings of
// dir's table files, from /proc/self/smaps.
func residentTables(t *testing.T, dir string) int64 {
	t.Helper()
	ranges, err := mappedFiles(dir, ".sst")
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]bool{}
	for _, r := range ranges {
		tables[strconv.FormatUint(uint64(r.start), 16)] = true
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rss int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if lo, _, ok := strings.Cut(line, "-"); ok && !strings.Contains(lo, " ") && !strings.HasSuffix(lo, ":") {
			in = tables[strings.TrimLeft(lo, "0")]
			continue
		}
		if rest, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("smaps line %q: %v", line, err)
			}
			rss += kb << 10
		}
	}
	return rss
}

// TestReleaseTables: the tables Badger reads (the engine's load at open)
// stay resident in their mappings until releaseTables hands them back.
func TestReleaseTables(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	changes := make([]MapChange, 200000)
	for i := range changes {
		changes[i] = MapChange{Key: MapKey{Node: 7, Index: uint64(i)}, Phys: uint64(i) * 3}
	}
	if err := s.ApplyMapChanges(changes); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // flushes the memtables to tables
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Stop the Store's own releases, so this test alone decides when.
	close(s.stopRelease)
	<-s.releaseDone
	s.stopRelease = nil // Close must not stop it again

	n := 0
	if err := s.ScanMappings(func(MapKey, uint64, uint32) error { n++; return nil }); err != nil || n != len(changes) {
		t.Fatalf("scan: %d entries, %v", n, err)
	}
	before := residentTables(t, dir)
	if before < 1<<20 {
		t.Fatalf("tables resident after a scan: %d B, want the scanned tables: the test proves nothing", before)
	}
	advised, err := releaseTables(dir)
	if err != nil {
		t.Fatal(err)
	}
	after := residentTables(t, dir)
	t.Logf("tables resident: %d KiB after a scan, %d KiB after releasing %d KiB of mappings", before>>10, after>>10, advised>>10)
	if after > before/10 {
		t.Fatalf("tables resident after the release: %d of %d B", after, before)
	}
	// Released pages read back from the files.
	n = 0
	if err := s.ScanMappings(func(k MapKey, phys uint64, _ uint32) error {
		if phys != k.Index*3 {
			t.Fatalf("entry %d → %d after the release", k.Index, phys)
		}
		n++
		return nil
	}); err != nil || n != len(changes) {
		t.Fatalf("scan after the release: %d entries, %v", n, err)
	}
}
