package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in the config as a Go duration
// ("90s", "5m", "168h") or with days ("7d", "1d12h"), because message
// lifetimes and retry spans are naturally counted in days.
type Duration struct {
	time.Duration
}

const day = 24 * time.Hour

// ParseDuration parses a Go duration that may also use "d" for days of
// 24 hours: "7d", "1.5d", "1d12h", "-2d", "0s".
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q: write a duration such as \"90s\", \"5m\", \"4h\" or \"7d\"", s)
	if !strings.Contains(s, "d") {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, bad
		}
		return d, nil
	}
	rest := s
	neg := false
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	if rest == "" {
		return 0, bad
	}
	var days time.Duration
	var other strings.Builder
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] == '.' || '0' <= rest[i] && rest[i] <= '9') {
			i++
		}
		j := i
		for j < len(rest) && rest[j] != '.' && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if num == "" || unit == "" {
			return 0, bad
		}
		if unit != "d" {
			other.WriteString(num + unit)
			continue
		}
		n, err := parseDays(num)
		if err != nil {
			return 0, bad
		}
		if days > math.MaxInt64-n {
			return 0, bad
		}
		days += n
	}
	var d time.Duration
	if other.Len() > 0 {
		var err error
		if d, err = time.ParseDuration(other.String()); err != nil {
			return 0, bad
		}
	}
	if days > math.MaxInt64-d {
		return 0, bad
	}
	d += days
	if neg {
		d = -d
	}
	return d, nil
}

// parseDays turns "7" or "1.5" into that many days.
func parseDays(num string) (time.Duration, error) {
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > int64(math.MaxInt64/day) {
			return 0, fmt.Errorf("days %q out of range", num)
		}
		return time.Duration(n) * day, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*float64(day) >= math.MaxInt64 {
		return 0, fmt.Errorf("days %q out of range", num)
	}
	return time.Duration(f * float64(day)), nil
}

// FormatDuration writes d the way a person would in the config: whole days
// as "7d", then hours, minutes and seconds without zero parts ("1d12h",
// "1m30s", "0s").
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	if d == math.MinInt64 {
		return d.String()
	}
	if d < 0 {
		return "-" + FormatDuration(-d)
	}
	var b strings.Builder
	if d >= day {
		fmt.Fprintf(&b, "%dd", d/day)
		d %= day
	}
	if d%time.Second != 0 {
		b.WriteString(d.String())
		return b.String()
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d %= u.unit
		}
	}
	return b.String()
}

// UnmarshalText parses a duration as ParseDuration does.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as FormatDuration does, so an encoded
// config reads like a hand-written one.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(FormatDuration(d.Duration)), nil
}

// String is FormatDuration.
func (d Duration) String() string {
	return FormatDuration(d.Duration)
}
