package api

import "testing"

func TestParseSize(t *testing.T) {
	good := map[string]uint64{"4096": 4096, "512M": 512 << 20, "10G": 10 << 30, "10g": 10 << 30, "1.5K": 1536,
		"2GiB": 2 << 30, "1T": 1 << 40, "0": 0, " 7 ": 7, "3 MB": 3 << 20}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "ten", "10X", "-1", "1.3", "99999999999999999999", "20000000000T"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 512: "512 B", 1024: "1 KiB", 1536: "1.5 KiB", 10 << 30: "10 GiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
