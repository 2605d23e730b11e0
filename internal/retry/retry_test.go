package retry

import (
	"math"
	"testing"
	"time"
)

func TestExp(t *testing.T) {
	cases := []struct {
		base, max time.Duration
		n         int
		want      time.Duration
	}{
		{time.Second, 10 * time.Second, -1, time.Second},
		{time.Second, 10 * time.Second, 0, time.Second},
		{time.Second, 10 * time.Second, 3, 8 * time.Second},
		{time.Second, 10 * time.Second, 4, 10 * time.Second},
		{time.Second, 10 * time.Second, 1 << 30, 10 * time.Second},
		{100 * time.Millisecond, time.Second, 2, 400 * time.Millisecond},
		{time.Hour, math.MaxInt64, 1 << 20, math.MaxInt64},
	}
	for _, c := range cases {
		if got := Exp(c.base, c.max, c.n); got != c.want {
			t.Errorf("Exp(%s, %s, %d) = %s, want %s", c.base, c.max, c.n, got, c.want)
		}
	}
}
