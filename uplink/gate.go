package uplink

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

const (
	// gateHold is how long a CONNECT waits at the closed gate before it is
	// told 503. Holding, instead of refusing at once, puts each attempt
	// exactly when the link opens the gate, and spares a 1,700-site fleet
	// a hub DNS lookup plus a loopback connect several times a second per
	// site during an outage (nats-server resolves the hub name before each
	// CONNECT). It is bounded because server.Shutdown waits for a held
	// CONNECT when the link is gone first (setup failed before Run).
	gateHold = 5 * time.Second
	// gateDialTimeout bounds the gate's TCP dial of the hub: one lost SYN
	// costs a 1 s retransmit, so nats-server's 1 s default would turn a
	// lossy satellite link into "timeout".
	gateDialTimeout = 5 * time.Second
	// gateIOTimeout bounds reading a CONNECT request and writing a reply.
	gateIOTimeout = 5 * time.Second
	// gateClosedStatus is the 503 reason phrase; the link logger and the
	// classifier recognise the server's line about it as the gate's own
	// pacing, not a link problem.
	gateClosedStatus = "503 link gate closed (edge-agent uplink backoff)"
)

// Gate is a loopback HTTP CONNECT proxy the uplink remote dials through:
// the link's way to pace the remote without server.ReloadOptions, which in
// nats-server 2.15 re-runs account configuration on every call and races
// with JetStream API traffic. The server keeps its remote enabled and
// retries on its own; each retry is a CONNECT the gate holds while closed
// and lets through once per Link.open. TLS, WebSocket and the NATS protocol
// run end to end inside the tunnel, so certificate checks are unchanged.
type Gate struct {
	ln  net.Listener
	url string
	// allow is the set of hub host names a CONNECT may name; nil allows
	// any (the hub's discovered URLs are in use). A local process cannot
	// use the gate to reach anything else.
	allow map[string]bool

	ctx    context.Context // cancelled by close: ends dials and holds
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// failed carries the reason of a dial the gate made for an open
	// attempt: nats-server logs only the first failed CONNECT of a retry
	// loop at error level, so its log cannot tell the link.
	failed chan dialFailure

	// up counts the bytes the site sent towards the hub through every
	// tunnel: what a metered link bills, after compression and TLS.
	up atomic.Int64

	mu     sync.Mutex
	token  bool          // one CONNECT may pass
	wake   chan struct{} // closed when token is granted
	active *tunnel       // the connection the leaf runs over
	// shuts counts shut calls: a dial that outlives the attempt it was
	// let through for must not become the tunnel of the next one.
	shuts uint64
}

// dialFailure is why the gate could not reach the hub for an attempt;
// noAnswer: the dial got no answer at all (timeout, no route, no DNS
// server), where a refusal means the path to the hub works (refused).
type dialFailure struct {
	class    ReasonClass
	reason   string
	noAnswer bool
}

// watch is what the link watches for after this failure: the path's
// return, the hub's, or nothing (a name that does not exist).
func (f dialFailure) watch() watchMode {
	switch {
	case f.noAnswer:
		return watchUnanswered
	case f.class == ReasonTCP:
		return watchRefused
	}
	return watchNone
}

type tunnel struct {
	leaf, hub net.Conn
	once      sync.Once
}

func (t *tunnel) close() {
	t.once.Do(func() {
		t.leaf.Close()
		t.hub.Close()
	})
}

// GateRemote routes the uplink remote r through a new loopback gate, for
// NewLink to take over: call it on the remote before server.NewServer, in
// place of disabling it. The remote then starts enabled, and no reload is
// ever needed to pace it. Like server.NewServer it runs nothing: the gate
// only binds the loopback port the remote's proxy URL must name (a dial
// waits in the kernel's queue), and answers from Start on. Close releases
// it if no link ever runs it.
func GateRemote(r *server.RemoteLeafOpts) (*Gate, error) {
	if r.Proxy.URL != "" {
		return nil, fmt.Errorf("uplink: the leaf remote already goes through proxy %s; the link gate needs the remote's proxy setting", r.Proxy.URL)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("uplink: link gate listener on loopback: %w", err)
	}
	g := &Gate{ln: ln, url: "http://" + ln.Addr().String(), failed: make(chan dialFailure, 1), wake: make(chan struct{})}
	if r.IgnoreDiscoveredServers {
		g.allow = map[string]bool{}
		for _, u := range r.URLs {
			g.allow[u.Hostname()] = true
		}
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	r.Proxy.URL = g.url
	// The server's whole CONNECT exchange: held at most gateHold, then
	// one dial.
	r.Proxy.Timeout = gateHold + gateDialTimeout + gateIOTimeout
	return g, nil
}

// Start serves the server's CONNECTs, held until the link lets one
// through: call it just before the server's Start.
func (g *Gate) Start() {
	g.wg.Add(1)
	go g.serve()
}

func (g *Gate) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return // closed
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.handle(c)
		}()
	}
}

func (g *Gate) handle(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(gateIOTimeout))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	target := req.URL.Host
	host, _, err := net.SplitHostPort(target)
	switch {
	case req.Method != http.MethodConnect:
		refuse(c, "405 the link gate only tunnels CONNECT")
		return
	case err != nil:
		refuse(c, "400 CONNECT needs host:port")
		return
	case g.allow != nil && !g.allow[host]:
		refuse(c, fmt.Sprintf("403 %s is not an uplink.hub_urls host", host))
		return
	}
	shuts, ok := g.take()
	if !ok {
		refuse(c, gateClosedStatus)
		return
	}
	d := net.Dialer{Timeout: gateDialTimeout}
	hub, err := d.DialContext(g.ctx, "tcp", target)
	if err != nil {
		class, reason := dialReason(target, err, gateDialTimeout)
		select {
		case g.failed <- dialFailure{class, reason, !refused(err)}:
		default: // the link has not read the previous one: it is stale anyway
		}
		// The reason phrase lands in nats-server's own log line.
		refuse(c, "502 "+strings.NewReplacer("\r", " ", "\n", " ").Replace(err.Error()))
		return
	}
	t := &tunnel{leaf: c, hub: hub}
	g.mu.Lock()
	if g.shuts != shuts { // shut (or closed) while dialing
		g.mu.Unlock()
		t.close()
		return
	}
	g.active = t
	g.mu.Unlock()
	defer func() {
		t.close()
		g.mu.Lock()
		if g.active == t {
			g.active = nil
		}
		g.mu.Unlock()
	}()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer t.close()
		// Counted as it goes, for the bandwidth cap (a spliced copy
		// would report its bytes only when the connection ends).
		up := counted{hub, &g.up}
		// Anything the server sent right after its CONNECT is in br.
		if n := br.Buffered(); n > 0 {
			pre, _ := br.Peek(n)
			if _, err := up.Write(pre); err != nil {
				return
			}
		}
		_, _ = io.Copy(up, c)
	}()
	_, _ = io.Copy(c, hub)
}

// counted is a writer that adds what it wrote to n.
type counted struct {
	w io.Writer
	n *atomic.Int64
}

func (c counted) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// refuse answers a CONNECT with an error status and hangs up.
func refuse(c net.Conn, status string) {
	_ = c.SetWriteDeadline(time.Now().Add(gateIOTimeout))
	_, _ = io.WriteString(c, "HTTP/1.1 "+status+"\r\n\r\n")
	c.Close()
}

// take waits at most gateHold for the token and consumes it; shuts
// identifies the attempt.
func (g *Gate) take() (shuts uint64, ok bool) {
	hold := time.NewTimer(gateHold)
	defer hold.Stop()
	for {
		g.mu.Lock()
		if g.token {
			g.token = false
			shuts = g.shuts
			g.mu.Unlock()
			return shuts, true
		}
		wake := g.wake
		g.mu.Unlock()
		select {
		case <-wake:
		case <-hold.C:
			return 0, false
		case <-g.ctx.Done():
			return 0, false
		}
	}
}

// open lets the next CONNECT through, and forgets a dial failure the link
// no longer waits for.
func (g *Gate) open() {
	select {
	case <-g.failed:
	default:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.token = true
	close(g.wake)
	g.wake = make(chan struct{})
}

// shut takes back an unused token and cuts the tunnel: the server sees a
// disconnect and its next CONNECT waits at the gate.
func (g *Gate) shut() {
	g.mu.Lock()
	t := g.active
	g.token, g.active = false, nil
	g.shuts++
	g.mu.Unlock()
	if t != nil {
		t.close()
	}
}

// hub is the address the tunnel reached, "" without one.
func (g *Gate) hub() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active == nil {
		return ""
	}
	return g.active.hub.RemoteAddr().String()
}

// Close stops the gate for good and waits for its goroutines. Link.Run
// closes its gate when it returns; a second Close does nothing more.
func (g *Gate) Close() {
	g.cancel()
	g.ln.Close()
	g.shut()
	g.wg.Wait()
}
