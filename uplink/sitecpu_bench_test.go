package uplink

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkSiteCPU splits the site's CPU per drained reading on loopback
// (issue #21's "site CPU per drained reading"): a forwarder drain and a
// sourcing drain as BenchmarkDrain/loopback runs them, and a read-only
// peer that reads the same backlog the forwarder's way (readStream, an
// ephemeral pull consumer on the site's client connection, and readItem)
// and drops it, and a publish-only peer: BenchmarkDrain's bare client
// with the forwarder's messages, headers and Nats-Msg-Id and a hub ack per
// 64, which reads nothing. Any forwarder that reads the local stream
// through a client of the embedded server pays read_only, and any that
// publishes one hub message per reading with the contract's headers pays
// about publish_only (fast batches ask an ack per few hundred, each
// message with its own reply subject): read_plus_publish_x_vs_sourcing is
// the bound of this design. It also counts the site's heap
// allocations per reading (site_allocs/reading_*), the figure the
// forwarder's send path is tuned on. EDGE_BENCH_DRAIN_N sets the backlog
// (100k by default).
func BenchmarkSiteCPU(b *testing.B) {
	bin := buildNATSServer(b)
	n := drainBacklog(b)
	var fwdAllocs, srcAllocs uint64
	var fwd, src, pub drained
	var read time.Duration
	for range b.N {
		fwd.add(drain(b, bin, n, drainWAN{}, countAllocs(viaForwarder, &fwdAllocs)))
		src.add(drain(b, bin, n, drainWAN{}, countAllocs(viaSourcing, &srcAllocs)))
		read += readOnly(b, bin, n)
		pub.add(drain(b, bin, n, drainWAN{}, viaBareClient(true, 64)))
	}
	total := float64(n * b.N)
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / total }
	b.ReportMetric(per(fwd.site), "site_cpu_us/reading_forwarder")
	b.ReportMetric(per(src.site), "site_cpu_us/reading_sourcing")
	b.ReportMetric(per(read), "site_cpu_us/reading_read_only")
	b.ReportMetric(float64(fwd.site)/float64(src.site), "site_cpu_x_vs_sourcing")
	b.ReportMetric(per(pub.site), "site_cpu_us/reading_publish_only")
	b.ReportMetric(float64(read)/float64(src.site), "read_only_x_vs_sourcing")
	b.ReportMetric(float64(read+pub.site)/float64(src.site), "read_plus_publish_x_vs_sourcing")
	b.ReportMetric(float64(fwdAllocs)/total, "site_allocs/reading_forwarder")
	b.ReportMetric(float64(srcAllocs)/total, "site_allocs/reading_sourcing")
}

// countAllocs is way, adding to *n the heap allocations of this process
// from the way's start until the drain's scope ends it (the count takes in
// stopping what the way started, whose cleanups run first, and the
// benchmark's polling of the hub: the same for every way).
func countAllocs(way drainWay, n *uint64) drainWay {
	return drainWay{name: way.name, backlog: way.backlog, start: func(b *testing.B, e *fwEnv, readings int) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		e.t.Cleanup(func() {
			runtime.ReadMemStats(&ms)
			*n += ms.Mallocs - before
		})
		way.start(b, e, readings)
	}}
}

// readOnly is the site CPU of reading n stored readings the forwarder's
// way, on a site set up as drain sets it up.
func readOnly(b *testing.B, bin string, n int) time.Duration {
	b.StopTimer()
	sc := &cleanupScope{TB: b}
	defer sc.end()
	hub := startHubProcess(sc, bin, false)
	var gate *Gate
	e := newFwEnv(sc, "s1", fwEnvOpts{sharedHub: hub.env(sc), leaf: gateRemote(b, &gate)})
	runLink(sc, e, gate, quickReconnect)
	randomBacklog(e, n)
	str, err := e.leafJS.Stream(context.Background(), "TELEMETRY")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.StartTimer()
	cpu0, got := selfCPU(b), 0
	_ = readStream(ctx, str, 1, func(m jetstream.Msg) bool {
		if _, err := readItem(m); err != nil {
			b.Fatal(err)
		}
		got++
		return got < n
	})
	cpu := selfCPU(b) - cpu0
	b.StopTimer()
	if got != n {
		b.Fatalf("read %d of %d readings", got, n)
	}
	return cpu
}
