package uplink

import (
	"errors"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/uplink/wanfault"
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
	n := 5_000           // about 15 s at this rate
	b.Run("1Mbit", func(b *testing.B) {
		var fwd, src, raw time.Duration
		var rawBytes int64
		for range b.N {
			f := drain(b, n, drainWAN{shape: rate}, viaForwarder)
			fwd += f
			src += drain(b, n, drainWAN{shape: rate}, viaSourcing)
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
