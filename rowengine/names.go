package rowengine

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// NameRule is the rule for volume names, quoted in every refusal.
const NameRule = "1–128 characters of A-Z a-z 0-9 . _ -, not starting with '.'"

// ValidateVolumeName checks a volume name against NameRule.
func ValidateVolumeName(name string) error {
	if len(name) == 0 || len(name) > 128 || name[0] == '.' {
		return fmt.Errorf("%w: volume name %q: names are %s", ErrInvalidArgument, name, NameRule)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: volume name %q: names are %s", ErrInvalidArgument, name, NameRule)
		}
	}
	return nil
}

// SnapshotNameRule is the rule for snapshot names (Alibaba's 2–128
// characters), quoted in every refusal.
const SnapshotNameRule = "2–128 characters of A-Z a-z 0-9 . _ -, not starting with '.'"

// ValidateSnapshotName checks a snapshot name against SnapshotNameRule;
// manual names may not start with AutoPrefix in any case ("Auto-x" and
// "AUTOx" look automatic to a reader and to a prune as well).
func ValidateSnapshotName(name string, auto bool) error {
	if len(name) < 2 || ValidateVolumeName(name) != nil {
		return fmt.Errorf("%w: snapshot name %q: names are %s", ErrInvalidArgument, name, SnapshotNameRule)
	}
	if !auto && strings.HasPrefix(strings.ToLower(name), AutoPrefix) {
		return fmt.Errorf("%w: snapshot name %q: names starting with %q (in any case) are reserved for automatic snapshots", ErrInvalidArgument, name, AutoPrefix)
	}
	return nil
}

// ValidateVolumeSize checks a virtual size.
func ValidateVolumeSize(size uint64) error {
	if size == 0 || size%SectorSize != 0 || size > MaxVolumeSize {
		return fmt.Errorf("%w: size %d: must be a positive multiple of %d bytes, at most %d (16 TiB)",
			ErrInvalidArgument, size, SectorSize, uint64(MaxVolumeSize))
	}
	return nil
}

// autoStampLayout is the UTC time in automatic snapshot names.
const autoStampLayout = "20060102T150405Z"

// autoSnapshotName names an automatic snapshot taken at now on a volume
// whose last automatic name was last (persisted with the volume):
// "auto-20261201T163000Z", then "…Z-2", "…Z-3" within the same second.
// Names only grow, as (time, count) pairs, so a name once given never
// names another snapshot of the volume: not after the snapshot it named
// was rotated out, nor when the clock steps back (the count goes on from
// the last name instead). taken skips names in use, for volumes whose last
// name was not kept (pools from before it was).
func autoSnapshotName(kind, last string, now time.Time, taken func(string) bool) string {
	stamp, count := autoKindPrefix(kind)+now.UTC().Format(autoStampLayout), 1
	if lastStamp, lastCount, ok := parseAutoName(kind, last); ok && lastStamp >= stamp {
		stamp, count = lastStamp, lastCount+1
	}
	for {
		name := stamp
		if count > 1 {
			name = fmt.Sprintf("%s-%d", stamp, count)
		}
		if !taken(name) {
			return name
		}
		count++
	}
}

// autoKindPrefix is what names of automatic snapshots of a kind start
// with: "auto-", or "auto-pre-resize-" for kind "pre-resize".
func autoKindPrefix(kind string) string {
	if kind == "" {
		return AutoPrefix + "-"
	}
	return AutoPrefix + "-" + kind + "-"
}

// parseAutoName splits a name autoSnapshotName gave for kind into its
// stamp ("auto-…Z") and count.
func parseAutoName(kind, name string) (stamp string, count int, ok bool) {
	prefix := autoKindPrefix(kind)
	n := len(prefix) + len(autoStampLayout)
	if len(name) < n || !strings.HasPrefix(name, prefix) {
		return "", 0, false
	}
	stamp, rest := name[:n], name[n:]
	if _, err := time.Parse(autoStampLayout, stamp[len(prefix):]); err != nil {
		return "", 0, false
	}
	if rest == "" {
		return stamp, 1, true
	}
	count, err := strconv.Atoi(strings.TrimPrefix(rest, "-"))
	if err != nil || !strings.HasPrefix(rest, "-") || count < 2 {
		return "", 0, false
	}
	return stamp, count, true
}
