package uplink

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/buffer"
)

// BenchmarkDrain empties a backlog of 128-byte readings from the site into
// the hub, once through the forwarder and once through stock hub-side
// sourcing of the same stream over the same leaf (the "hub pulls" mode),
// and reports both rates and their ratio: on loopback, where both are CPU
// bound, and through a WAN proxy with a store's 100 ms round trip. 100k
// readings by default, EDGE_BENCH_FULL=1 for 1M.
func BenchmarkDrain(b *testing.B) {
	n := 100_000
	if os.Getenv("EDGE_BENCH_FULL") == "1" {
		n = 1_000_000
	}
	for _, rtt := range []time.Duration{0, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("rtt=%s", rtt), func(b *testing.B) { benchDrain(b, n, rtt) })
	}
}

func benchDrain(b *testing.B, n int, rtt time.Duration) {
	var fwd, src time.Duration
	for range b.N {
		fwd += drain(b, n, rtt, func(e *fwEnv) { e.start(nil) })
		src += drain(b, n, rtt, func(e *fwEnv) {
			cfg := SourcingStreamConfig("EDGE_PULL", "edge", e.site, buffer.Lanes, 2*time.Hour)
			if _, err := e.hubJS.CreateStream(context.Background(), cfg); err != nil {
				b.Fatal(err)
			}
		})
	}
	total := float64(n * b.N)
	b.ReportMetric(total/fwd.Seconds(), "msgs/s_forwarder")
	b.ReportMetric(total/src.Seconds(), "msgs/s_sourcing")
	b.ReportMetric(src.Seconds()/fwd.Seconds(), "x_vs_sourcing")
}

// drain builds a fresh hub and site with n readings waiting, then times
// start until the hub holds them all.
func drain(b *testing.B, n int, rtt time.Duration, start func(*fwEnv)) time.Duration {
	b.StopTimer()
	e := newFwEnv(b, "s1", fwEnvOpts{rtt: rtt})
	e.leafUp()
	e.publish("telemetry.x", n, make([]byte, 128))
	ctx := context.Background()
	count := func() uint64 {
		var sum uint64
		for name := range e.hubJS.StreamNames(ctx).Name() {
			if s, err := e.hubJS.Stream(ctx, name); err == nil {
				sum += s.CachedInfo().State.Msgs
			}
		}
		return sum
	}
	b.StartTimer()
	t0 := time.Now()
	start(e)
	fwWaitFor(b, 30*time.Minute, "backlog drained", func() bool { return count() >= uint64(n) })
	d := time.Since(t0)
	b.StopTimer()
	return d
}
