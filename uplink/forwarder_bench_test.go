package uplink

import (
	"context"
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
	for _, wan := range []struct {
		name  string
		rtt   time.Duration
		reset time.Duration
	}{
		{"loopback", 0, 0},
		{"rtt=100ms", 100 * time.Millisecond, 0},
		// A flaky store uplink: the connection drops every 2 s (NAT
		// timeouts, a modem that resets) and redials at once.
		{"rtt=100ms,drop_every=2s", 100 * time.Millisecond, 2 * time.Second},
	} {
		b.Run(wan.name, func(b *testing.B) { benchDrain(b, n, wan.rtt, wan.reset) })
	}
}

func benchDrain(b *testing.B, n int, rtt, reset time.Duration) {
	var fwd, src time.Duration
	for range b.N {
		fwd += drain(b, n, rtt, reset, func(e *fwEnv) { e.start(nil) })
		src += drain(b, n, rtt, reset, func(e *fwEnv) {
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
func drain(b *testing.B, n int, rtt, reset time.Duration, start func(*fwEnv)) time.Duration {
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
	if reset > 0 {
		stop := make(chan struct{})
		done := make(chan struct{})
		defer func() { close(stop); <-done }()
		go func() {
			defer close(done)
			t := time.NewTicker(reset)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if err := e.wan.Reset(); err != nil {
						b.Error(err)
					}
				}
			}
		}()
	}
	b.StartTimer()
	t0 := time.Now()
	start(e)
	fwWaitFor(b, 30*time.Minute, "backlog drained", func() bool { return count() >= uint64(n) })
	d := time.Since(t0)
	b.StopTimer()
	return d
}
