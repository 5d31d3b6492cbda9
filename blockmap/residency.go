package blockmap

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Badger maps each table file whole and keeps it mapped while the table
// lives: a table it writes (a memtable flush, a compaction) is copied into
// its mapping, a table it reads (the engine's load at open, fsck) is
// faulted in, and those pages then count in the daemon's resident memory
// until the table is deleted. So the resident set grew with the map on
// disk: 25 MiB of tables of a 16 GiB volume with 64 snapshots (issue 15),
// beyond the 16 B a mapped block the engine's own tables cost. rowfs keeps
// its maps in memory and reads Badger off the I/O path, so the Store asks
// the kernel to reclaim those pages (MADV_PAGEOUT; they are clean once
// Badger has msynced the table) every tableReleaseInterval, as a pool with
// a bounded cache would: Badger's block cache keeps the blocks it reads
// decompressed, and a table read again comes back from the file.
//
// The address ranges come from /proc/self/maps, so a range may be unmapped
// (Badger deletes a compacted table) and reused before the advice reaches
// it. MADV_PAGEOUT never changes what memory holds: dirty file pages are
// written back first and anonymous ones swapped or left, so a stale range
// costs page faults, never data.
const tableReleaseInterval = 2 * time.Second

// releaseLoop releases the tables' pages every tableReleaseInterval until
// stop closes, then closes done.
func (s *Store) releaseLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(tableReleaseInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if _, err := releaseTables(s.dir); err != nil {
				s.log.Debug("releasing metadata table pages", "err", err)
			}
		}
	}
}

// releaseTables advises the kernel to reclaim the pages of every table
// file of dir mapped in this process, and returns how many bytes of
// mappings it advised.
func releaseTables(dir string) (int64, error) {
	ranges, err := mappedFiles(dir, ".sst")
	if err != nil {
		return 0, err
	}
	var advised int64
	for _, r := range ranges {
		// Raw madvise on an address range this package never holds as a
		// slice: the range is only named, never dereferenced.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_PAGEOUT); errno != 0 {
			return advised, fmt.Errorf("madvise %s: %w", r.path, errno)
		}
		advised += int64(r.end - r.start)
	}
	return advised, nil
}

// mappedRange is one line of /proc/self/maps.
type mappedRange struct {
	start, end uintptr
	path       string
}

// mappedFiles lists this process's mappings of files directly in dir
// whose names end in suffix.
func mappedFiles(dir, suffix string) ([]mappedRange, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// The kernel names a mapping by its resolved path.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	var out []mappedRange
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		path := strings.Join(f[5:], " ")
		if !strings.HasSuffix(path, suffix) || filepath.Dir(path) != abs {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, mappedRange{start: uintptr(start), end: uintptr(end), path: path})
	}
	return out, sc.Err()
}
