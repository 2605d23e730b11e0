package uplink

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/internal/wanfault"
)

// wanEnv is fwEnv with the WAN in between: the leaf reaches the hub only
// through a fault-injecting proxy, and a Link paces the remote as in the
// agent.
type wanEnv struct {
	*fwEnv
	proxy *wanfault.Proxy
	link  *Link
}

func newWANEnv(t testing.TB, site string) *wanEnv {
	t.Helper()
	return newWANEnvPaced(t, site, quickReconnect)
}

// newWANEnvPaced is newWANEnv with the link's backoff r: the shipped
// default (DefaultConfig) where a figure must hold for real sites.
// tune adjusts the link before it runs.
func newWANEnvPaced(t testing.TB, site string, r Reconnect, tune ...func(*Link)) *wanEnv {
	t.Helper()
	w := &wanEnv{}
	var gate *Gate
	w.fwEnv = newFwEnv(t, site, fwEnvOpts{
		// Without NoAdvertise the hub tells the leaf its direct address and
		// the leaf's next dial bypasses the proxy: the test would prove
		// nothing.
		hub:       func(o *server.Options) { o.LeafNode.NoAdvertise = true },
		remoteURL: proxyRemote(t, &w.proxy),
		leaf:      gateRemote(t, &gate),
	})
	w.linkUp(t, gate, r, tune...)
	return w
}

// linkUp paces w's leaf remote, routed through gate, with a Link (backoff
// r, tuned by tune) dialling the proxy, and waits until the leaf is
// connected through it.
func (w *wanEnv) linkUp(t testing.TB, gate *Gate, r Reconnect, tune ...func(*Link)) {
	t.Helper()
	w.cfg.HubURLs = []string{w.proxy.URL("nats")}
	w.link = runLink(t, w.fwEnv, gate, r, tune...)
	testkit.WaitFor(t, 15*time.Second, func() error {
		if !(w.link.Connected() && w.link.Status().Hub == w.proxy.Addr()) {
			return errors.New("still waiting for leaf connected through the proxy")
		}
		return nil
	})
}

// proxyRemote starts a WAN proxy in front of the remote's hub address, for
// fwEnvOpts.remoteURL, and stores it in *p.
func proxyRemote(t testing.TB, p **wanfault.Proxy) func(*url.URL) {
	return func(u *url.URL) {
		proxy, err := wanfault.Start(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(proxy.Close)
		*p = proxy
		u.Host = proxy.Addr()
	}
}

// gateRemote routes the leaf's remote through a Gate started with the
// leaf, as the agent does, for fwEnvOpts.leaf, and stores it in *g.
func gateRemote(t testing.TB, g **Gate) func(*server.Options) {
	return func(o *server.Options) {
		gate, err := GateRemote(o.LeafNode.Remotes[0])
		if err != nil {
			t.Fatal(err)
		}
		gate.Start()
		*g = gate
	}
}

// cutWAN cuts the proxy and waits until link sees the leaf connection down.
func cutWAN(t testing.TB, p *wanfault.Proxy, link *Link) {
	t.Helper()
	p.Cut()
	testkit.WaitFor(t, 15*time.Second, func() error {
		if link.Connected() {
			return errors.New("still waiting for link down after the cut")
		}
		return nil
	})
}

// restoreWAN restores the proxy and waits until link is connected again.
func restoreWAN(t testing.TB, p *wanfault.Proxy, link *Link) {
	t.Helper()
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 15*time.Second, func() error {
		if !link.Connected() {
			return errors.New("still waiting for link back after the restore")
		}
		return nil
	})
}

// quickReconnect is the tests' backoff: newFwEnv starts the leaf with a
// 100 ms ReconnectInterval, short next to it, as ServerReconnectInterval
// would make it.
var quickReconnect = Reconnect{Min: 100 * time.Millisecond, Max: time.Second}

// runLink paces e's leaf remote with a Link as the agent does, with the
// backoff r. g is the gate GateRemote routed the remote through, started
// with the leaf; e.cfg.HubURLs must name the remote's URLs. tune adjusts
// the link before it runs.
func runLink(t testing.TB, e *fwEnv, g *Gate, r Reconnect, tune ...func(*Link)) *Link {
	t.Helper()
	e.cfg.Reconnect = r
	link := NewLink(e.leaf, g, e.cfg, NewHistory(e.st), slog.New(slog.DiscardHandler))
	for _, f := range tune {
		f(link)
	}
	e.leaf.SetLoggerV2(link.Logger(lineLog{}), false, false, false)
	e.link = link
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = link.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return link
}

func (w *wanEnv) forwarder() *runningFw {
	return w.start(nil, WithWindow(256), WithLink(w.link))
}

// flow publishes readings into the local stream at a steady pace until
// stopped, as the sampler does; stop returns how many the local stream
// holds. A publish is never cut short: one abandoned mid-request could be
// stored after stop counted, and the audit would see one reading too many.
func (w *wanEnv) flow(subject string, every time.Duration) (stop func() uint64) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = w.leafJS.Publish(pctx, subject, []byte(`{"v":1}`))
			pcancel()
		}
	}()
	return func() uint64 {
		close(quit)
		<-done
		ictx, icancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer icancel()
		s, err := w.leafJS.Stream(ictx, "TELEMETRY")
		if err != nil {
			w.t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}
}

// restoreToAck cuts the WAN for outage, restores it, and returns how long
// the first new reading took to reach the hub after the restore.
func (w *wanEnv) restoreToAck(t testing.TB, outage time.Duration) time.Duration {
	t.Helper()
	cutWAN(t, w.proxy, w.link)
	time.Sleep(outage) // the outage itself, not a wait for a condition
	before := w.hubCount()
	if err := w.proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	w.waitHubPast(before, 30*time.Second, "first reading at the hub after restore")
	return time.Since(restored)
}

func TestWANOutage(t *testing.T) {
	w := newWANEnv(t, "store-9")
	w.forwarder()
	stop := w.flow("telemetry.flow", 2*time.Millisecond)
	w.waitHubPast(100, 30*time.Second, "flow reaching the hub")
	d := w.restoreToAck(t, 2*time.Second)
	t.Logf("WAN restore -> first hub ack: %s", d)
	n := stop()
	w.waitHub(n, 60*time.Second, "every reading at the hub")
	w.checkExactlyOnce(w.hubMsgs(), "TELEMETRY", "telemetry.flow", 1, n)
	if st := w.link.Status(); st.Reconnects < 1 || st.Hub != w.proxy.Addr() {
		t.Fatalf("link status after the outage = %+v", st)
	}
}

func TestWANFlaps(t *testing.T) {
	w := newWANEnv(t, "store-10")
	w.forwarder()
	stop := w.flow("telemetry.flow", 2*time.Millisecond)
	start := time.Now()
	for i := range 100 {
		time.Sleep(time.Duration(10+rand.IntN(190)) * time.Millisecond) // random flap spacing
		if i%2 == 0 {
			if err := w.proxy.Reset(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		w.proxy.Cut()
		time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
		if err := w.proxy.Restore(); err != nil {
			t.Fatal(err)
		}
	}
	n := stop()
	t.Logf("100 flaps in %s, %d readings, link reconnects %d", time.Since(start).Round(time.Millisecond), n, w.link.Status().Reconnects)
	w.waitHub(n, 40*time.Second, "every reading at the hub")
	w.checkExactlyOnce(w.hubMsgs(), "TELEMETRY", "telemetry.flow", 1, n)
}

func TestWANShapedBacklogDrains(t *testing.T) {
	w := newWANEnv(t, "store-11")
	const n, size = 1000, 512
	// Random, so incompressible: the leaf connection compresses, and the
	// payload rate of zeros would say nothing about the shaped link.
	w.publishRandom("telemetry.backlog", n, size)
	if err := w.proxy.Shape(100*time.Millisecond, 125_000); err != nil { // 200 ms RTT, 1 Mbit/s
		t.Fatal(err)
	}
	start := time.Now()
	w.forwarder()
	w.waitHub(n, 60*time.Second, "backlog drained")
	rate := float64(n*size) / time.Since(start).Seconds()
	ratio := rate / 125_000
	t.Logf("drained %d x %d B in %s: %.0f B/s payload = %.0f%% of the shaped 1 Mbit/s", n, size, time.Since(start).Round(time.Millisecond), rate, 100*ratio)
	if ratio < 0.5 {
		t.Errorf("backlog drained at %.0f%% of the shaped bandwidth, want > 50%%", 100*ratio)
	}
	w.checkExactlyOnce(w.hubMsgs(), "TELEMETRY", "telemetry.backlog", 1, n)
}

// TestLinkRestoreWatch runs the link with a backoff long enough to matter
// (min 3 s, so every wait after a failure is 3-6 s or more) and restores
// the WAN early in such a wait. Either way the link must notice the hub
// answering again and connect before the backoff's attempt. Unplugged
// (dials get no answer, as when a store's own WAN dies) it tells the
// forwarder so (WANRestored: skip the drain ramp); cut (dials refused: the
// hub's host is there, the hub is not) it does not, because the whole
// fleet is returning with it.
func TestLinkRestoreWatch(t *testing.T) {
	w := newWANEnvPaced(t, "store-13", Reconnect{Min: 3 * time.Second, Max: time.Minute})
	for _, c := range []struct {
		name     string
		down     func() error
		restored bool
	}{
		{"unplugged", w.proxy.Unplug, true},
		{"cut", func() error { w.proxy.Cut(); return nil }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			testkit.WaitFor(t, 30*time.Second, func() error {
				if !w.link.Connected() {
					return errors.New("still waiting for link up")
				}
				return nil
			})
			if err := c.down(); err != nil {
				t.Fatal(err)
			}
			next := w.restoreInBackoff(t)
			testkit.WaitFor(t, 30*time.Second, func() error {
				if !w.link.Connected() {
					return errors.New("still waiting for link up after the restore")
				}
				return nil
			})
			st := w.link.Status()
			if !st.LastConnected.Before(next) {
				t.Fatalf("connected at %s, not before the backoff's attempt due at %s", st.LastConnected.Format(time.TimeOnly+".000"), next.Format(time.TimeOnly+".000"))
			}
			if got := w.link.WANRestored(); got != c.restored {
				t.Fatalf("WANRestored() = %v, want %v", got, c.restored)
			}
		})
	}
}

// restoreInBackoff waits for a backoff wait that follows a failed attempt
// and has more than 1.5 s left, restores the proxy there, and returns when
// that wait would have ended.
func (w *wanEnv) restoreInBackoff(t *testing.T) (next time.Time) {
	t.Helper()
	testkit.WaitFor(t, 90*time.Second, func() error {
		st := w.link.Status()
		next = st.NextAttempt
		// A wait after a drop is at most min (3 s): longer ones follow a
		// failed attempt.
		if !(st.State == StateDisconnected && time.Until(next) > 3*time.Second) {
			return errors.New("still waiting for a long backoff wait after a failed attempt")
		}
		return nil
	})
	if err := w.proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	if time.Until(next) < 1500*time.Millisecond {
		t.Fatalf("backoff wait ends at %s, too soon to tell an early dial from the backoff's", next.Format(time.TimeOnly+".000"))
	}
	return next
}

// TestLinkHubReturn: a hub down for 8 s (its address refuses, as a host
// whose nats-server is not running) and back. With reconnect.min 10s the
// backoff alone waits 10-20 s after the refused retry, so the first
// reading would reach the hub 12 s or more after its return (the random
// draws are pinned to the middle of each range: the drop's retry at 5 s,
// the next wait 15 s). Watching the refusing hub, the link dials within
// one check interval (plus its jitter) and the spread delay of the hub
// accepting again.
func TestLinkHubReturn(t *testing.T) {
	r := Reconnect{Min: 10 * time.Second, Max: time.Minute}
	w := newWANEnvPaced(t, "store-14", r, func(l *Link) { l.bo.rnd = func(n int64) int64 { return n / 2 } })
	w.forwarder()
	stop := w.flow("telemetry.flow", 20*time.Millisecond)
	defer stop()
	w.waitHubPast(10, 30*time.Second, "flow reaching the hub")

	cutWAN(t, w.proxy, w.link)
	drop := w.link.Status()
	testkit.WaitFor(t, 15*time.Second, func() error {
		if w.link.Status().Attempts <= 0 {
			return errors.New("still waiting for a refused retry")
		}
		return nil
	})
	// The outage's times count from the drop: a failed retry moves none.
	if st := w.link.Status(); !st.Since.Equal(drop.Since) || !st.DownSince.Equal(drop.Since) || !st.LastUp.Equal(drop.Since) || st.DownSince.IsZero() {
		t.Errorf("after a failed retry: since %v, down_since %v, last_up %v; want all %v (the drop)", st.Since, st.DownSince, st.LastUp, drop.Since)
	}
	time.Sleep(8*time.Second - 5*time.Second) // the rest of the outage, after the retry at 5 s
	before := w.hubCount()
	if err := w.proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	// One check interval with its jitter and the spread delay take about
	// 3.3 s; half of reconnect.min leaves a loaded machine room and still
	// fails the backoff's 12 s.
	bound := max(restoreWatchEvery*5/4+min(restoreWatchEvery, r.Min)+time.Second, r.Min/2)
	w.waitHubPast(before, 30*time.Second, "first reading at the hub after its return")
	took := time.Since(back)
	t.Logf("hub back -> first reading at the hub: %s (bound %s; the backoff alone: 12 s or more)", took.Round(time.Millisecond), bound)
	if took > bound {
		t.Fatalf("first reading %s after the hub's return, want within %s", took.Round(time.Millisecond), bound)
	}
	st := w.link.Status()
	if w.link.WANRestored() {
		t.Error("WANRestored after a hub outage: the forwarder would skip the drain ramp the fleet needs")
	}
	if st.LastOutage < 8*time.Second || st.Attempts != 0 || !st.DownSince.IsZero() {
		t.Errorf("after the return: last outage %s (want >= 8s), attempts %d, down since %v", st.LastOutage, st.Attempts, st.DownSince)
	}
}
