package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/internal/wanfault"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// fwEnv is a real hub (JetStream domain "hub", stream EDGE) and a real site
// leaf server (domain = site) with the agent's local streams and a real
// state.db: everything the forwarder touches, in-process.
type fwEnv struct {
	t       testing.TB
	site    string
	cfg     *Config
	hub     *server.Server // nil when the hub is another process
	hubLeaf string         // host:port of the hub's leafnode listener
	leaf    *server.Server
	hubNC   *nats.Conn
	leafNC  *nats.Conn
	hubJS   jetstream.JetStream
	leafJS  jetstream.JetStream
	st      *buffer.State
	stPath  string
	leafDir string
	wan     *wanfault.Proxy // with fwEnvOpts.rtt
	link    *Link           // when a test runs one (runLink)
}

type fwEnvOpts struct {
	hubOpts   *server.Options // instead of fwHubOpts, e.g. from a config file
	hub       func(*server.Options)
	leaf      func(*server.Options)
	noStream  bool          // no hub stream
	cfg       func(*Config) // before the leaf remote is built from it
	remoteURL func(u *url.URL)
	// leafUser and leafPassword log the site's leaf in at the hub;
	// hubUser and hubPassword the test's own hub client.
	leafUser, leafPassword string
	hubUser, hubPassword   string
	rtt                    time.Duration // > 0: the leaf dials through a WAN proxy with this round trip
	// sharedHub: another site's env whose hub (and EDGE stream) this site
	// joins instead of starting its own: many sites, one hub.
	sharedHub *fwEnv
}

func newFwEnv(t testing.TB, site string, eo fwEnvOpts) *fwEnv {
	t.Helper()
	e := &fwEnv{t: t, site: site}
	if h := eo.sharedHub; h != nil {
		e.hub, e.hubNC, e.hubJS, e.hubLeaf = h.hub, h.hubNC, h.hubJS, h.hubLeaf
	} else {
		ho := eo.hubOpts
		if ho == nil {
			ho = testkit.HubOpts(t)
		}
		if eo.hub != nil {
			eo.hub(ho)
		}
		e.hub = testkit.RunServer(t, ho)
		var auth []nats.Option
		if eo.hubUser != "" {
			auth = append(auth, nats.UserInfo(eo.hubUser, eo.hubPassword))
		}
		e.hubNC, e.hubJS = testkit.Connect(t, e.hub.ClientURL(), auth...)
		v, err := e.hub.Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		e.hubLeaf = fmt.Sprintf("127.0.0.1:%d", v.LeafNode.Port)
	}
	if !eo.noStream && eo.sharedHub == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := hubops.EnsureHubStream(ctx, e.hubJS, hubops.HubStreamConfig("EDGE", "edge", 2*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.HubURLs = []string{"nats://" + e.hubLeaf}
	if eo.rtt > 0 {
		wan, err := wanfault.Start(e.hubLeaf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(wan.Close)
		e.wan = wan
		if err := wan.Shape(eo.rtt/2, 0); err != nil {
			t.Fatal(err)
		}
		cfg.HubURLs = []string{wan.URL("nats")}
	}
	e.cfg = &cfg
	if eo.cfg != nil {
		eo.cfg(e.cfg)
	}
	// The default uplink.ignore_discovered_urls keeps the leaf on the WAN
	// proxy, which the hub's advertised address would bypass.
	r, err := RemoteOptions(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The agent's trust boundary (as agent.serverOptions applies it), so
	// every forwarder, downlink and sourcing test runs through it.
	Protect(r, site, e.cfg.AllowRemoteAdmin)
	if eo.leafUser != "" {
		r.URLs[0].User = url.UserPassword(eo.leafUser, eo.leafPassword)
	}
	if eo.remoteURL != nil {
		eo.remoteURL(r.URLs[0])
	}
	e.leafDir = t.TempDir()
	lo := &server.Options{
		ServerName: site, Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, JetStreamDomain: site, StoreDir: e.leafDir,
		LeafNode: server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{r}, ReconnectInterval: 100 * time.Millisecond},
	}
	if eo.leaf != nil {
		eo.leaf(lo)
	}
	e.leaf = testkit.RunServer(t, lo)
	// Over loopback TCP, as the agent connects (agent.connectLocal).
	e.leafNC, e.leafJS = testkit.Connect(t, e.leaf.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := buffer.EnsureStreams(ctx, e.leafJS, buffer.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	e.openState()
	return e
}

func (e *fwEnv) openState() {
	e.t.Helper()
	if e.stPath == "" {
		e.stPath = filepath.Join(e.t.TempDir(), "state.db")
	}
	st, err := buffer.OpenState(e.stPath, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.st = st
	e.t.Cleanup(func() { _ = st.Close() })
}

func (e *fwEnv) leafUp() {
	e.t.Helper()
	testkit.WaitFor(e.t, 15*time.Second, func() error {
		if !(e.hub.NumLeafNodes() == 1 && e.leaf.NumLeafNodes() == 1) {
			return errors.New("still waiting for leaf connection")
		}
		return nil
	})
}

// publish stores n messages on subject in the local stream, as the sampler
// or a local app does.
func (e *fwEnv) publish(subject string, n int, data []byte) {
	e.t.Helper()
	e.publishEach(subject, n, func() []byte { return data })
}

// publishRandom stores n messages of size random bytes each: what benches
// that count bytes on the wire send, because the leaf connection
// compresses (s2_fast by default), and a backlog of identical readings
// would shrink to almost nothing.
func (e *fwEnv) publishRandom(subject string, n, size int) {
	e.t.Helper()
	rnd := rand.NewChaCha8([32]byte{})
	e.publishEach(subject, n, func() []byte {
		b := make([]byte, size)
		_, _ = rnd.Read(b)
		return b
	})
}

func (e *fwEnv) publishEach(subject string, n int, data func() []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		if _, err := e.leafJS.PublishAsync(subject, data()); err != nil {
			e.t.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 {
			select {
			case <-e.leafJS.PublishAsyncComplete():
			case <-ctx.Done():
				e.t.Fatalf("local publishes of %s not acked", subject)
			}
		}
	}
}

// fwLog captures a forwarder's log lines.
type fwLog struct{ testkit.SyncBuffer }

func (l *fwLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

type runningFw struct {
	*Forwarder
	stop func()
}

// start runs a forwarder on the leaf's client connection (e.leafNC) until stop.
func (e *fwEnv) start(log *slog.Logger, opts ...Option) *runningFw {
	e.t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts = append([]Option{WithLeafServer(e.leaf), WithRetry(50*time.Millisecond, 500*time.Millisecond)}, opts...)
	f, err := NewForwarder(e.cfg, e.site, e.leafNC, e.st, log, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	e.t.Cleanup(stop)
	return &runningFw{Forwarder: f, stop: stop}
}

// hubMsgs reads every message the hub stream holds, in order. A hub
// cluster that just lost a node may not answer for a moment ("no
// responders" while stream, consumer or meta leaders move): the whole read
// starts over then, with a fresh consumer.
func (e *fwEnv) hubMsgs() []jetstream.Msg {
	e.t.Helper()
	var (
		out  []jetstream.Msg
		last string
	)
	testkit.WaitFor(e.t, 60*time.Second, func() error {
		msgs, err := e.readHubStream()
		if err != nil && err.Error() != last { // once per distinct error, not every poll
			last = err.Error()
			e.t.Logf("reading the hub stream: %v; retrying", err)
		}
		out = msgs
		if err != nil {
			return errors.New("still waiting for the hub to serve stream EDGE to a reader")
		}
		return nil
	})
	return out
}

func (e *fwEnv) readHubStream() ([]jetstream.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := e.hubJS.Stream(ctx, "EDGE")
	if err != nil {
		return nil, err
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	total := s.CachedInfo().State.Msgs
	var out []jetstream.Msg
	for uint64(len(out)) < total {
		b, err := c.Fetch(int(min(1000, total-uint64(len(out)))), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			return nil, err
		}
		for m := range b.Messages() {
			out = append(out, m)
		}
		if b.Error() != nil {
			return nil, b.Error()
		}
	}
	return out, nil
}

func (e *fwEnv) hubCount() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.hubJS.Stream(ctx, "EDGE")
	if err != nil {
		return 0
	}
	return s.CachedInfo().State.Msgs
}

// waitHub waits up to d until the hub stream EDGE holds n messages (what
// names them while it waits) and fails if it holds more: a duplicate.
func (e *fwEnv) waitHub(n uint64, d time.Duration, what string) {
	e.t.Helper()
	testkit.WaitFor(e.t, d, func() error {
		if got := e.hubCount(); got < n {
			return fmt.Errorf("still waiting for %s: %d on the hub", what, got)
		}
		return nil
	})
	if got := e.hubCount(); got != n {
		e.t.Fatalf("hub holds %d readings, want %d", got, n)
	}
}

// waitHubPast waits up to d until the hub stream EDGE holds more than n
// messages: flow under way.
func (e *fwEnv) waitHubPast(n uint64, d time.Duration, what string) {
	e.t.Helper()
	testkit.WaitFor(e.t, d, func() error {
		if got := e.hubCount(); got <= n {
			return fmt.Errorf("still waiting for %s: %d on the hub", what, got)
		}
		return nil
	})
}

// waitCursor waits up to d until the forwarder's cursor on the local
// stream is at n (what names the wait).
func (e *fwEnv) waitCursor(stream string, n uint64, d time.Duration, what string) {
	e.t.Helper()
	testkit.WaitFor(e.t, d, func() error {
		if got := e.st.Cursor(stream); got != n {
			return fmt.Errorf("still waiting for %s: the cursor is at %d", what, got)
		}
		return nil
	})
}

// recreateHubStream deletes the hub stream EDGE and creates it anew: the
// hub lost its stream (a purge would keep the ids of the duplicate window,
// so resends would be dropped).
func (e *fwEnv) recreateHubStream() {
	e.t.Helper()
	if err := e.hubJS.DeleteStream(context.Background(), "EDGE"); err != nil {
		e.t.Fatal(err)
	}
	// Right after a delete, creating a stream of the same name can fail
	// under load ("error creating store for stream": the old store is not
	// gone yet); it succeeds a moment later.
	testkit.WaitFor(e.t, 10*time.Second, func() error {
		_, err := hubops.EnsureHubStream(context.Background(), e.hubJS, hubops.HubStreamConfig("EDGE", "edge", time.Hour))
		if err != nil {
			return errors.New("still waiting for the hub stream recreated")
		}
		return nil
	})
}

// checkExactlyOnce asserts the hub holds each local message of stream
// from..to once, in order, with the contract's headers.
func (e *fwEnv) checkExactlyOnce(msgs []jetstream.Msg, stream, localSubject string, from, to uint64) {
	e.t.Helper()
	next := from
	ids := map[string]bool{}
	for _, m := range msgs {
		h := m.Headers()
		if h.Get(HdrStream) != stream {
			continue
		}
		seq := h.Get(HdrSeq)
		if seq != fmt.Sprint(next) {
			e.t.Fatalf("%s: hub has Edge-Seq %s where %d was expected (loss, duplicate or reorder)", stream, seq, next)
		}
		id := h.Get(nats.MsgIdHdr)
		if ids[id] {
			e.t.Fatalf("duplicate Nats-Msg-Id %s", id)
		}
		ids[id] = true
		if want := fmt.Sprintf("%s.%s.%s.%d", e.site, e.st.StoreID(), stream, next); id != want {
			e.t.Fatalf("Nats-Msg-Id = %q, want %q", id, want)
		}
		if m.Subject() != "edge."+e.site+"."+localSubject || h.Get(HdrSubject) != localSubject || h.Get(HdrSite) != e.site {
			e.t.Fatalf("subject %s, headers %v", m.Subject(), h)
		}
		if _, err := time.Parse(time.RFC3339Nano, h.Get(HdrTime)); err != nil {
			e.t.Fatalf("Edge-Time %q: %v", h.Get(HdrTime), err)
		}
		next++
	}
	if next-1 != to {
		e.t.Fatalf("%s: hub has up to seq %d, want %d", stream, next-1, to)
	}
}

// checkOnce asserts the hub holds each of seq 1..n of stream exactly once,
// in whatever order: a 429 in the middle of a window lets later messages
// in ahead of the refused one.
func (e *fwEnv) checkOnce(msgs []jetstream.Msg, stream string, n uint64) {
	e.t.Helper()
	seen := make(map[string]bool, n)
	for _, m := range msgs {
		id := m.Headers().Get(nats.MsgIdHdr)
		if seen[id] {
			e.t.Fatalf("duplicate %s", id)
		}
		seen[id] = true
	}
	for seq := uint64(1); seq <= n; seq++ {
		if id := fmt.Sprintf("%s.%s.%s.%d", e.site, e.st.StoreID(), stream, seq); !seen[id] {
			e.t.Fatalf("missing %s", id)
		}
	}
	if uint64(len(seen)) != n {
		e.t.Fatalf("hub holds %d messages, want %d", len(seen), n)
	}
}

// leafInMsgs counts messages the leaf server received from its clients.
func (e *fwEnv) leafInMsgs() int64 {
	v, err := e.leaf.Varz(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return v.InMsgs
}

// capTelemetry limits the local TELEMETRY stream to max messages, so the
// buffer evicts readings the forwarder has not sent yet, and returns it.
func (e *fwEnv) capTelemetry(max int64) jetstream.Stream {
	e.t.Helper()
	return updateStream(e.t, e.leafJS, "TELEMETRY", func(c *jetstream.StreamConfig) { c.MaxMsgs = max })
}

// allowBatches switches fast batch publishing on the hub stream EDGE.
func (e *fwEnv) allowBatches(on bool) {
	e.t.Helper()
	updateStream(e.t, e.hubJS, "EDGE", func(c *jetstream.StreamConfig) { c.AllowBatchPublish = on })
}

// updateStream changes the configuration of stream name with edit and
// returns the stream.
func updateStream(t testing.TB, js jetstream.JetStream, name string, edit func(*jetstream.StreamConfig)) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	edit(&c)
	if _, err := js.UpdateStream(ctx, c); err != nil {
		t.Fatalf("updating stream %s: %v", name, err)
	}
	return s
}
