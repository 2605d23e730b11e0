package uplink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// BenchmarkHubRestart restarts the hub: an in-process nats-server with
// JetStream on a file store is shut down, held down, and started again on
// the same ports with the same store, as a hub host's service restart or
// upgrade does. Its leaf port refuses dials meanwhile. Three sites are
// leafs of it and publish a reading every 20 ms throughout; each restart
// is one sample per site of the time from the hub being ready again to
// that site's first new reading stored at the hub:
//
//   - fwd: the agent as shipped (backoff 1 s..60 s, hub watch, drain
//     ramp), forwarding into hub stream WATCH;
//   - backoff: the same with the hub watch off, the link before it, into
//     BACKOFF;
//   - src: stock nats-server, the same leaf remote without the agent's
//     link (nats-server's own fixed 1 s retry), and hub-side stream
//     sourcing of the site's TELEMETRY (SOURCED, External APIPrefix
//     $JS.<site>.API).
//
// The time runs from the restarted hub's ReadyForConnections. Stock
// sourcing mostly comes back about 40 s after a restart, whatever the
// hold: the restarted hub asks the site for its source consumer as it
// starts, before the leaf is back, waits out nats-server's 30 s for the
// lost answer and retries 10 s later; in some restarts it is back within
// a fraction of a second. That bounds most samples, so by default there
// are two restarts after a 5 s hold and one after 20 s (about 2.5 minutes
// in all); EDGE_BENCH_FULL=1 adds restarts and a 60 s hold.
//
// Metrics per hold: p50/p99 seconds per way, x_vs_backoff_p99 = backoff
// p99 / fwd p99 and x_vs_sourcing_p99 = src p99 / fwd p99. The issue's
// goal is fwd p99 ≤ 2.5 s after holds of 5 to 60 s (benchreport's goals
// table).
func BenchmarkHubRestart(b *testing.B) {
	s := time.Second
	short, long := 2, 1
	full := os.Getenv("EDGE_BENCH_FULL") == "1"
	if full {
		short, long = 6, 2
	}
	b.Run("hold=5s", func(b *testing.B) { benchHubRestarts(b, 5*s, short) })
	b.Run("hold=20s", func(b *testing.B) { benchHubRestarts(b, 20*s, long) })
	if full {
		b.Run("hold=60s", func(b *testing.B) { benchHubRestarts(b, 60*s, long) })
	}
}

// restartSite is one site of the hub restart bench: its leaf, for the
// agent's ways the link pacing it (a wanEnv without a proxy, for its
// flow), and the hub stream its readings reach.
type restartSite struct {
	*wanEnv
	stream string
}

// benchHubRestarts restarts the hub n times, each time holding it down
// for hold, and reports the return figures.
func benchHubRestarts(b *testing.B, hold time.Duration, n int) {
	ho := testkit.HubOpts(b)
	// Fixed ports: the restarted hub is where the sites dial.
	ho.Port, ho.LeafNode.Port = testkit.FreePort(b), testkit.FreePort(b)
	agentSite := func(name string, sh *fwEnv, tune ...func(*Link)) restartSite {
		var gate *Gate
		e := newFwEnv(b, name, fwEnvOpts{hubOpts: ho, sharedHub: sh, noStream: true,
			leaf: func(o *server.Options) {
				var err error
				if gate, err = GateRemote(o.LeafNode.Remotes[0]); err != nil {
					b.Fatal(err)
				}
				gate.Start()
			}})
		runLink(b, e, gate, DefaultConfig().Reconnect, tune...)
		return restartSite{wanEnv: &wanEnv{fwEnv: e, link: e.link}}
	}
	fwd := agentSite("hub-watch", nil)
	hub := fwd.hub
	old := agentSite("hub-backoff", fwd.fwEnv, func(l *Link) { l.hubWatch = false })
	// nats-server's default leaf retry, as a stock leaf has it.
	stock := newFwEnv(b, "hub-stock", fwEnvOpts{sharedHub: fwd.fwEnv, leaf: func(o *server.Options) { o.LeafNode.ReconnectInterval = 0 }})
	src := restartSite{wanEnv: &wanEnv{fwEnv: stock}, stream: "SOURCED"}
	fwd.stream, old.stream = "WATCH", "BACKOFF"

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range []restartSite{fwd, old} {
		c := hubops.HubStreamConfig(s.stream, "edge", 2*time.Hour)
		c.Subjects = []string{"edge." + s.site + ".>"}
		if _, err := fwd.hubJS.CreateStream(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	sourceSite(b, fwd.hubJS, src.stream, src.site)
	sites := []restartSite{fwd, old, src}
	for _, s := range sites[:2] {
		s.start(nil, WithLink(s.link), WithStartJitter(s.cfg.Reconnect.Min)) // as agent/wire_uplink.go
	}
	for _, s := range sites {
		stop := s.flow("telemetry.bench", 20*time.Millisecond)
		defer stop()
	}
	counts := func() ([]uint64, error) {
		jsz, err := hub.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
		if err != nil {
			return nil, err
		}
		byName := map[string]uint64{}
		for _, a := range jsz.AccountDetails {
			for _, st := range a.Streams {
				byName[st.Name] = st.State.Msgs
			}
		}
		out := make([]uint64, len(sites))
		for i, s := range sites {
			out[i] = byName[s.stream]
		}
		return out, nil
	}
	testkit.WaitFor(b, 30*time.Second, func() error {
		c, err := counts()
		if err != nil {
			return err
		}
		if min(c[0], c[1], c[2]) <= 10 {
			return fmt.Errorf("still waiting for readings at the hub all three ways: %v", c)
		}
		return nil
	})

	samples := make([][]time.Duration, len(sites))
	for b.Loop() {
		for range n {
			hub.Shutdown()
			hub.WaitForShutdown()
			testkit.WaitFor(b, 15*time.Second, func() error {
				if fwd.link.Connected() || old.link.Connected() || stock.leaf.NumLeafNodes() > 0 {
					return errors.New("still waiting for every site to see the hub gone")
				}
				return nil
			})
			time.Sleep(hold) // the hub's downtime, not a wait for a condition
			restarted := *ho
			hub = testkit.RunServer(b, &restarted)
			for i, d := range firstReadings(b, counts) {
				samples[i] = append(samples[i], d)
			}
		}
	}
	b.ReportMetric(0, "ns/op") // one op is a whole series of restarts: meaningless
	p := func(i, q int) float64 { return pct(samples[i], q).Seconds() }
	for i, way := range []string{"fwd", "backoff", "src"} {
		b.ReportMetric(p(i, 50), way+"_p50_s")
		b.ReportMetric(p(i, 99), way+"_p99_s")
	}
	b.ReportMetric(p(1, 99)/p(0, 99), "x_vs_backoff_p99")
	b.ReportMetric(p(2, 99)/p(0, 99), "x_vs_sourcing_p99")
	b.Logf("%d restarts, hub down %s; fwd %v; backoff %v; src %v", len(samples[0]), hold, samples[0], samples[1], samples[2])
}

// firstReadings returns, per way, how long after now (the hub ready
// again) its hub stream first grew; a way that takes longer than
// sourcingGiveUp counts as sourcingGiveUp.
func firstReadings(t testing.TB, counts func() ([]uint64, error)) []time.Duration {
	t.Helper()
	ready := time.Now()
	before, err := counts()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]time.Duration, len(before))
	for left := len(got); left > 0; {
		time.Sleep(10 * time.Millisecond) // polling the hub's own figures
		now, err := counts()
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] == 0 && now[i] > before[i] {
				got[i], left = time.Since(ready), left-1
			}
		}
		if time.Since(ready) > sourcingGiveUp {
			for i := range got {
				if got[i] == 0 {
					got[i] = sourcingGiveUp
				}
			}
			break
		}
	}
	return got
}
