package uplink

import (
	"testing"
	"time"
)

// The forwarder's Edge-Time formatting, which keeps the formatted second
// between readings, writes what time.RFC3339Nano does for any time, in any
// order.
func TestRFC3339Nano(t *testing.T) {
	base := time.Date(2026, 12, 6, 12, 30, 59, 0, time.FixedZone("X", 3600))
	var times []time.Time
	for _, ns := range []int{0, 1, 10, 120000000, 999999999, 500} {
		times = append(times, base.Add(time.Duration(ns)), base.Add(time.Second+time.Duration(ns)))
	}
	times = append(times, base.Add(-time.Second), time.Unix(0, -1), time.Unix(0, 0), time.Unix(-62135596801, 5),
		time.Date(10000, 1, 1, 0, 0, 0, 7, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 7, time.UTC), base)
	var c rfc3339Nano
	for _, ts := range times {
		if got, want := string(c.append(nil, ts)), ts.UTC().Format(time.RFC3339Nano); got != want {
			t.Errorf("%v: %s, want %s", ts, got, want)
		}
	}
}
