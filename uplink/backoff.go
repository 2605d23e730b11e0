package uplink

import (
	"math/rand/v2"
	"time"

	"github.com/edge-agent/edge-agent/internal/retry"
)

// backoff spaces reconnect attempts: exponential growth from Min to Max with
// full jitter inside each step, so 1,700 sites that lost the hub in the same
// second spread their reconnects over the whole window instead of arriving
// together, and a single blip still retries within Min.
//
// It also keeps the count of failed attempts since the last connect, with
// one exception to plain doubling: the first attempt that finds the hub
// reachable again after it was not (see fail) restarts the ramp. After an
// outage every site's wait is drawn from [Min, Max], which spreads the herd
// as intended; but the first attempts reach a hub that is still warming up
// and busy with the others, and some fail in the handshake (the fleet
// simulation shows "Authentication Timeout", "Read Error", dropped SYNs).
// Drawing the next wait from [Min, Max] again would put those sites back
// only after up to 2-3·Max (make fleet-sim shows the tail); restarting
// the ramp retries them within 2·Min, 4·Min, ... so the fleet is back within
// about Max of the hub's return, while a hub that stays unhealthy still
// sees each site's attempts slow down to one per Max.
type backoff struct {
	min, max time.Duration
	// rnd returns a uniform value in [0, n); replaceable so tests can pin it.
	rnd func(n int64) int64

	// failures counts failed attempts since the last connect.
	failures int
	// hubDown: an attempt since the last connect found the hub
	// unreachable. restarted: the ramp restarted since then; once per
	// outage bounds the extra attempts a flapping hub gets.
	hubDown, restarted bool
}

func newBackoff(r Reconnect) backoff {
	return backoff{min: r.Min, max: r.Max, rnd: rand.Int64N}
}

// connected starts a fresh ramp for the next outage.
func (b *backoff) connected() { b.failures, b.hubDown, b.restarted = 0, false, false }

// fail records a failed attempt. reachable says the hub's address answered
// (a TCP connect, TLS if configured) right after it, so the attempt failed
// at the hub: busy, rejecting or misconfigured, but back.
func (b *backoff) fail(reachable bool) {
	switch {
	case !reachable:
		b.hubDown = true
		b.failures++
	case b.hubDown && !b.restarted:
		b.failures, b.restarted = 1, true
	default:
		b.failures++
	}
}

// next is the wait before the next attempt.
func (b *backoff) next() time.Duration { return b.delay(b.failures) }

// delay is the wait before attempt number failures+1. After a drop
// (failures == 0) it is uniform in [0, min]: a blip heals fast, yet a fleet
// dropped by a hub restart does not come back in one instant. After n
// failures it is uniform in [min, min(max, min·2^n)].
func (b *backoff) delay(failures int) time.Duration {
	if failures <= 0 {
		return time.Duration(b.rnd(int64(b.min) + 1))
	}
	ceil := retry.Exp(b.min, b.max, failures)
	return b.min + time.Duration(b.rnd(int64(ceil-b.min)+1))
}
