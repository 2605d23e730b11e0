package human

import (
	"testing"
	"time"
)

func TestWords(t *testing.T) {
	day := 24 * time.Hour
	for _, c := range []struct{ got, want string }{
		{Age(0), "0s"},
		{Age(42 * time.Second), "42s"},
		{Age(3 * time.Minute), "3m"},
		{Age(3*time.Minute + 12*time.Second), "3m 12s"},
		{Age(5*time.Hour + 59*time.Second), "5h"},
		{Age(3*day + 4*time.Hour + 12*time.Minute), "3d 4h"},
		{Days(5 * time.Hour), "5h"},
		{Days(day + time.Hour), "1 day"},
		{Days(3*day + time.Minute), "3 days"},
		{Bytes(512), "512 B"},
		{Bytes(84 << 20), "84.0 MiB"},
		{Offset(200 * time.Millisecond), "0.2s ahead of"},
		{Offset(-(3*time.Minute + 12*time.Second)), "3m 12s behind"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
