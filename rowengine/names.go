package rowengine

import "fmt"

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

// ValidateVolumeSize checks a virtual size.
func ValidateVolumeSize(size uint64) error {
	if size == 0 || size%SectorSize != 0 || size > MaxVolumeSize {
		return fmt.Errorf("%w: size %d: must be a positive multiple of %d bytes, at most %d (16 TiB)",
			ErrInvalidArgument, size, SectorSize, uint64(MaxVolumeSize))
	}
	return nil
}
