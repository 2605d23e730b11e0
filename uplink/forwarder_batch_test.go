package uplink

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/internal/wanfault"
)

// The fast batch path delivers every reading exactly once through WAN drops
// and a hub restart, and asks the hub for far fewer acks than readings.
// The hub forgets open batches when it restarts and a drop loses the tail
// of a batch; either way the session resends from the cursor in a new
// batch and the hub's duplicate window drops what it already stored.
func TestForwarderBatchExactlyOnce(t *testing.T) {
	var ho *server.Options
	var proxy *wanfault.Proxy
	var gate *Gate
	e := newFwEnv(t, "store-b", fwEnvOpts{
		hub: func(o *server.Options) {
			// Fixed ports and NoAdvertise: the restarted hub is where the
			// proxy and the test's client look for it.
			o.Port, o.LeafNode.Port, o.LeafNode.NoAdvertise = testkit.FreePort(t), testkit.FreePort(t), true
			ho = o
		},
		remoteURL: proxyRemote(t, &proxy),
		leaf:      gateRemote(t, &gate),
	})
	e.cfg.HubURLs = []string{proxy.URL("nats")}
	link := runLink(t, e, gate, quickReconnect)
	testkit.WaitFor(t, 15*time.Second, func() error {
		if !link.Connected() {
			return errors.New("still waiting for the leaf to connect through the proxy")
		}
		return nil
	})

	// A clean drain: the hub answers a flow ack per batch of readings.
	const first = 5000
	e.publish("telemetry.x", first, []byte("r"))
	f := e.start(nil, WithLink(link))
	e.waitCursor("TELEMETRY", first, 30*time.Second, "first backlog at the hub")
	if m := f.Status().Mode; m != ModeBatch {
		t.Fatalf("mode %q, want %q", m, ModeBatch)
	}
	lz, err := e.leaf.Leafz(nil)
	if err != nil || len(lz.Leafs) != 1 {
		t.Fatalf("leafz: %v %+v", err, lz)
	}
	if n := lz.Leafs[0].InMsgs; n > first/20 {
		t.Fatalf("the hub sent %d messages to the site for %d readings: acks are not batched", n, first)
	}

	// Drops and a hub restart in the middle of a larger drain, which a
	// 2 MB/s link (incompressible readings) stretches to a few seconds.
	const second = 20000
	if err := proxy.Shape(0, 2<<20); err != nil {
		t.Fatal(err)
	}
	e.publishRandom("telemetry.x", second, 128)
	const total = first + second
	midDrain := func() {
		t.Helper()
		c := e.st.Cursor("TELEMETRY")
		if c >= total {
			t.Fatalf("the drain ended before the fault (cursor %d): the test proves nothing; slow the link", c)
		}
	}
	for _, at := range []uint64{first + second/5, first + second/2} {
		testkit.WaitFor(t, 30*time.Second, func() error {
			if e.hubCount() <= at {
				return errors.New("still waiting for drain under way")
			}
			return nil
		})
		midDrain()
		cutWAN(t, proxy, link)
		if err := proxy.Restore(); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		if e.hubCount() <= first+3*second/4 {
			return errors.New("still waiting for drain under way")
		}
		return nil
	})
	midDrain()
	e.hub.Shutdown()
	e.hub.WaitForShutdown()
	restarted := *ho
	e.hub = testkit.RunServer(t, &restarted)
	e.waitCursor("TELEMETRY", total, 60*time.Second, "every reading at the hub")
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 1, total)
	if st := f.Status(); st.Mode != ModeBatch || st.Forwarded["TELEMETRY"] < total || st.DroppedDuplicate != 0 || st.Rejected != 0 {
		t.Fatalf("status after the drain: %+v", st)
	}
}

// A hub stream without allow_batched refuses the first batch before storing
// anything: the forwarder resends per message at once, says so in status,
// and tries batches again once the link comes back (a `hub init` may have
// allowed them meanwhile).
func TestForwarderBatchFallback(t *testing.T) {
	w := newWANEnv(t, "store-f")
	w.allowBatches(false)
	w.publish("telemetry.x", 300, []byte("r"))
	f := w.start(nil, WithLink(w.link))
	w.waitCursor("TELEMETRY", 300, 20*time.Second, "backlog at the hub")
	if st := f.Status(); st.Mode != ModePerMessage || st.LastError != "" {
		t.Fatalf("status against a stream without allow_batched: %+v", st)
	}
	w.checkExactlyOnce(w.hubMsgs(), "TELEMETRY", "telemetry.x", 1, 300)

	w.allowBatches(true)
	cutWAN(t, w.proxy, w.link)
	if err := w.proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	w.publish("telemetry.x", 300, []byte("r"))
	w.waitCursor("TELEMETRY", 600, 20*time.Second, "second backlog at the hub")
	if m := f.Status().Mode; m != ModeBatch {
		t.Fatalf("mode %q after allow_batched was set and the link came back, want %q", m, ModeBatch)
	}
	w.checkExactlyOnce(w.hubMsgs(), "TELEMETRY", "telemetry.x", 1, 600)
}

// A link drop too short for the session's overdue-ack tick to see still
// means another leaf connection, possibly to an upgraded or re-initialised
// hub: the session on the old connection ends and the next one probes
// fast batches again. The fake link drops and returns between two ticks
// while the real leaf stays up, so only the connection's identity changed.
func TestForwarderBatchReprobeAfterBlip(t *testing.T) {
	e := newFwEnv(t, "store-blip", fwEnvOpts{})
	e.leafUp()
	e.allowBatches(false)
	e.publish("telemetry.x", 100, []byte("r"))
	link := newFakeLink(true)
	f := e.start(nil, WithLink(link))
	e.waitCursor("TELEMETRY", 100, 20*time.Second, "backlog at the hub")
	if m := f.Status().Mode; m != ModePerMessage {
		t.Fatalf("mode %q against a stream without allow_batched, want %q", m, ModePerMessage)
	}

	e.allowBatches(true)
	link.set(false)
	link.set(true)
	// The next readings go once a session runs on the new connection:
	// the old one would send them per message until its next tick.
	testkit.WaitFor(t, 10*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.cur == nil || f.cur.conn != link.Up() {
			return errors.New("still waiting for a session on the new connection")
		}
		return nil
	})
	e.publish("telemetry.x", 100, []byte("r"))
	e.waitCursor("TELEMETRY", 200, 20*time.Second, "second backlog at the hub")
	if m := f.Status().Mode; m != ModeBatch {
		t.Fatalf("mode %q after the link dropped and came back within a tick, want %q", m, ModeBatch)
	}
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 1, 200)
}
