package uplink

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/wanfault"
	"github.com/edge-agent/edge-agent/sensors"
)

// BenchmarkShapedDrain drains a backlog of 128-byte readings through a
// 1 Mbit/s link (wanfault's bandwidth shaper, 125 000 B/s of TCP payload
// each way, no added latency) with the forwarder and with stock sourcing,
// and pushes raw TCP bytes through an identical shaper for as long as the
// forwarder took: the most any protocol could carry over that link.
// Goodput counts reading payload only (readings × 128 B / s), so
// x_vs_raw_tcp is the share of the link that ends up as readings at the
// hub, after subjects, headers (message id, Edge-*), protocol framing and
// acks; sourcing_x_vs_raw_tcp is the same for sourcing.
func BenchmarkShapedDrain(b *testing.B) {
	const rate = 125_000 // bytes/s: 1 Mbit/s
	n := 5_000           // 7-9 s at this rate with the default compression
	b.Run("1Mbit", func(b *testing.B) {
		bin := buildNATSServer(b)
		var fwd, src, raw time.Duration
		var rawBytes int64
		for range b.N {
			f := drain(b, bin, n, drainWAN{shape: rate}, viaForwarder).wall
			fwd += f
			src += drain(b, bin, n, drainWAN{shape: rate}, viaSourcing).wall
			rawBytes += rawTCP(b, rate, f)
			raw += f
		}
		total := float64(n * b.N)
		payload := total * 128
		rawRate := float64(rawBytes) / raw.Seconds()
		b.ReportMetric(float64(n), "readings")
		b.ReportMetric(total/fwd.Seconds(), "msgs/s_forwarder")
		b.ReportMetric(total/src.Seconds(), "msgs/s_sourcing")
		b.ReportMetric(payload/fwd.Seconds(), "B/s_forwarder")
		b.ReportMetric(payload/src.Seconds(), "B/s_sourcing")
		b.ReportMetric(rawRate, "B/s_raw_tcp")
		b.ReportMetric(payload/fwd.Seconds()/rawRate, "x_vs_raw_tcp")
		b.ReportMetric(payload/src.Seconds()/rawRate, "sourcing_x_vs_raw_tcp")
		b.ReportMetric(src.Seconds()/fwd.Seconds(), "x_vs_sourcing")
	})
}

// BenchmarkCompression measures both sides of uplink.compression, the
// leaf connection's compression, for the forwarder: what it gets through
// a metered link, and what it costs the gateway's CPU on a fast one. The
// backlog is what a sampler stores, JSON readings of a temperature,
// humidity and pressure sensor (sensorBacklog; random bytes, as in the
// other drains, would hide what compression does for real payloads).
//
//   - readings/s_1Mbit: 3,000 readings drained through the 1 Mbit/s
//     shaper of BenchmarkShapedDrain (no added latency).
//   - msgs/s_100ms_rtt and site_cpu_us/reading_100ms_rtt: a backlog of
//     100k (1M with EDGE_BENCH_FULL=1) drained through 50 ms of added
//     latency each way and no bandwidth cap, and the site's CPU time per
//     reading (this process: leaf, local stream, forwarder, and the WAN
//     proxy, the same for every mode). nats-server's s2_auto picks s2_best
//     at this round trip.
func BenchmarkCompression(b *testing.B) {
	bin := buildNATSServer(b)
	for _, mode := range []string{server.CompressionOff, server.CompressionS2Fast, server.CompressionS2Better, server.CompressionS2Best, server.CompressionS2Auto} {
		b.Run(mode, func(b *testing.B) {
			const rate, shapedN = 125_000, 3_000
			n := drainQuick()
			var shaped, fast drained
			for range b.N {
				shaped.add(drain(b, bin, shapedN, drainWAN{shape: rate, compression: mode}, viaForwarderSensorJSON))
				fast.add(drain(b, bin, n, drainWAN{rtt: 100 * time.Millisecond, compression: mode}, viaForwarderSensorJSON))
			}
			b.ReportMetric(float64(len(sensorReading(1)(1))), "B/reading") // the backlog's first
			b.ReportMetric(float64(shapedN*b.N)/shaped.wall.Seconds(), "readings/s_1Mbit")
			b.ReportMetric(float64(n*b.N)/fast.wall.Seconds(), "msgs/s_100ms_rtt")
			b.ReportMetric(float64(fast.site.Microseconds())/float64(n*b.N), "site_cpu_us/reading_100ms_rtt")
		})
	}
}

// sensorBacklog stores n readings of one simulated BME280 sampled every
// second, its values wandering as a room's do.
func sensorBacklog(e *fwEnv, n int) {
	next := sensorReading(1)
	i := 0
	e.publishEach("telemetry.ambient", n, func() []byte { i++; return next(i) })
}

// sensorReading returns the JSON of reading i of a series; the values
// follow a random walk from seed.
func sensorReading(seed uint64) func(i int) []byte {
	rnd := rand.New(rand.NewPCG(seed, seed))
	t0 := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	temp, hum, press := 21.5, 45.0, 1013.25
	walk := func(v, step float64) float64 { return math.Round((v+step*(rnd.Float64()*2-1))*100) / 100 }
	return func(i int) []byte {
		temp, hum, press = walk(temp, 0.05), walk(hum, 0.2), walk(press, 0.05)
		r := sensors.Reading{
			Sensor: "ambient", Driver: "bme280", Seq: uint64(i),
			Time: t0.Add(time.Duration(i)*time.Second + time.Duration(rnd.IntN(1e6))), BootID: "5b0c2d8e-4f1a-4c3b-9e7d-2a6f8c1e0b94",
			Mono: int64(i)*1e9 + 40e9 + int64(rnd.IntN(1e6)), ClockSynced: true, Quality: sensors.QualityOK,
			Values: map[string]sensors.Value{
				"temperature": {V: temp, Unit: "C"},
				"humidity":    {V: hum, Unit: "%"},
				"pressure":    {V: press, Unit: "hPa"},
			},
		}
		b, err := json.Marshal(r)
		if err != nil {
			panic(err) // a Reading always marshals
		}
		return b
	}
}

// shapedLink starts a WAN proxy to upstream ("host:port") capped at
// bytesPerSec each way, for the benchmark's lifetime.
func shapedLink(b testing.TB, upstream string, bytesPerSec int64) *wanfault.Proxy {
	b.Helper()
	p, err := wanfault.Start(upstream)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	if err := p.Shape(0, bytesPerSec); err != nil {
		b.Fatal(err)
	}
	return p
}

// shapedHub is an fwEnvOpts.cfg hook: the leaf dials the hub through a shaped
// WAN proxy instead of directly.
func shapedHub(b testing.TB, bytesPerSec int64) func(*Config) {
	return func(c *Config) {
		u, err := url.Parse(c.HubURLs[0])
		if err != nil {
			b.Fatal(err)
		}
		c.HubURLs = []string{shapedLink(b, u.Host, bytesPerSec).URL("nats")}
	}
}

// rawTCP writes as fast as it can through a fresh shaped proxy into a
// plain TCP sink for d and returns the bytes the sink received meanwhile.
func rawTCP(b *testing.B, bytesPerSec int64, d time.Duration) int64 {
	b.Helper()
	sc := &cleanupScope{TB: b}
	defer sc.end()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var got atomic.Int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			got.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	p := shapedLink(sc, ln.Addr().String(), bytesPerSec)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sent := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				sent <- err
				return
			}
		}
	}()
	select {
	case <-time.After(d):
	case err := <-sent:
		b.Fatalf("raw TCP through the shaper: %v", err)
	}
	n := got.Load()
	_ = c.Close()
	if err := <-sent; !errors.Is(err, net.ErrClosed) {
		b.Fatalf("raw TCP through the shaper: %v", err)
	}
	return n
}
