package uplink

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The stall watchdog counts connected time only: a WAN outage longer than
// stall_timeout, and the start delay the forwarder holds once the link is
// back, are no stall, however long nothing was acknowledged before.
func TestForwarderOutageIsNoStall(t *testing.T) {
	w := newWANEnv(t, "s1")
	w.cfg.StallTimeout = 2 * time.Second
	logs := &fwLog{}
	// The longest delay, three stall timeouts: the watchdog looks several
	// times after the reconnect it saw, with the telemetry held and the
	// stall clock set to the delay's end.
	longest := func(o *options) { o.rnd = func(n int64) int64 { return n - 1 } }
	f := w.start(logs.logger(), WithWindow(256), WithLink(w.link), WithStartJitter(3*w.cfg.StallTimeout), longest)
	stop := w.flow("telemetry.flow", 10*time.Millisecond)
	w.waitHubPast(50, 30*time.Second, "flow reaching the hub")
	cutWAN(t, w.proxy, w.link)
	// The outage itself, with readings piling up: twice the stall timeout.
	time.Sleep(2 * w.cfg.StallTimeout)
	restoreWAN(t, w.proxy, w.link)
	n := stop()
	w.waitHub(n, 60*time.Second, "every reading at the hub")
	w.checkExactlyOnce(w.hubMsgs(), "TELEMETRY", "telemetry.flow", 1, n)
	if st := f.Status(); st.Stalls != 0 || strings.Contains(logs.String(), "stalled") {
		t.Fatalf("an outage counted as a stall (%d stalls):\n%s", st.Stalls, logs)
	}
}

// An outage that begins and ends while the forwarder backs off after a
// failed session is no stall either: the watchdog sees that the link
// reconnected and counts from there, not from the last ack before it.
func TestForwarderOutageDuringBackoffIsNoStall(t *testing.T) {
	w := newWANEnv(t, "s2")
	w.cfg.StallTimeout = 4 * time.Second
	w.publish("telemetry.x", 10, []byte("x"))
	failed := make(chan time.Time, 1)
	var once sync.Once
	failFirst := func(o *options) {
		inner := o.read
		o.read = func(ctx context.Context, str jetstream.Stream, from uint64, deliver func(jetstream.Msg) bool) error {
			first := false
			once.Do(func() { first = true })
			if first {
				failed <- time.Now()
				return errors.New("injected read failure")
			}
			return inner(ctx, str, from, deliver)
		}
	}
	logs := &fwLog{}
	// The first session fails at once and the next starts 7 s later; the
	// WAN is down from then until 4 s in. Connected without an ack: the
	// moment before the link notices the cut and the ~3 s from its return
	// to the next session, each less than the stall timeout.
	const backoff, restoreAt = 7 * time.Second, 4 * time.Second
	f := w.start(logs.logger(), WithWindow(256), WithLink(w.link), WithRetry(backoff, backoff), failFirst)
	var t0 time.Time
	select {
	case t0 = <-failed:
	case <-time.After(30 * time.Second):
		t.Fatal("the first session never read")
	}
	cutWAN(t, w.proxy, w.link)
	time.Sleep(time.Until(t0.Add(restoreAt))) // the rest of the outage
	if err := w.proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	w.waitHub(10, 30*time.Second, "backlog at the hub")
	w.checkExactlyOnce(w.hubMsgs(), "TELEMETRY", "telemetry.x", 1, 10)
	if st := f.Status(); st.Stalls != 0 || strings.Contains(logs.String(), "stalled") {
		t.Fatalf("an outage during the backoff counted as a stall (%d stalls):\n%s", st.Stalls, logs)
	}
}
