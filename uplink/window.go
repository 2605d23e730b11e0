package uplink

// congestion bounds the forwarder's messages in flight the way TCP bounds
// its segments: start small, double per round trip while the hub keeps up
// (slow start), and halve when the hub stream says it is overloaded (429
// "too many requests": its ingest queue, 100,000 messages by default, is
// full). A fleet back from a hub outage then sends a few dozen readings per
// site at first instead of thousands, and a hub that cannot keep up sees
// each site back off instead of a storm of resent windows, each 429 ending
// a session that resends from the cursor.
type congestion struct {
	max      int     // WithWindow: never more in flight
	cwnd     float64 // the current bound
	ssthresh float64 // above this, grow by one per round trip only
}

// Window bounds: initialWindow fills a LAN round trip at once and reaches
// the default maximum of 8192 in seven round trips; minWindow keeps a busy
// hub's site sending something.
const (
	initialWindow = 64
	minWindow     = 16
)

func newCongestion(max int) congestion {
	c := congestion{max: max}
	c.idle()
	return c
}

// limit is the number of messages that may be in flight now.
func (c *congestion) limit() int { return int(c.cwnd) }

// acked grows the window by one per ack below ssthresh (doubling it per
// round trip) and by one per window of acks above it.
func (c *congestion) acked() {
	if c.cwnd < c.ssthresh {
		c.cwnd++
	} else {
		c.cwnd += 1 / c.cwnd
	}
	c.cwnd = min(c.cwnd, float64(c.max))
}

// busy halves the window after a 429, and remembers the level at which
// the hub could not keep up.
func (c *congestion) busy() {
	c.cwnd = c.halve()
}

// timedOut is the window after acks stopped for the ack timeout with the
// link up (a hub stream changing leaders, a path that lost the session):
// as TCP after a retransmission timeout, remember half the window as the
// level that did not get through and restart from the initial window, so
// the resend does not pour a whole window into the same trouble.
func (c *congestion) timedOut() {
	c.cwnd = min(float64(min(initialWindow, c.max)), c.halve())
}

// halve sets the growth threshold to half the window (never below
// minWindow) and returns it: the level that did not get through.
func (c *congestion) halve() float64 {
	c.ssthresh = max(c.cwnd/2, float64(min(minWindow, c.max)))
	return c.ssthresh
}

// idle forgets an overload once the backlog is sent: the next one (after
// an outage, a burst) starts small again and may grow to the maximum.
func (c *congestion) idle() {
	c.cwnd = float64(min(initialWindow, c.max))
	c.ssthresh = float64(c.max)
}
