// Package human words durations and sizes for people: the daemon's
// warnings, the client's screens, doctor and the link's reasons must say
// them alike.
package human

import (
	"fmt"
	"strings"
	"time"
)

// Bytes prints sizes the way df -h does, in binary units.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Age prints a duration coarsely (two units at most): a technician needs
// "3d 4h", not nanoseconds.
func Age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return trimZero(fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60))
	case d < 24*time.Hour:
		return trimZero(fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60))
	}
	return trimZero(fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24))
}

// Days prints a duration in whole days ("1 day", "3 days"), or as Age
// when shorter than a day: certificate lifetimes.
func Days(d time.Duration) string {
	n := int(d.Hours() / 24)
	switch {
	case n == 1:
		return "1 day"
	case n > 1:
		return fmt.Sprintf("%d days", n)
	}
	return Age(d)
}

func trimZero(s string) string {
	if i := strings.IndexByte(s, ' '); i > 0 && strings.HasPrefix(s[i+1:], "0") {
		return s[:i]
	}
	return s
}

// Offset says "3m12s ahead of" or "0.2s behind".
func Offset(off time.Duration) string {
	dir := "ahead of"
	if off < 0 {
		dir, off = "behind", -off
	}
	if off < 10*time.Second {
		return fmt.Sprintf("%.1fs %s", off.Seconds(), dir)
	}
	return Age(off.Round(time.Second)) + " " + dir
}
