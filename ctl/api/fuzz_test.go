package api

import (
	"strconv"
	"testing"
)

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4096", "10G", "1.5K", "", "-1", "99999999999999999999T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n > 0 {
			// Whatever parses must parse again from its plain byte count.
			if m, err := ParseSize(strconv.FormatUint(n, 10)); err != nil || m != n {
				t.Fatalf("%q → %d does not round-trip: %d, %v", s, n, m, err)
			}
		}
	})
}
