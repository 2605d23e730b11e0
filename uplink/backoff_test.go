package uplink

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// ceilingRnd pins the jitter to the top of each window, so waits are exact.
func ceilingRnd(n int64) int64 { return n - 1 }

func TestBackoffRestartsRampOncePerOutage(t *testing.T) {
	const ms = time.Millisecond
	b := backoff{min: 100 * ms, max: 3 * time.Second, rnd: ceilingRnd}
	step := func(reachable bool, want time.Duration) {
		t.Helper()
		b.fail(reachable)
		if got := b.next(); got != want {
			t.Fatalf("after fail(reachable=%v): next wait %s (failures %d), want %s", reachable, got, b.failures, want)
		}
	}
	// The hub is down: the ramp climbs to max and stays there.
	for _, w := range []time.Duration{200, 400, 800, 1600, 3000, 3000, 3000} {
		step(false, w*ms)
	}
	// It answers again but the attempt fails at it (busy): the ramp
	// restarts, so this site is not pushed another max away.
	step(true, 200*ms)
	step(true, 400*ms)
	// Once per outage: a flapping hub does not get quick retries forever.
	step(false, 800*ms)
	step(true, 1600*ms)
	step(true, 3000*ms)
	// A connect starts a fresh outage: a quick retry, then a new restart.
	b.connected()
	if got := b.next(); got != 100*ms {
		t.Fatalf("after a drop: next wait %s, want at most min (100ms)", got)
	}
	step(false, 200*ms)
	step(false, 400*ms)
	step(true, 200*ms)

	// A hub that was never unreachable (say, it rejects the credentials)
	// gets the plain ramp up to max.
	b.connected()
	for _, w := range []time.Duration{200, 400, 800, 1600, 3000, 3000} {
		step(true, w*ms)
	}
}

// waitLog keeps the link's "next attempt" decisions.
type waitLog struct {
	mu    sync.Mutex
	waits []nextAttempt
}

type nextAttempt struct {
	in       time.Duration
	failures int64
}

func (w *waitLog) Enabled(context.Context, slog.Level) bool { return true }
func (w *waitLog) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *waitLog) WithGroup(string) slog.Handler            { return w }
func (w *waitLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "next attempt" {
		return nil
	}
	var a nextAttempt
	r.Attrs(func(at slog.Attr) bool {
		switch at.Key {
		case "in":
			a.in = at.Value.Duration()
		case "failures":
			a.failures = at.Value.Int64()
		}
		return true
	})
	w.mu.Lock()
	w.waits = append(w.waits, a)
	w.mu.Unlock()
	return nil
}

func (w *waitLog) since(i int) []nextAttempt {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.waits[min(i, len(w.waits)):])
}

// busyHub accepts TCP on addr and closes each connection at once: a hub
// that is back but fails handshakes, as one warming up under a herd does
// ("Authentication Timeout", "Read Error").
func busyHub(t *testing.T, addr string) (stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s again: %v", addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				c.Close()
			}
		}
	}()
	return func() { l.Close(); <-done }
}

// TestLinkHubBackBusy drives a real link through a hub outage (refused
// port) until its backoff sits at max, then brings a hub back that accepts
// but fails the handshake. The link must retry within the restarted ramp
// (2·min, 4·min, ...), not another full max: the fleet-sim tail.
func TestLinkHubBackBusy(t *testing.T) {
	addr := closedPort(t)
	cfg := linkConfig(t, "nats://"+addr)
	cfg.Reconnect = Reconnect{Min: 20 * time.Millisecond, Max: 640 * time.Millisecond}
	log := &waitLog{}
	startLink(t, cfg, nil, func(l *Link) {
		l.bo.rnd = ceilingRnd
		l.log = slog.New(log)
	})
	testkit.WaitFor(t, 20*time.Second, func() error {
		w := log.since(0)
		if !(len(w) > 0 && w[len(w)-1].in == cfg.Reconnect.Max) {
			return errors.New("still waiting for backoff at max while the hub is down")
		}
		return nil
	})

	stop := busyHub(t, addr)
	defer stop()
	mark := len(log.since(0))
	// At most one attempt was refused before the listener was up.
	testkit.WaitFor(t, 20*time.Second, func() error {
		if len(log.since(mark)) < 4 {
			return errors.New("still waiting for four failed attempts after the hub came back")
		}
		return nil
	})
	after := log.since(mark)
	if after[0].in == cfg.Reconnect.Max {
		after = after[1:]
	}
	m := cfg.Reconnect.Min
	for i, want := range []nextAttempt{{2 * m, 1}, {4 * m, 2}, {8 * m, 3}} {
		if after[i] != want {
			t.Fatalf("failed attempt %d at the busy hub: next wait %s (failures %d), want %s (%d): all %v",
				i+1, after[i].in, after[i].failures, want.in, want.failures, after)
		}
	}
}

// erringHub answers each connection the way a hub that is too busy to
// finish the handshake does: an -ERR at once, the close a moment later.
func erringHub(t *testing.T) string {
	return fakeHub(t, func(c net.Conn) {
		_, _ = c.Write([]byte("-ERR 'Authentication Timeout'\r\n"))
		time.Sleep(300 * time.Millisecond) // the hub closes a moment after its error
	})
}

// TestLinkHandshakeErrorDoesNotStall: a hub that answers the handshake with
// an error and closes a moment later must not stall the link. The
// reload-based link once lost its pause signal there and held a site off the
// hub for 2·max after a hub restart (fleet-sim); attempts must keep coming at
// the backoff's pace.
func TestLinkHandshakeErrorDoesNotStall(t *testing.T) {
	cfg := linkConfig(t, "nats://"+erringHub(t))
	cfg.Reconnect = Reconnect{Min: 100 * time.Millisecond, Max: 10 * time.Second}
	log := &waitLog{}
	startLink(t, cfg, nil, func(l *Link) { l.log = slog.New(log) })
	// The backoff alone would allow 3 attempts in about 0.2+0.4+0.8 s;
	// a parked reconnect needs 2·max = 20 s for each.
	testkit.WaitFor(t, 15*time.Second, func() error {
		if len(log.since(0)) < 3 {
			return errors.New("still waiting for three failed attempts at a hub that errs in the handshake")
		}
		return nil
	})
}
