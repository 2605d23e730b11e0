// Package retry is the one exponential ramp the agent's retries share: the
// uplink's reconnects (which draw their jitter inside it), the forwarder's
// session retries and a failing sensor's reads. It lives at the module root
// because uplink and sensors both use it and neither may import the other.
package retry

import "time"

// Exp is base doubled n times, capped at max (n <= 0 gives base). It stops
// at the cap, so a count that keeps growing through a long outage never
// overflows.
func Exp(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 0; i < n && d < max; i++ {
		if d > max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}
