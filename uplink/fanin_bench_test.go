package uplink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// BenchmarkDrainFanIn is the hub's side of a fleet outage: many sites come
// back at once, each with a backlog, and all drain into one hub. Stock NATS
// does that with one hub stream sourcing every site (nats-server#8612: many
// sources into one stream top out early); edge-agent with one forwarder per
// site publishing into the hub stream. Both run against the same hub
// process, with the same sites and backlogs, in the same run. Besides the
// rates (all sites share this machine's two cores with the hub), it reports
// the hub process's CPU time per reading: in a fleet the sites bring their
// own CPUs and the hub's is what runs out, so the ratio of those is how
// many more readings per second one hub can take. A third way is the
// bound for the forwarder's exactly-once contract: each site's leaf has a
// bare client publishing the forwarder's messages as one fast batch
// (viaBareFastBatch), all at once, reading no local stream. Together they
// keep one forwarder's window unacknowledged: each its own would overflow
// the hub stream's ingest queue (429), which the forwarders' congestion
// control steers clear of and a fixed window cannot.
func BenchmarkDrainFanIn(b *testing.B) {
	sites, per := 20, 5_000
	if os.Getenv("EDGE_BENCH_FULL") == "1" {
		sites, per = 50, 20_000
	}
	b.Run(fmt.Sprintf("sites=%d", sites), func(b *testing.B) {
		bin := buildNATSServer(b)
		var fwd, src, fb, fwdCPU, srcCPU, fbCPU time.Duration
		for range b.N {
			d, cpu := fanIn(b, bin, sites, per, fanInForwarders)
			fwd, fwdCPU = fwd+d, fwdCPU+cpu
			d, cpu = fanIn(b, bin, sites, per, fanInSourcing)
			src, srcCPU = src+d, srcCPU+cpu
			d, cpu = fanIn(b, bin, sites, per, fanInFastBatches)
			fb, fbCPU = fb+d, fbCPU+cpu
		}
		total := float64(sites * per * b.N)
		b.ReportMetric(total/fwd.Seconds(), "msgs/s_forwarder")
		b.ReportMetric(total/src.Seconds(), "msgs/s_sourcing")
		b.ReportMetric(src.Seconds()/fwd.Seconds(), "x_vs_sourcing")
		b.ReportMetric(float64(fwdCPU.Microseconds())/total, "hub_cpu_us/reading_forwarder")
		b.ReportMetric(float64(srcCPU.Microseconds())/total, "hub_cpu_us/reading_sourcing")
		b.ReportMetric(srcCPU.Seconds()/fwdCPU.Seconds(), "x_hub_capacity_vs_sourcing")
		b.ReportMetric(total/fb.Seconds(), "msgs/s_hub_ceiling_fast_batch")
		b.ReportMetric(float64(fbCPU.Microseconds())/total, "hub_cpu_us/reading_hub_ceiling_fast_batch")
		b.ReportMetric(fbCPU.Seconds()/fwdCPU.Seconds(), "x_hub_capacity_vs_fast_batch_ceiling")
		b.ReportMetric(srcCPU.Seconds()/fbCPU.Seconds(), "fast_batch_ceiling_x_hub_capacity_vs_sourcing")
	})
}

// A fanInWay drains every site of a fan-in.
type fanInWay int

const (
	fanInForwarders  fanInWay = iota // a forwarder per site
	fanInSourcing                    // one hub stream sourcing every site
	fanInFastBatches                 // a bare fast-batch client per site
)

// fanIn starts one hub (the nats-server binary bin) and k sites with per
// readings each waiting (for the ways that read them), then times the
// drain of all of them by way, and measures the hub's CPU time for it. It
// tears everything down before it returns, so the next way does not run
// beside this one's servers.
func fanIn(b *testing.B, bin string, k, per int, way fanInWay) (elapsed, hubCPU time.Duration) {
	b.StopTimer()
	sc := &cleanupScope{TB: b}
	defer sc.end()
	hub := startHubProcess(sc, bin, false)
	hubEnv := hub.env(sc)
	envs := make([]*fwEnv, k)
	for i := range k {
		envs[i] = newFwEnv(sc, fmt.Sprintf("site%03d", i), fwEnvOpts{sharedHub: hubEnv})
	}
	for _, e := range envs {
		testkit.WaitFor(b, time.Minute, func() error {
			if e.leaf.NumLeafNodes() != 1 {
				return errors.New("still waiting for every site's leaf connection")
			}
			return nil
		})
	}
	var wg sync.WaitGroup
	if way != fanInFastBatches {
		for _, e := range envs {
			wg.Go(func() { e.publishRandom("telemetry.x", per, 128) })
		}
		wg.Wait()
	}
	ctx := context.Background()
	stream := "EDGE"
	if way == fanInSourcing {
		stream = "EDGE_PULL"
	}
	count := func() uint64 {
		s, err := hubEnv.hubJS.Stream(ctx, stream)
		if err != nil {
			return 0
		}
		return s.CachedInfo().State.Msgs
	}

	b.StartTimer()
	cpu0 := hub.cpu()
	t0 := time.Now()
	errs := make([]error, k)
	var failed atomic.Bool // a bare client gave up: stop waiting
	switch way {
	case fanInSourcing:
		cfg := hubops.SourcingStreamConfig(stream, "edge", envs[0].site, buffer.Lanes, 2*time.Hour)
		for _, e := range envs[1:] {
			cfg.Sources = append(cfg.Sources, hubops.SourcingStreamConfig(stream, "edge", e.site, buffer.Lanes, 0).Sources...)
		}
		cfg.Description = fmt.Sprintf("hub-pulls ingest of %d sites", k)
		if _, err := hubEnv.hubJS.CreateStream(ctx, cfg); err != nil {
			b.Fatal(err)
		}
	case fanInForwarders:
		for _, e := range envs {
			e.start(nil)
		}
	case fanInFastBatches:
		for i, e := range envs {
			wg.Go(func() {
				if errs[i] = bareFastBatch(e, per, max(1, fwdWindow/k)); errs[i] != nil {
					failed.Store(true)
				}
			})
		}
	}
	testkit.WaitFor(b, 30*time.Minute, func() error {
		if count() < uint64(k*per) && !failed.Load() {
			return errors.New("still waiting for every site's backlog at the hub")
		}
		return nil
	})
	elapsed, hubCPU = time.Since(t0), hub.cpu()-cpu0
	b.StopTimer()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return elapsed, hubCPU
}
