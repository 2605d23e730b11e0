package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/internal/wanfault"
)

// memEvents is an EventSink that keeps events for assertions.
type memEvents struct {
	mu sync.Mutex
	ev []LinkEvent
}

func (m *memEvents) AddLinkEvent(e LinkEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ev = append(m.ev, e)
}

func (m *memEvents) has(kind EventKind, reasonPart string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.ContainsFunc(m.ev, func(e LinkEvent) bool {
		return e.Kind == kind && strings.Contains(e.Reason, reasonPart)
	})
}

// lineLog is a server logger that hands every line, with the level it was
// logged at, to observe; the tests wrap it in Link.Logger as the agent
// wraps its slog bridge.
type lineLog struct{ observe func(level, line string) }

func (g lineLog) line(level, f string, v []any) {
	if g.observe != nil {
		g.observe(level, fmt.Sprintf(f, v...))
	}
}
func (g lineLog) Noticef(f string, v ...any) { g.line("INF", f, v) }
func (g lineLog) Warnf(f string, v ...any)   { g.line("WRN", f, v) }
func (g lineLog) Fatalf(f string, v ...any)  { g.line("FTL", f, v) }
func (g lineLog) Errorf(f string, v ...any)  { g.line("ERR", f, v) }
func (g lineLog) Debugf(f string, v ...any)  { g.line("DBG", f, v) }
func (g lineLog) Tracef(string, ...any)      {}

type linkEnv struct {
	leaf   *server.Server
	link   *Link
	events *memEvents
}

// startLink runs a leaf server whose only remote is cfg, with a Link
// managing it, the way the agent wires them; tune adjusts the link before
// it runs.
func startLink(t *testing.T, cfg *Config, observe func(level, line string), tune ...func(*Link)) *linkEnv {
	t.Helper()
	r, err := RemoteOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, err := GateRemote(r)
	if err != nil {
		t.Fatal(err)
	}
	o := &server.Options{
		ServerName: "site", Host: "127.0.0.1", Port: -1, NoSigs: true,
		LeafNode: server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{r}, ReconnectInterval: ServerReconnectInterval(cfg)},
	}
	leaf, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ev := &memEvents{}
	link := NewLink(leaf, g, cfg, ev, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	// Debug on, as in the agent: nats-server logs a retry loop's later
	// failed dials only at debug.
	leaf.SetLoggerV2(link.Logger(lineLog{observe}), true, false, false)
	g.Start()
	go leaf.Start()
	if !leaf.ReadyForConnections(10 * time.Second) {
		t.Fatal("leaf not ready")
	}
	for _, f := range tune {
		f(link)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- link.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("link.Run: %v", err)
		}
		leaf.Shutdown()
		leaf.WaitForShutdown()
	})
	return &linkEnv{leaf: leaf, link: link, events: ev}
}

func linkConfig(t *testing.T, urls ...string) *Config {
	c := DefaultConfig()
	c.HubURLs = urls
	c.Reconnect = Reconnect{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}
	return &c
}

func hubLeafURL(t *testing.T, hub *server.Server, scheme string) string {
	t.Helper()
	v, err := hub.Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, v.LeafNode.Port)
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// noJetStream tunes a hub for tests that only need its leafnode listener.
func noJetStream(o *server.Options) { o.JetStream = false }

// tlsLinkConfig is a link to a TLS hub (without JetStream) serving hub's
// certificate, requiring a client certificate with verifyClients, for a
// site that trusts trust's CA.
func tlsLinkConfig(t *testing.T, hub testkit.PKI, verifyClients bool, trust testkit.PKI) *Config {
	t.Helper()
	c := linkConfig(t, hubLeafURL(t, testkit.TLSHub(t, hub, verifyClients, noJetStream), "tls"))
	c.TLS.CAFile = trust.CAFile
	return c
}

// TestLinkReasons runs the link against real failing hubs: each reason
// names the hub as configured (never the link's loopback gate), in the
// hub's words translated into the config key to change (fix).
func TestLinkReasons(t *testing.T) {
	cases := []struct {
		name        string
		class       ReasonClass
		reason, fix string
		cfg         func(t *testing.T) *Config
	}{
		{"closed port", ReasonTCP, "TCP: connection refused 127.0.0.1:", "the hub is down or restarting", func(t *testing.T) *Config {
			return linkConfig(t, "nats://"+closedPort(t))
		}},
		{"unknown host", ReasonDNS, "DNS: hub-1.edge-agent.invalid not found", "uplink.hub_urls", func(t *testing.T) *Config {
			return linkConfig(t, "nats://hub-1.edge-agent.invalid:7422")
		}},
		{"expired certificate", ReasonTLS, "TLS: hub certificate expired 3 days ago", "uplink.tls.ca_file", func(t *testing.T) *Config {
			pki := testkit.NewPKI(t, time.Now().Add(-3*24*time.Hour-time.Hour))
			return tlsLinkConfig(t, pki, false, pki)
		}},
		{"wrong CA", ReasonTLS, "signed by unknown authority", "uplink.tls.ca_file", func(t *testing.T) *Config {
			return tlsLinkConfig(t, testkit.NewPKI(t, time.Now().Add(time.Hour)), false, testkit.NewPKI(t, time.Now().Add(time.Hour)))
		}},
		{"TLS hub behind a nats:// URL", ReasonTLS, "TLS: the hub requires TLS: use tls://", "use tls:// in uplink.hub_urls", func(t *testing.T) *Config {
			return linkConfig(t, hubLeafURL(t, testkit.TLSHub(t, testkit.NewPKI(t, time.Now().Add(time.Hour)), false, noJetStream), "nats"))
		}},
		{"client certificate missing", ReasonTLS, "TLS: the hub requires a client certificate and uplink.tls.cert_file is not set", "set uplink.tls.cert_file and uplink.tls.key_file", func(t *testing.T) *Config {
			pki := testkit.NewPKI(t, time.Now().Add(time.Hour))
			return tlsLinkConfig(t, pki, true, pki)
		}},
		{"client certificate of another CA", ReasonTLS, "TLS: the hub refused the client certificate in uplink.tls.cert_file", "uplink.tls.cert_file is not one the hub accepts", func(t *testing.T) *Config {
			pki, other := testkit.NewPKI(t, time.Now().Add(time.Hour)), testkit.NewPKI(t, time.Now().Add(time.Hour))
			c := tlsLinkConfig(t, pki, true, pki)
			c.TLS.CertFile, c.TLS.KeyFile = other.CertFile, other.KeyFile
			return c
		}},
		{"wrong password", ReasonAuth, "auth: the hub refused this site's user/password (authorization violation)", `check uplink.user ("leaf") and uplink.password`, func(t *testing.T) *Config {
			o := testkit.HubOpts(t)
			o.JetStream = false
			o.LeafNode.Username, o.LeafNode.Password = "leaf", "right"
			c := linkConfig(t, hubLeafURL(t, testkit.RunServer(t, o), "nats"))
			c.User, c.Password = "leaf", "wrong"
			return c
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startLink(t, tc.cfg(t), nil)
			gateAddr := e.link.gate.ln.Addr().String()
			var seen []string
			testkit.WaitFor(t, 20*time.Second, func() error {
				st := e.link.Status()
				if st.Reason != "" && !slices.Contains(seen, st.Reason) {
					seen = append(seen, st.Reason)
				}
				if !(st.ReasonClass == tc.class && strings.Contains(st.Reason, tc.reason)) {
					return fmt.Errorf("still waiting for reason %s", tc.reason)
				}
				return nil
			})
			for _, r := range seen {
				if strings.Contains(r, gateAddr) {
					t.Errorf("reason %q names the link's loopback gate %s, not the hub", r, gateAddr)
				}
			}
			st := e.link.Status()
			if !strings.Contains(st.Fix, tc.fix) {
				t.Errorf("fix %q, want it to contain %q", st.Fix, tc.fix)
			}
			if st.State != StateDisconnected && st.State != StateConnecting {
				t.Errorf("state = %s, want disconnected or connecting", st.State)
			}
			if e.link.Connected() {
				t.Error("Connected() with a failing hub")
			}
			testkit.WaitFor(t, 5*time.Second, func() error {
				if !e.events.has(EventError, tc.reason) {
					return errors.New("still waiting for error event in the sink")
				}
				return nil
			})
			t.Logf("status: %s (%s)", st.Reason, st.ReasonClass)
		})
	}
}

func TestLinkConnectBounceAndDrop(t *testing.T) {
	ho := testkit.HubOpts(t)
	ho.LeafNode.NoAdvertise = true // or the leaf redials the hub directly, bypassing the proxy
	hub := testkit.RunServer(t, ho)
	proxy, err := wanfault.Start(strings.TrimPrefix(hubLeafURL(t, hub, "nats"), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	e := startLink(t, linkConfig(t, proxy.URL("nats")), nil)
	up := e.link.Up()
	select {
	case <-up:
	case <-time.After(15 * time.Second):
		t.Fatal("Up() not closed after the hub became reachable")
	}
	st := e.link.Status()
	if st.State != StateConnected || st.Hub != proxy.Addr() || st.LastConnected.IsZero() {
		t.Fatalf("status after connect = %+v, want connected through %s", st, proxy.Addr())
	}
	// Compression as negotiated: the default, s2_fast, even on loopback.
	testkit.WaitFor(t, 5*time.Second, func() error {
		st := e.link.Status()
		if !(st.RTT > 0 && st.Compression == server.CompressionS2Fast) {
			return errors.New("still waiting for RTT and compression from Leafz")
		}
		return nil
	})

	// The leaf's handshake crossed the gate: counted, and counted on
	// across connections.
	sent := e.link.Status().SentBytes
	if sent <= 0 {
		t.Fatalf("connected, yet SentBytes = %d", sent)
	}

	e.link.Bounce()
	testkit.WaitFor(t, 15*time.Second, func() error {
		st := e.link.Status()
		if !(st.Reconnects == 1 && st.State == StateConnected) {
			return errors.New("still waiting for reconnect after Bounce")
		}
		return nil
	})
	testkit.WaitFor(t, 5*time.Second, func() error {
		if e.link.Status().SentBytes <= sent {
			return errors.New("still waiting for the new connection's bytes counted on top")
		}
		return nil
	})
	if st := e.link.Status(); st.Hub != proxy.Addr() {
		t.Fatalf("after Bounce the leaf is on %s, not the proxy %s", st.Hub, proxy.Addr())
	}
	if hub.NumLeafNodes() != 1 {
		t.Fatalf("hub has %d leaf connections after Bounce, want 1", hub.NumLeafNodes())
	}

	proxy.Cut()
	testkit.WaitFor(t, 15*time.Second, func() error {
		st := e.link.Status()
		if !(st.State != StateConnected && st.ReasonClass == ReasonTCP) {
			return errors.New("still waiting for disconnected after the WAN cut")
		}
		return nil
	})
	if st := e.link.Status(); st.RTT != 0 || st.Compression != "" {
		t.Errorf("disconnected link still reports the old connection: rtt %s, compression %q", st.RTT, st.Compression)
	}
	select {
	case <-e.link.Up():
		t.Fatal("Up() closed while disconnected")
	default:
	}
	restoreWAN(t, proxy, e.link)
	if !e.events.has(EventConnect, proxy.Addr()) || !e.events.has(EventDisconnect, "TCP: connection refused") {
		t.Error("connect/disconnect events missing")
	}
}

// TestLinkBackoffDistribution counts real dial attempts at a closed port:
// never sooner than min after the previous one, growing then capped at max
// (so more attempts than uncapped doubling allows), and randomized.
func TestLinkBackoffDistribution(t *testing.T) {
	var mu sync.Mutex
	var attempts []time.Time
	cfg := linkConfig(t, "nats://"+closedPort(t))
	cfg.Reconnect = Reconnect{Min: 50 * time.Millisecond, Max: 400 * time.Millisecond}
	startLink(t, cfg, func(_, line string) {
		if strings.Contains(line, "Error trying to connect as leafnode") {
			mu.Lock()
			attempts = append(attempts, time.Now())
			mu.Unlock()
		}
	})
	const window = 6 * time.Second
	time.Sleep(window) // the measurement itself: attempts over a fixed window
	mu.Lock()
	got := slices.Clone(attempts)
	mu.Unlock()
	var gaps []time.Duration
	// The first attempt is the link's own: gaps start there.
	for i := 1; i < len(got); i++ {
		gaps = append(gaps, got[i].Sub(got[i-1]))
	}
	t.Logf("%d attempts in %s; gaps: %v", len(got), window, gaps)
	// Uncapped doubling (50, 100, 200, 400, 800, 1600, 3200 ms ceilings)
	// fits at most 8 attempts in 6 s; capped at 400 ms at least 14 even if
	// every gap hit the cap.
	if len(got) < 12 {
		t.Fatalf("%d attempts in %s: backoff not capped at max", len(got), window)
	}
	for i, g := range gaps {
		if g < cfg.Reconnect.Min {
			t.Errorf("gap %d = %s, sooner than reconnect.min %s", i, g, cfg.Reconnect.Min)
		}
	}
	late := slices.Clone(gaps[3:])
	slices.Sort(late)
	if spread := late[len(late)-1] - late[0]; spread < 100*time.Millisecond {
		t.Errorf("gaps after the ramp span only %s: no jitter", spread)
	}
	// Growth: the first gap's ceiling is 2·min, the capped ones' 8·min.
	if mean(gaps[:1]) > mean(gaps[3:])+200*time.Millisecond {
		t.Errorf("first gap %s not shorter than the capped ones (mean %s)", gaps[0], mean(gaps[3:]))
	}
}

func mean(d []time.Duration) time.Duration {
	var s time.Duration
	for _, x := range d {
		s += x
	}
	return s / time.Duration(len(d))
}

func TestBackoffCeilings(t *testing.T) {
	top := backoff{min: 100 * time.Millisecond, max: time.Second, rnd: func(n int64) int64 { return n - 1 }}
	bottom := top
	bottom.rnd = func(int64) int64 { return 0 }
	for n, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		if got := top.delay(n); got != want*time.Millisecond {
			t.Errorf("delay(%d) ceiling = %s, want %s", n, got, want*time.Millisecond)
		}
	}
	if bottom.delay(0) != 0 {
		t.Errorf("first retry after a drop floor = %s, want 0 (quick retry)", bottom.delay(0))
	}
	for n := 1; n < 100; n++ {
		if got := bottom.delay(n); got != 100*time.Millisecond {
			t.Errorf("delay(%d) floor = %s, want min", n, got)
		}
	}
	if d := top.delay(1 << 20); d != time.Second {
		t.Errorf("delay after many failures = %s, want max", d)
	}
}

// TestLinkLogQuiet runs two WAN outages and counts the server's log lines
// by level: repeated identical dial errors go to debug (still there, not
// dropped), the first dial error of an outage stays an error, and pacing
// the remote reloads nothing: every ReloadOptions re-runs nats-server's
// account setup, which races with JetStream API traffic.
func TestLinkLogQuiet(t *testing.T) {
	ho := testkit.HubOpts(t)
	ho.JetStream = false
	ho.LeafNode.NoAdvertise = true
	hub := testkit.RunServer(t, ho)
	proxy, err := wanfault.Start(strings.TrimPrefix(hubLeafURL(t, hub, "nats"), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	var mu sync.Mutex
	count := map[string]int{}
	e := startLink(t, linkConfig(t, proxy.URL("nats")), func(level, line string) {
		var kind string
		switch {
		case strings.HasPrefix(line, "Reloaded"):
			kind = "reload"
		case strings.Contains(line, "Error trying to connect as leafnode"):
			kind = "dial"
		default:
			return
		}
		mu.Lock()
		count[level+" "+kind]++
		mu.Unlock()
	})
	seen := func(key string) int {
		mu.Lock()
		defer mu.Unlock()
		return count[key]
	}
	testkit.WaitFor(t, 15*time.Second, func() error {
		if !e.link.Connected() {
			return errors.New("still waiting for connected")
		}
		return nil
	})
	for outage := 1; outage <= 2; outage++ {
		proxy.Cut()
		testkit.WaitFor(t, 20*time.Second, func() error {
			if seen("DBG dial") < 4*outage {
				return errors.New("still waiting for repeated failed dials")
			}
			return nil
		})
		restoreWAN(t, proxy, e.link)
		// The first dial error of each outage is news; the rest repeat it.
		if n := seen("ERR dial"); n != outage {
			t.Fatalf("outage %d: %d dial errors at error level, want %d (one per outage)", outage, n, outage)
		}
	}
	for _, level := range []string{"DBG", "INF", "WRN", "ERR"} {
		if n := seen(level + " reload"); n != 0 {
			t.Fatalf("%d \"Reloaded\" lines at %s: the link reloaded the server", n, level)
		}
	}
	mu.Lock()
	t.Logf("lines by level: %v", count)
	mu.Unlock()
}

// A forwarder-level reason (hub stream missing, permission) is cleared when
// the forwarder reports it cured; a connection-level reason is not, because
// only the link knows when the connection is healthy again.
func TestLinkDegradedCleared(t *testing.T) {
	hub := testkit.RunServer(t, testkit.HubOpts(t))
	e := startLink(t, linkConfig(t, hubLeafURL(t, hub, "nats")), nil)
	// Connected, so the link itself has no reason to set meanwhile.
	select {
	case <-e.link.Up():
	case <-time.After(15 * time.Second):
		t.Fatal("link not up")
	}
	e.link.SetDegraded(ReasonHubStream, "hub stream missing: run edge-agent hub init")
	if st := e.link.Status(); st.ReasonClass != ReasonHubStream {
		t.Fatalf("reason after Degraded = %q", st.ReasonClass)
	}
	e.link.SetDegraded("", "")
	if st := e.link.Status(); st.ReasonClass != "" || st.Reason != "" {
		t.Fatalf("hub_stream reason not cleared: %q %q", st.ReasonClass, st.Reason)
	}
	e.link.SetDegraded(ReasonTCP, "TCP: connection refused")
	e.link.SetDegraded("", "")
	if st := e.link.Status(); st.ReasonClass != ReasonTCP {
		t.Fatalf("a connection-level reason was cleared by the forwarder: %+v", st)
	}
}

// TestLinkHubWords: nats-server sees only the link's loopback gate as its
// peer, so its lines name the gate; status names the hub as configured.
func TestLinkHubWords(t *testing.T) {
	hub := "nats://leaf:s3cret@" + closedPort(t)
	e := startLink(t, linkConfig(t, hub), nil)
	gateAddr := e.link.gate.ln.Addr().String()
	u, _ := url.Parse(hub)
	got := e.link.explain(ReasonOther, gateAddr+" - lid:5 - Leafnode connection closed: Read Error")
	want := "hub " + u.Host + " closed the connection (Leafnode connection closed: Read Error)"
	if got != want {
		t.Errorf("explain = %q, want %q", got, want)
	}
	if got := e.link.explain(ReasonAuth, "auth: authorization violation"); got != "auth: the hub refused this site's user/password (authorization violation)" {
		t.Errorf("explain(auth) = %q", got)
	}
	if fix := FixFor(e.link.cfg, ReasonAuth, ""); !strings.Contains(fix, "the user:password in uplink.hub_urls") || strings.Contains(fix, "s3cret") {
		t.Errorf("FixFor(auth) = %q", fix)
	}
}
