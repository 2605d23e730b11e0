package uplink

import (
	"errors"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// pacerSim drives a pacer on a simulated clock: each message costs the
// wire compress times its size (the gate's count), as the leaf connection
// would send it.
type pacerSim struct {
	b          *pacer
	now        time.Time
	wire, sent int64
}

// newPacerSim starts a pacer at rate; counted: the pacer sees the
// simulated wire count, else a count that never moves.
func newPacerSim(rate float64, counted bool) *pacerSim {
	s := &pacerSim{}
	s.b = newPacer(rate, func() int64 {
		if counted {
			return s.wire
		}
		return 0
	})
	s.now = s.b.last
	return s
}

// run sends msg-byte messages as fast as the pacer allows for d and
// returns the message and wire bytes per second over that time.
func (s *pacerSim) run(d time.Duration, msg int, compress float64) (msgRate, wireRate float64) {
	end := s.now.Add(d)
	m0, w0 := s.sent, s.wire
	for s.now.Before(end) {
		sleep := s.b.charge(s.now, msg)
		s.sent += int64(msg)
		s.wire += int64(float64(msg) * compress)
		s.now = s.now.Add(max(sleep, time.Millisecond))
	}
	return float64(s.sent-m0) / d.Seconds(), float64(s.wire-w0) / d.Seconds()
}

func within(got, want, tol float64) bool { return got >= want*(1-tol) && got <= want*(1+tol) }

// uplink.bandwidth caps bytes on the wire, not message bytes: once the
// pacer has measured that the leaf connection sends a quarter of what the
// forwarder hands it, the forwarder may hand it four times the cap.
func TestPacerChargesWireBytes(t *testing.T) {
	const rate, msg = 10_000, 500
	s := newPacerSim(rate, true)

	// Nothing measured yet: a message costs its size (and a second of
	// burst is allowed).
	if m, _ := s.run(2*time.Second, msg, 0.25); m > 1.6*rate {
		t.Fatalf("before any measurement: %.0f message B/s, want at most the cap plus its burst", m)
	}
	m, w := s.run(10*time.Second, msg, 0.25)
	if !within(w, rate, 0.1) || !within(m, 4*rate, 0.1) {
		t.Fatalf("compressing 4:1: %.0f B/s on the wire, %.0f message B/s; want the cap (%d) on the wire and 4x it in messages", w, m, rate)
	}

	// A minute with nothing to forward while heartbeats cross the leaf:
	// they must not read as an expensive wire afterwards.
	s.now = s.now.Add(time.Minute)
	s.wire += 60_000
	if m, w := s.run(10*time.Second, msg, 0.25); !within(w, rate, 0.15) || !within(m, 4*rate, 0.15) {
		t.Fatalf("after an idle minute: %.0f B/s on the wire, %.0f message B/s", w, m)
	}

	// Readings that do not compress and cost more on the wire than their
	// size (framing, TLS): after a measurement the wire is at the cap.
	s.run(4*time.Second, msg, 1.5)
	if _, w := s.run(10*time.Second, msg, 1.5); !within(w, rate, 0.1) {
		t.Fatalf("incompressible: %.0f B/s on the wire, want the cap %d", w, rate)
	}

	// No wire count at all (a link that counts nothing): messages cost
	// their size.
	s = newPacerSim(rate, false)
	s.run(4*time.Second, msg, 0.25)
	if m, _ := s.run(10*time.Second, msg, 0.25); !within(m, rate, 0.1) {
		t.Fatalf("no wire count: %.0f message B/s, want the cap %d", m, rate)
	}
}

// uplink.bandwidth caps what the link carries, not what the forwarder
// hands the leaf: JSON readings compress several-fold on the leaf
// connection (s2_fast), so once the pacer has measured that, readings
// flow several times faster than charging their own size would allow,
// while the bytes the gate counts on their way to the hub stay under the
// cap.
func TestForwarderBandwidthOnTheWire(t *testing.T) {
	w := newWANEnv(t, "store-12")
	const rate = 50_000 // bytes/s on the wire
	w.cfg.Bandwidth = rate
	sensorBacklog(w.fwEnv, 4000)
	f := w.forwarder()
	forwarded := func() uint64 { return f.Status().Forwarded["TELEMETRY"] }
	// From the first measurement on (2 s), over 2,500 readings.
	testkit.WaitFor(t, 60*time.Second, func() error {
		if forwarded() < 1000 {
			return errors.New("still waiting for 1,000 readings forwarded")
		}
		return nil
	})
	n0, w0, t0 := forwarded(), w.link.SentUpstream(), time.Now()
	testkit.WaitFor(t, 60*time.Second, func() error {
		if forwarded() < 3500 {
			return errors.New("still waiting for 3,500 readings forwarded")
		}
		return nil
	})
	n1, w1, d := forwarded(), w.link.SentUpstream(), time.Since(t0).Seconds()
	wire, readings := float64(w1-w0)/d, float64(n1-n0)/d
	// Each message is more than its 310-byte JSON: charged by size, at
	// most rate/310 readings a second could go.
	bySize := float64(rate) / float64(len(sensorReading(1)(1)))
	t.Logf("%.0f readings/s, %.0f B/s on the wire (cap %d); charging message bytes would allow at most %.0f readings/s", readings, wire, rate, bySize)
	if wire > 1.15*rate {
		t.Errorf("%.0f B/s on the wire exceed the %d B/s cap", wire, rate)
	}
	if readings < 1.5*bySize {
		t.Errorf("%.0f readings/s: the compressed wire is not used (charging message bytes allows %.0f)", readings, bySize)
	}
	w.waitHub(4000, 60*time.Second, "every reading at the hub")
	w.checkExactlyOnce(w.hubMsgs(), "TELEMETRY", "telemetry.ambient", 1, 4000)
}
