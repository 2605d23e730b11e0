package uplink

import (
	"math/rand/v2"
	"time"
)

// backoff spaces reconnect attempts: exponential growth from Min to Max with
// full jitter inside each step, so 1,700 sites that lost the hub in the same
// second spread their reconnects over the whole window instead of arriving
// together, and a single blip still retries within Min.
type backoff struct {
	min, max time.Duration
	// rnd returns a uniform value in [0, n); replaceable so tests can pin it.
	rnd func(n int64) int64
}

func newBackoff(r Reconnect) backoff {
	return backoff{min: r.Min, max: r.Max, rnd: rand.Int64N}
}

// delay is the wait before attempt number failures+1. After a drop
// (failures == 0) it is uniform in [0, min]: a blip heals fast, yet a fleet
// dropped by a hub restart does not come back in one instant. After n
// failures it is uniform in [min, min(max, min·2^n)].
func (b backoff) delay(failures int) time.Duration {
	if failures <= 0 {
		return time.Duration(b.rnd(int64(b.min) + 1))
	}
	ceil := b.min
	for i := 0; i < failures && ceil < b.max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.max)
	return b.min + time.Duration(b.rnd(int64(ceil-b.min)+1))
}
