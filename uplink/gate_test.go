package uplink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// testGate opens a gate for a remote whose only hub URL is hubAddr.
func testGate(t *testing.T, hubAddr string) *Gate {
	t.Helper()
	r := &server.RemoteLeafOpts{URLs: []*url.URL{{Scheme: "nats", Host: hubAddr}}, IgnoreDiscoveredServers: true}
	g, err := GateRemote(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GateRemote(r); err == nil || !strings.Contains(err.Error(), "already goes through proxy") {
		t.Fatalf("second GateRemote on one remote: %v", err)
	}
	g.Start()
	t.Cleanup(g.Close)
	return g
}

// TestGateRunsNothingBeforeStart: GateRemote, which the agent calls while
// building the server's options, starts no goroutine, and Close releases
// its port where no link ever runs it (the agent's start failed after the
// options were built). Before, the gate served from GateRemote on and
// waited in a package map for a link to claim it: a failed start leaked it.
func TestGateRunsNothingBeforeStart(t *testing.T) {
	r := &server.RemoteLeafOpts{URLs: []*url.URL{{Scheme: "nats", Host: "127.0.0.1:7422"}}}
	g, err := GateRemote(r)
	if err != nil {
		t.Fatal(err)
	}
	if stacks := allStacks(); strings.Contains(stacks, "uplink.(*Gate)") {
		t.Fatalf("a gate goroutine runs before Start:\n%s", stacks)
	}
	g.Close()
	addr := strings.TrimPrefix(r.Proxy.URL, "http://")
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the closed gate's %s still accepts connections", addr)
	}
}

// allStacks is every goroutine's stack.
func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// fakeHub listens on loopback and runs serve on each connection (closing
// it afterwards) until the test ends.
func fakeHub(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return l.Addr().String()
}

// echoHub accepts connections and echoes what they send.
func echoHub(t *testing.T) string {
	return fakeHub(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

type connectResult struct {
	status int
	phrase string
	conn   net.Conn
	br     *bufio.Reader
	err    error
}

// connectVia sends a CONNECT for target through the gate in the
// background, as nats-server's establishHTTPProxyTunnel does.
func connectVia(t *testing.T, g *Gate, method, target string) <-chan connectResult {
	t.Helper()
	out := make(chan connectResult, 1)
	go func() {
		c, err := net.Dial("tcp", g.ln.Addr().String())
		if err != nil {
			out <- connectResult{err: err}
			return
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		req := &http.Request{Method: method, URL: &url.URL{Opaque: target}, Host: target, Header: http.Header{}}
		if err := req.Write(c); err != nil {
			c.Close()
			out <- connectResult{err: err}
			return
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			c.Close()
			out <- connectResult{err: err}
			return
		}
		_ = c.SetDeadline(time.Time{})
		out <- connectResult{status: resp.StatusCode, phrase: resp.Status, conn: c, br: br}
	}()
	return out
}

func await(t *testing.T, ch <-chan connectResult) connectResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.conn != nil {
			t.Cleanup(func() { r.conn.Close() })
		}
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no CONNECT response in 30s")
	}
	return connectResult{}
}

// TestGateHoldsOneAttempt: a CONNECT waits at the closed gate, one open
// lets exactly one through to a tunnel that carries bytes both ways, shut
// cuts it, and a closing gate answers a waiting CONNECT at once.
func TestGateHoldsOneAttempt(t *testing.T) {
	hub := echoHub(t)
	g := testGate(t, hub)

	first := connectVia(t, g, http.MethodConnect, hub)
	// Nothing opened the gate: the CONNECT is held (this only ever waits
	// the full time on success, so a slow machine cannot fail it).
	select {
	case r := <-first:
		t.Fatalf("closed gate answered %q at once, want the CONNECT held", r.phrase)
	case <-time.After(300 * time.Millisecond):
	}
	g.open()
	r := await(t, first)
	if r.status != http.StatusOK {
		t.Fatalf("open gate answered %q, want 200", r.phrase)
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if g.hub() != hub {
			return errors.New("still waiting for tunnel registered")
		}
		return nil
	})
	if _, err := io.WriteString(r.conn, "PING\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.br.ReadString('\n'); err != nil || line != "PING\r\n" {
		t.Fatalf("through the tunnel: %q, %v", line, err)
	}

	// The token was used: the next CONNECT waits again.
	second := connectVia(t, g, http.MethodConnect, hub)
	g.shut()
	if _, err := r.br.ReadString('\n'); err == nil {
		t.Fatal("tunnel still open after shut")
	}
	if g.hub() != "" {
		t.Fatalf("hub() = %q after shut, want none", g.hub())
	}
	g.open()
	if r := await(t, second); r.status != http.StatusOK {
		t.Fatalf("CONNECT held across shut, then opened: %q, want 200", r.phrase)
	}
	// Held for gateHold at most, then told the gate is closed.
	start := time.Now()
	third := await(t, connectVia(t, g, http.MethodConnect, hub))
	if third.status != http.StatusServiceUnavailable || third.phrase != gateClosedStatus {
		t.Fatalf("closed gate after the hold: %q, want %q", third.phrase, gateClosedStatus)
	}
	if held := time.Since(start); held < gateHold {
		t.Fatalf("503 after %s, before the %s hold", held, gateHold)
	}
}

// TestGateCountsUpstream: the gate counts every byte the leaf sends
// towards the hub (what uplink.bandwidth caps), as the hub receives them.
func TestGateCountsUpstream(t *testing.T) {
	got := make(chan int64, 1)
	hub := fakeHub(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	})
	g := testGate(t, hub)
	g.open()
	r := await(t, connectVia(t, g, http.MethodConnect, hub))
	if r.status != http.StatusOK {
		t.Fatalf("open gate answered %q, want 200", r.phrase)
	}
	const total = 3<<20 + 17
	chunk := strings.Repeat("x", 64<<10)
	for sent := 0; sent < total; {
		n := min(len(chunk), total-sent)
		if _, err := io.WriteString(r.conn, chunk[:n]); err != nil {
			t.Fatal(err)
		}
		sent += n
	}
	r.conn.Close()
	select {
	case n := <-got:
		if n != total {
			t.Fatalf("the hub received %d bytes, want %d", n, total)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the hub never saw the tunnel close")
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if g.up.Load() != total {
			return errors.New("still waiting for the gate's count to match")
		}
		return nil
	})
}

// TestGateRefusals: a failed dial is a 502 with the reason (also handed to
// the link), and the gate tunnels only CONNECTs to the hub URLs' hosts.
func TestGateRefusals(t *testing.T) {
	closed := closedPort(t)
	g := testGate(t, closed)
	g.open()
	r := await(t, connectVia(t, g, http.MethodConnect, closed))
	if r.status != http.StatusBadGateway || !strings.Contains(r.phrase, "connection refused") {
		t.Fatalf("dial of a closed port: %q, want 502 ... connection refused", r.phrase)
	}
	select {
	case f := <-g.failed:
		if f.class != ReasonTCP || !strings.Contains(f.reason, "TCP: connection refused "+closed) {
			t.Fatalf("reported failure %+v", f)
		}
	default:
		t.Fatal("the gate did not report the failed dial")
	}
	g.open()
	if r := await(t, connectVia(t, g, http.MethodConnect, "198.51.100.7:7422")); r.status != http.StatusForbidden {
		t.Fatalf("CONNECT to a host not in hub_urls: %q, want 403", r.phrase)
	}
	if r := await(t, connectVia(t, g, http.MethodGet, "/")); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %q, want 405", r.phrase)
	}
	// Refusals before the hold do not use the token: the next CONNECT
	// still gets its dial.
	if r := await(t, connectVia(t, g, http.MethodConnect, closed)); r.status != http.StatusBadGateway {
		t.Fatalf("token lost to a refused request: %q", r.phrase)
	}
}

// TestLinkJetStreamThroughOutages runs JetStream API requests on four
// connections to the leaf without pause while the link goes through WAN
// cuts and bounces. Pacing the remote with server.ReloadOptions failed
// here under -race (checked against the reload-based link: configureAccounts
// at server.go:1398 against setupResponseServiceImport at client.go:4643):
// every reload re-runs nats-server's account setup, which rewrites the
// service imports a JetStream API request is reading. The server logs
// "Reloaded" for each reload; there must be none.
func TestLinkJetStreamThroughOutages(t *testing.T) {
	w := newWANEnv(t, "store-12")
	var reloads atomic.Int64
	w.leaf.SetLoggerV2(w.link.Logger(lineLog{func(_, line string) {
		if strings.HasPrefix(line, "Reloaded") {
			reloads.Add(1)
		}
	}}), true, false, false)
	var calls, fails atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		// One connection each: requests on one connection are handled
		// one after another.
		_, js := testkit.Connect(t, "", nats.InProcessServer(w.leaf))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := js.Stream(rctx, "TELEMETRY")
				rcancel()
				calls.Add(1)
				if err != nil && ctx.Err() == nil {
					fails.Add(1)
				}
			}
		}()
	}
	const cycles = 24
	for i := range cycles {
		reconnects := w.link.Status().Reconnects
		if i%2 == 0 {
			w.link.Bounce()
		} else {
			cutWAN(t, w.proxy, w.link)
			if err := w.proxy.Restore(); err != nil {
				t.Fatal(err)
			}
		}
		testkit.WaitFor(t, 15*time.Second, func() error {
			if !(w.link.Connected() && w.link.Status().Reconnects > reconnects) {
				return errors.New("still waiting for link back")
			}
			return nil
		})
	}
	cancel()
	wg.Wait()
	t.Logf("%d stream info requests through %d bounces and cuts, %d failed", calls.Load(), cycles, fails.Load())
	if calls.Load() < 100 {
		t.Fatalf("only %d JetStream API requests ran alongside the reconnects", calls.Load())
	}
	if fails.Load() > 0 {
		t.Fatalf("%d stream info requests to the leaf's own JetStream failed while the uplink reconnected", fails.Load())
	}
	if n := reloads.Load(); n > 0 {
		t.Fatalf("%d \"Reloaded\" lines: the link reloaded the server", n)
	}
	if st := w.link.Status(); st.Hub != w.proxy.Addr() {
		t.Fatalf("hub = %s, want the WAN proxy %s", st.Hub, w.proxy.Addr())
	}
}

// TestLinkWebsocketThroughGate: ws:// and wss:// hub URLs work through the
// gate (the WebSocket upgrade and TLS run inside the tunnel).
func TestLinkWebsocketThroughGate(t *testing.T) {
	for _, scheme := range []string{"ws", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			pki := testkit.NewPKI(t, time.Now().Add(time.Hour))
			o := testkit.HubOpts(t)
			o.JetStream = false
			o.Websocket.Host, o.Websocket.Port, o.Websocket.NoTLS = "127.0.0.1", -1, scheme == "ws"
			if scheme == "wss" {
				tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.CertFile, KeyFile: pki.KeyFile})
				if err != nil {
					t.Fatal(err)
				}
				o.Websocket.TLSConfig = tc
			}
			hub := testkit.RunServer(t, o)
			v, err := hub.Varz(nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg := linkConfig(t, fmt.Sprintf("%s://127.0.0.1:%d", scheme, v.Websocket.Port))
			if scheme == "wss" {
				cfg.TLS.CAFile = pki.CAFile
			}
			e := startLink(t, cfg, nil)
			testkit.WaitFor(t, 15*time.Second, func() error {
				if !(e.link.Connected() && hub.NumLeafNodes() == 1) {
					return fmt.Errorf("still waiting for leaf connected over %s", scheme)
				}
				return nil
			})
			if st := e.link.Status(); st.Hub != fmt.Sprintf("127.0.0.1:%d", v.Websocket.Port) {
				t.Fatalf("hub = %q, want the hub's websocket port %d", st.Hub, v.Websocket.Port)
			}
		})
	}
}
