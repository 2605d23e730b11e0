package uplink

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// BenchmarkWANRestore measures, after each WAN restore, how long the first
// reading stored during the outage takes to be stored at the hub, two
// ways at once over the same leaf, link and proxy: the forwarder (hub
// stream EDGE) and stock nats-server stream sourcing of the site's
// TELEMETRY stream by a hub stream (SOURCED, External APIPrefix
// $JS.<site>.API). One outage/restore is one sample of each, so both see
// the same outage and the same link backoff.
//
// The link runs with the shipped backoff (uplink.reconnect 1s..60s) and
// the forwarder with the agent's drain ramp, and an outage is the WAN
// unplugged (wanfault Unplug: dials get no answer, as when a store's modem
// loses its uplink), so the figures hold for a real site: the link's
// restore watch, not a test-sized backoff, is what brings it back fast.
//
// Two regimes, because stock sourcing behaves very differently in them:
// a blip shorter than nats-server's source health check (10 s) leaves the
// source consumer on the leaf alive and delivery simply resumes; a longer
// outage makes the hub declare the source stalled and retry creating it
// with a backoff of 2 s + 10 s per failure (up to 2 min), failures that
// pile up while the WAN is down. Store outages are mostly the second kind.
//
// Metrics per regime: p50/p99 seconds per way, and x_vs_sourcing =
// sourcing p50 / forwarder p50 (x_vs_sourcing_p99 likewise). Few restores
// by default (about 6 minutes in all); EDGE_BENCH_FULL=1 for more and
// longer outages.
func BenchmarkWANRestore(b *testing.B) {
	s := time.Second
	blips := []time.Duration{2 * s, 5 * s, 2 * s, 5 * s}
	outages := []time.Duration{15 * s, 30 * s, 60 * s, 15 * s, 30 * s}
	if os.Getenv("EDGE_BENCH_FULL") == "1" {
		blips = slices.Repeat(blips, 3)
		outages = []time.Duration{15 * s, 30 * s, 60 * s, 120 * s, 15 * s, 30 * s, 60 * s, 15 * s, 30 * s, 120 * s}
	}
	b.Run("blip", func(b *testing.B) { benchRestores(b, "store-blip", blips) })
	b.Run("outage", func(b *testing.B) { benchRestores(b, "store-outage", outages) })
}

// benchRestores runs the outages (Unplug, then Restore) one after the
// other and reports the return figures.
func benchRestores(b *testing.B, site string, outages []time.Duration) {
	w := newWANEnvPaced(b, site, DefaultConfig().Reconnect)
	sourceSite(b, w.hubJS, "SOURCED", site)
	w.start(nil, WithLink(w.link), WithStartJitter(w.cfg.Reconnect.Min)) // as agent/wire_uplink.go
	stop := w.flow("telemetry.bench", 20*time.Millisecond)
	defer stop()
	count := func(stream string) uint64 {
		c, cc := context.WithTimeout(context.Background(), 5*time.Second)
		defer cc()
		s, err := w.hubJS.Stream(c, stream)
		if err != nil {
			return 0
		}
		return s.CachedInfo().State.Msgs
	}
	testkit.WaitFor(b, 30*time.Second, func() error {
		if !(count("EDGE") > 10 && count("SOURCED") > 10) {
			return errors.New("still waiting for readings at the hub both ways")
		}
		return nil
	})

	var fwd, src []time.Duration
	for b.Loop() {
		for _, outage := range outages {
			f, s := w.restoreBoth(b, outage, count)
			fwd, src = append(fwd, f), append(src, s)
		}
	}
	b.ReportMetric(0, "ns/op") // one op is a whole series of outages: meaningless
	fp50, fp99 := pct(fwd, 50), pct(fwd, 99)
	sp50, sp99 := pct(src, 50), pct(src, 99)
	b.ReportMetric(fp50.Seconds(), "fwd_p50_s")
	b.ReportMetric(fp99.Seconds(), "fwd_p99_s")
	b.ReportMetric(sp50.Seconds(), "src_p50_s")
	b.ReportMetric(sp99.Seconds(), "src_p99_s")
	b.ReportMetric(float64(sp50)/float64(fp50), "x_vs_sourcing")
	b.ReportMetric(float64(sp99)/float64(fp99), "x_vs_sourcing_p99")
	b.Logf("%d restores (outages %v); forwarder %v; sourcing %v", len(fwd), outages, fwd, src)
}

// sourceSite creates hub stream name, sourcing site's TELEMETRY over the
// leaf: stock nats-server stream sourcing, the benches' "hub pulls" peer.
func sourceSite(t testing.TB, js jetstream.JetStream, name, site string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Storage: jetstream.FileStorage,
		Sources: []*jetstream.StreamSource{{Name: "TELEMETRY", External: &jetstream.ExternalStream{
			APIPrefix: "$JS." + site + ".API", DeliverPrefix: "deliver." + site,
		}}},
	}); err != nil {
		t.Fatal(err)
	}
}

// sourcingGiveUp bounds one sourcing sample: stock sourcing may take far
// longer to resume than the forwarder, and the benchmark must end.
const sourcingGiveUp = 3 * time.Minute

// restoreBoth unplugs the WAN for outage, restores it, and
// returns how long the first new reading took to reach EDGE (forwarder)
// and SOURCED (sourcing) after the restore; a sourcing sample that gives
// up counts as sourcingGiveUp.
func (w *wanEnv) restoreBoth(t testing.TB, outage time.Duration, count func(string) uint64) (fwd, src time.Duration) {
	t.Helper()
	if err := w.proxy.Unplug(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 15*time.Second, func() error {
		if w.link.Connected() {
			return errors.New("still waiting for link down")
		}
		return nil
	})
	time.Sleep(outage) // the outage itself, not a wait for a condition
	beforeF, beforeS := count("EDGE"), count("SOURCED")
	if err := w.proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	for fwd == 0 || src == 0 {
		if fwd == 0 && count("EDGE") > beforeF {
			fwd = time.Since(restored)
		}
		if src == 0 && count("SOURCED") > beforeS {
			src = time.Since(restored)
		}
		if time.Since(restored) > sourcingGiveUp {
			if fwd == 0 {
				t.Fatalf("forwarder: no reading at the hub %s after the restore", sourcingGiveUp)
			}
			src = sourcingGiveUp
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fwd, src
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)]
}
