package uplink

import (
	"context"
	"math"
	"sync"
	"time"
)

// pacer is a token bucket in bytes on the wire: it caps what the site
// sends upstream on a metered link, while letting one message larger than
// a second's worth through (it goes into debt instead of blocking
// forever). The leaf connection compresses, frames and encrypts what the
// forwarder hands it, so a message's own size says little about what the
// link carries: with wire (the link gate's count of bytes sent upstream),
// each message is charged its size times the wire bytes per message byte
// measured over the last seconds, which also charges the forwarder for
// anything else crossing the leaf meanwhile. Without wire, or until a
// measurement, a message costs its size.
type pacer struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time // the last charge
	free   time.Time // when the wait for the last charge ended
	wire   func() int64
	ratio  float64 // wire bytes per message byte
	sent   int64   // message bytes charged so far
	// mark is where the current measurement started.
	mark struct {
		at         time.Time
		sent, wire int64
	}
}

// pacerBatch is the shortest wait: a sender in debt waits at least this
// long and then sends what it earned meanwhile in one go. Long enough for
// a write of several readings, short enough for an alert behind it.
const pacerBatch = 200 * time.Millisecond

// A measurement of the wire ratio spans at least ratioEvery and ratioBytes
// of messages, so heartbeats and the leaf's buffering do not sway it.
const (
	ratioEvery = 2 * time.Second
	ratioBytes = 16 << 10
)

func newPacer(rate float64, wire func() int64) *pacer {
	now := time.Now()
	p := &pacer{rate: rate, tokens: rate, last: now, free: now, wire: wire, ratio: 1}
	p.restart(now)
	return p
}

func (p *pacer) wait(ctx context.Context, n int) error {
	sleep := p.charge(time.Now(), n)
	if sleep <= 0 {
		return nil
	}
	t := time.NewTimer(sleep)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// charge takes a message of n bytes at now and returns how long the
// sender must wait to pay off the debt it leaves.
func (p *pacer) charge(now time.Time, n int) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.measure(now)
	p.tokens = math.Min(p.rate, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	p.last = now
	p.sent += int64(n)
	p.tokens -= float64(n) * p.ratio
	sleep := time.Duration(max(-p.tokens, 0) / p.rate * float64(time.Second))
	if sleep > 0 {
		// Pay off in installments of at least pacerBatch, so that what
		// follows goes out together: the leaf compresses each write on
		// its own, and one paced reading per write hardly compresses.
		sleep = max(sleep, pacerBatch)
	}
	p.free = now.Add(sleep)
	return sleep
}

// measure updates ratio from the traffic since the mark. After a pause it
// starts over: what crossed the leaf while the forwarder had nothing to
// send (heartbeats, replies) says nothing about readings. A span with no
// wire bytes at all (no count, or the link down) changes nothing.
func (p *pacer) measure(now time.Time) {
	switch {
	case p.wire == nil:
	case now.Sub(p.free) > ratioEvery:
		p.restart(now)
	case now.Sub(p.mark.at) >= ratioEvery && p.sent-p.mark.sent >= ratioBytes:
		if w := p.wire() - p.mark.wire; w > 0 {
			p.ratio = min(max(float64(w)/float64(p.sent-p.mark.sent), 1.0/64), 4)
		}
		p.restart(now)
	}
}

func (p *pacer) restart(now time.Time) {
	p.mark.at, p.mark.sent = now, p.sent
	if p.wire != nil {
		p.mark.wire = p.wire()
	}
}
