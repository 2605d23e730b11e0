// Package wanfault puts a user-space TCP proxy between a leaf and its hub so
// tests (and the chaos harness) can break the WAN the way stores see it:
// cut (refused), unplug (no answer), flap, blackhole, add latency, shape
// bandwidth. It wraps github.com/Shopify/toxiproxy/v2 as a library: no
// toxiproxy daemon, no HTTP API, one proxy per link, on loopback.
//
// A hub advertises its own leafnode address to leaves, which then reconnect
// straight to it and bypass the proxy: start the hub with
// LeafNode.NoAdvertise (or the leaf with IgnoreDiscoveredServers) and check
// with Port that the leaf is connected through the proxy. nats-server 2.9
// advertises its leafnode address even with no_advertise: against such a
// hub only the leaf-side IgnoreDiscoveredServers works.
package wanfault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxy forwards one listening address to an upstream, with faults.
type Proxy struct {
	mu   sync.Mutex
	p    *toxiproxy.Proxy
	addr string
	n    int // toxic names

	// While unplugged: a listener on addr that never accepts, and the one
	// connection that fills its queue (see Unplug).
	hole   int
	filler net.Conn
}

// Start listens on a random loopback port and forwards to upstream
// ("host:port").
func Start(upstream string) (*Proxy, error) {
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(api, "wan", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("wanfault: start proxy to %s: %w", upstream, err)
	}
	return &Proxy{p: p, addr: p.Listen}, nil
}

// Addr is the proxy's listening address; it stays the same across Cut and
// Restore, as a WAN address does across an outage.
func (p *Proxy) Addr() string { return p.addr }

// Port is the listening port, to compare with the leaf's view of its hub
// (Leafz IP:Port) and prove the connection goes through the proxy.
func (p *Proxy) Port() int {
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

// URL is the proxy address with a scheme, e.g. URL("nats").
func (p *Proxy) URL(scheme string) string { return scheme + "://" + p.addr }

// Cut takes the link down: open connections are closed and new ones are
// refused until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Stop()
}

// Unplug takes the link down the way a store's WAN dies: open connections
// are closed, and new dials get no answer at all until Restore (their SYNs
// are dropped, so they time out), where Cut refuses them at once as a host
// with nothing listening does. The address keeps a listener that never
// accepts, with a backlog of 0 that one connection fills: the kernel drops
// every later SYN, a black hole on loopback without root or packet filters.
func (p *Proxy) Unplug() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Stop()
	if p.filler != nil {
		return nil
	}
	host, port, _ := net.SplitHostPort(p.addr)
	ip := net.ParseIP(host).To4()
	n, _ := strconv.Atoi(port)
	if ip == nil {
		return fmt.Errorf("wanfault: unplug %s: an IPv4 address is needed", p.addr)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("wanfault: unplug %s: %w", p.addr, err)
	}
	sa := &syscall.SockaddrInet4{Port: n, Addr: [4]byte(ip)}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	err = whileAddrInUse(func() error { return syscall.Bind(fd, sa) })
	if err == nil {
		err = syscall.Listen(fd, 0)
	}
	if err != nil {
		syscall.Close(fd)
		return fmt.Errorf("wanfault: unplug %s: %w", p.addr, err)
	}
	filler, err := net.DialTimeout("tcp", p.addr, time.Second)
	if err != nil {
		syscall.Close(fd)
		return fmt.Errorf("wanfault: unplug %s: fill the listen queue: %w", p.addr, err)
	}
	p.hole, p.filler = fd, filler
	return nil
}

// Restore brings a cut or unplugged link back on the same address.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p.Enabled {
		return nil
	}
	p.plug()
	// Listen on the address the first start resolved, not on port 0 again.
	p.p.Listen = p.addr
	if err := whileAddrInUse(p.p.Start); err != nil {
		return fmt.Errorf("wanfault: restore %s: %w", p.addr, err)
	}
	return nil
}

// whileAddrInUse retries listen, which binds the proxy's address, for up to
// a second while that fails with "address already in use": the kernel may
// hold the port for a moment after the previous listener's close.
func whileAddrInUse(listen func() error) error {
	var err error
	for range 50 {
		if err = listen(); err == nil || !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(err.Error(), "address already in use") {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// Reset drops every open connection at once (a NAT timeout, a modem
// reboot) and keeps accepting new ones.
func (p *Proxy) Reset() error {
	p.Cut()
	return p.Restore()
}

// Blackhole keeps connections open but delivers nothing in either direction
// (a dead route: no RST, no FIN) until Clear.
func (p *Proxy) Blackhole() error {
	return p.toxics(`{"type":"timeout","attributes":{"timeout":0}}`)
}

// Shape adds one-way latency per direction (so the RTT is twice it) and a
// bandwidth cap in bytes/s per direction; 0 leaves that aspect alone.
func (p *Proxy) Shape(latency time.Duration, bytesPerSec int64) error {
	var t []string
	if latency > 0 {
		t = append(t, fmt.Sprintf(`{"type":"latency","attributes":{"latency":%d}}`, latency.Milliseconds()))
	}
	if bytesPerSec > 0 {
		// toxiproxy counts in KB/s (1000 bytes).
		t = append(t, fmt.Sprintf(`{"type":"bandwidth","attributes":{"rate":%d}}`, max(bytesPerSec/1000, 1)))
	}
	return p.toxics(t...)
}

// toxics adds each toxic to both directions.
func (p *Proxy) toxics(specs ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, spec := range specs {
		for _, dir := range []string{"upstream", "downstream"} {
			p.n++
			body := fmt.Sprintf(`{"name":"t%d","stream":%q,%s`, p.n, dir, strings.TrimPrefix(spec, "{"))
			if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
				return fmt.Errorf("wanfault: add toxic %s: %w", body, err)
			}
		}
	}
	return nil
}

// Clear removes latency, bandwidth and blackhole toxics.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Toxics.ResetToxics(context.Background())
}

// plug removes Unplug's black hole, if any. Lock held.
func (p *Proxy) plug() {
	if p.filler != nil {
		p.filler.Close()
		syscall.Close(p.hole)
		p.hole, p.filler = 0, nil
	}
}

// Close stops the proxy for good.
func (p *Proxy) Close() {
	p.Cut()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plug()
}
