package api

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParsePeriod reads a duration as Go writes it (90s, 30m, 4h) or a whole
// number of days (1d, 90d), which policies, retention and --since use.
func ParsePeriod(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(strings.TrimSpace(s), "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 1<<20 {
			return 0, fmt.Errorf("period %q: want a whole number of days, like 7d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("period %q: want a duration like 30m, 4h or 7d", s)
	}
	return d, nil
}
