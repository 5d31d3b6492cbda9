package rowengine

import (
	"slices"
	"strings"
)

func sortByName(v []VolumeInfo) {
	slices.SortFunc(v, func(a, b VolumeInfo) int { return strings.Compare(a.Name, b.Name) })
}
