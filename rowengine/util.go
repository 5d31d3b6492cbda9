package rowengine

import (
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

func sortByName(v []VolumeInfo) {
	slices.SortFunc(v, func(a, b VolumeInfo) int { return strings.Compare(a.Name, b.Name) })
}

// hostFree is what the filesystem holding dir has free for root, in bytes.
func hostFree(dir string) uint64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0
	}
	return st.Bfree * uint64(st.Bsize)
}
