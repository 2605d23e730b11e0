package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/retry"
)

// Headers every forwarded message carries: part of the subject contract, so
// hub consumers can tell where and when a reading was taken.
const (
	HdrSubject = "Edge-Subject" // the local subject, e.g. telemetry.ambient
	HdrTime    = "Edge-Time"    // RFC3339Nano time the local stream stored it
	HdrSite    = "Edge-Site"
	HdrStream  = "Edge-Stream" // local stream: ALERTS or TELEMETRY
	HdrSeq     = "Edge-Seq"    // sequence in the local stream
)

// Cursors is what the forwarder needs from state.db (buffer.State): the
// highest contiguous sequence the hub acknowledged per stream, and the count
// of readings limits evicted before they were forwarded.
type Cursors interface {
	Cursor(stream string) uint64
	SetCursor(stream string, seq uint64)
	ResetCursor(stream string, seq uint64) error
	AddEvicted(stream string, n uint64)
	StoreID() string
	MsgIDPrefix(stream string, seq uint64) string // the id epoch of seq (buffer.State.MsgIDPrefix)
	// FreshFrom is the first sequence whose id no earlier process can
	// have sent (buffer.State.FreshFrom).
	FreshFrom(stream string) uint64
	// SameStream is false for a local stream recreated since state.db
	// last checked it (buffer.State.SameStream).
	SameStream(stream string, metadata map[string]string) bool
}

// Option tunes a Forwarder; the defaults suit a store gateway.
type Option func(*options)

type options struct {
	streams    []string
	window     int
	ackTimeout time.Duration
	leaf       *server.Server
	link       LinkControl
	retryMin   time.Duration
	retryMax   time.Duration
	jitter     time.Duration
	// rnd returns a uniform value in [0, n); replaceable so tests can pin it.
	rnd func(n int64) int64
	// read is the lane reader (readStream); replaceable so tests can make
	// it lose or hold a message.
	read readFunc
}

// WithStreams sets the local streams in priority order (default
// buffer.Lanes: ALERTS before TELEMETRY).
func WithStreams(names ...string) Option { return func(o *options) { o.streams = names } }

// WithWindow bounds the messages in flight to the hub (default 8192, and
// at most 4 MiB of them): enough to fill a 200 ms round trip at tens of
// thousands of readings per second, small enough to bound memory and the
// resend after a failure. The window in use starts at 64 and adapts below
// this bound (congestion).
func WithWindow(n int) Option { return func(o *options) { o.window = n } }

// windowBytes caps the bytes in flight whatever the message count, so
// large messages do not pile megabytes into the leaf's send buffer.
const windowBytes = 4 << 20

// WithAckTimeout is how long the hub may acknowledge nothing while
// messages wait for an ack before the forwarder restarts from the cursor
// (default 10s). While acks keep coming, a slow link is only slow.
func WithAckTimeout(d time.Duration) Option { return func(o *options) { o.ackTimeout = d } }

// WithLeafServer gives the forwarder the embedded leaf server: it waits
// quietly while no leaf connection is up instead of spinning on "no
// responders", and tells a missing hub stream from a permission problem by
// the interest the hub announced over the leaf.
func WithLeafServer(s *server.Server) Option { return func(o *options) { o.leaf = s } }

// LinkControl is what the forwarder needs from the link manager (*Link).
type LinkControl interface {
	// Connected is the forwarder's signal to send or to wait quietly.
	Connected() bool
	// Up returns a channel that is closed while Connected: the forwarder
	// sleeps on it through an outage and starts the moment the link is
	// back, instead of noticing on its next poll.
	Up() <-chan struct{}
	// Bounce redials the leaf connection: the cure when resetting the
	// forwarder did not end a stall.
	Bounce()
	// SetDegraded shows a hub-side cause (hub stream, permission) in the
	// link's status while the connection itself is up.
	SetDegraded(class ReasonClass, reason string)
	// WANRestored says the connection came back because the site's own
	// path to the hub did (the hub stayed up): no fleet is returning at
	// the same moment, so the drain ramp (WithStartJitter) is skipped.
	WANRestored() bool
	// SentUpstream counts the bytes the site has sent towards the hub as
	// they left for the WAN (compressed, encrypted, framed): what
	// uplink.bandwidth caps.
	SentUpstream() int64
}

// WithLink connects the forwarder to the link manager. Without it the leaf
// server's connection count is the link signal and a stall is only reset.
func WithLink(l LinkControl) Option { return func(o *options) { o.link = l } }

// WithStartJitter spreads the drain after an outage: once the link is back
// after the forwarder had to wait for it, every lane but the first (ALERTS)
// waits a uniform random time in [0, d] before its first batch. A hub
// restart drops a whole fleet at once; the link's backoff spreads the
// reconnects, and this spreads the backlog each site then sends as fast as
// the hub acks, so the hub's first seconds back are not one burst of every
// store's outage. Alerts are few and small, and the reason a site buffers
// at all, so they go at once. Not after the site's own WAN outage
// (LinkControl.WANRestored): nobody else is returning then. The agent
// passes uplink.reconnect.min; 0 (the default) starts at once.
func WithStartJitter(d time.Duration) Option { return func(o *options) { o.jitter = d } }

// WithRetry bounds the backoff between failed sessions (default 250ms..30s).
func WithRetry(min, max time.Duration) Option {
	return func(o *options) { o.retryMin, o.retryMax = min, max }
}

// Forwarder copies the local streams to the hub exactly once: in stream
// order, with a window of asynchronous publishes, advancing the cursor in
// state.db only past messages the hub stream acknowledged. Resends after a
// failure carry the same Nats-Msg-Id, so the hub's duplicate window drops
// them.
type Forwarder struct {
	cfg    *Config
	site   string
	prefix string
	nc     *nats.Conn
	js     jetstream.JetStream
	st     Cursors
	log    *slog.Logger
	o      options
	pacer  *pacer

	ctl chan replayReq
	// sentTo is the highest sequence per stream this forwarder published:
	// a hub ack saying "duplicate" for a later one means an id collision,
	// not a resend. Only Run's goroutine uses it.
	sentTo map[string]uint64

	mu     sync.Mutex
	status ForwarderStatus
	cur    *session
	cc     congestion // between sessions; the running one has its copy
	acked  uint64     // hub-acked messages since start, for the rate
	rate   []float64  // acked samples, one per second, for RatePerSec
	// lastProgress starts the stall clock: the last hub ack, the end of a
	// wait for the link or of the start delay (it is set ahead to hold),
	// or a reconnect the watchdog saw; it only moves forward (progress).
	// waiting is set while the forwarder waits for the link: that time is
	// no stall.
	lastProgress time.Time
	waiting      bool
	// hold is the end of the start delay: until then sessions send from
	// the first lane only (WithStartJitter).
	hold time.Time
	// replays holds the replays not done yet, per stream (Replay).
	replays map[string]replayRange
	// reprobe is when a session tries fast batches again after a fall
	// back to per-message acks (status.Mode); so does the first session on
	// a leaf connection other than fellBackOn, the one the fall back
	// happened on (connection): the hub may have been upgraded or `hub
	// init` run meanwhile, however short the outage.
	reprobe    time.Time
	fellBackOn any
}

// progress restarts the stall clock at t unless it already runs from
// later, as after a start delay (hold). The caller holds f.mu.
func (f *Forwarder) progress(t time.Time) {
	if t.After(f.lastProgress) {
		f.lastProgress = t
	}
}

// NewForwarder prepares a forwarder for site on the agent's connection nc
// to the leaf server; nothing is sent until Run.
func NewForwarder(cfg *Config, site string, nc *nats.Conn, st Cursors, log *slog.Logger, opts ...Option) (*Forwarder, error) {
	if !tokenRE.MatchString(site) {
		return nil, fmt.Errorf("forwarder: site %q is not a NATS token", site)
	}
	if st.StoreID() == "" {
		return nil, errors.New("forwarder: state has no store id: message ids would not be unique")
	}
	o := options{
		streams: buffer.Lanes, window: 8192, ackTimeout: 10 * time.Second,
		retryMin: 250 * time.Millisecond, retryMax: 30 * time.Second,
		rnd: rand.Int64N, read: readStream,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.window < 1 || o.ackTimeout <= 0 || o.retryMin <= 0 || o.retryMax < o.retryMin || o.jitter < 0 {
		return nil, fmt.Errorf("forwarder: invalid options (window %d, ack timeout %s, retry %s..%s, start jitter %s)", o.window, o.ackTimeout, o.retryMin, o.retryMax, o.jitter)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("forwarder: %w", err)
	}
	f := &Forwarder{
		cfg: cfg, site: site, prefix: cfg.SubjectPrefix, nc: nc, js: js, st: st, log: log, o: o,
		ctl:    make(chan replayReq),
		sentTo: map[string]uint64{}, replays: map[string]replayRange{},
		status: ForwarderStatus{Forwarded: map[string]uint64{}},
		cc:     newCongestion(o.window),
	}
	if cfg.Bandwidth > 0 {
		var wire func() int64
		if o.link != nil {
			wire = o.link.SentUpstream
		}
		f.pacer = newPacer(float64(cfg.Bandwidth), wire)
	}
	return f, nil
}

// HubSubject is where a local subject lands at the hub.
func (f *Forwarder) HubSubject(local string) string {
	return f.prefix + "." + f.site + "." + local
}

// MsgID is the hub-side de-duplication id of one local message: the id
// epoch makes a wiped device or a reused sequence never reuse an old id.
func (f *Forwarder) MsgID(stream string, seq uint64) string {
	return string(f.appendMsgID(make([]byte, 0, 64), stream, seq))
}

// appendMsgID appends MsgID(stream, seq) to b.
func (f *Forwarder) appendMsgID(b []byte, stream string, seq uint64) []byte {
	b = append(append(b, f.site...), '.')
	b = append(append(b, f.st.MsgIDPrefix(stream, seq)...), '.')
	b = append(append(b, stream...), '.')
	return strconv.AppendUint(b, seq, 10)
}

// Status is a snapshot for `edge-agent status`.
func (f *Forwarder) Status() ForwarderStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.status
	s.Forwarded = make(map[string]uint64, len(f.status.Forwarded))
	for k, v := range f.status.Forwarded {
		s.Forwarded[k] = v
	}
	s.Window = f.cc.limit()
	if f.cur != nil {
		s.InFlight, s.Window = f.cur.inFlightCount()
	}
	if n := len(f.rate); n > 1 {
		s.RatePerSec = (f.rate[n-1] - f.rate[0]) / float64(n-1)
	}
	if f.hold.After(time.Now()) {
		s.HeldUntil = f.hold
	}
	return s
}

// Backlog counts, per stream, the stored messages the hub has not
// acknowledged yet (interior deletes are counted as pending).
func (f *Forwarder) Backlog(ctx context.Context) (map[string]uint64, error) {
	out := make(map[string]uint64, len(f.o.streams))
	for _, name := range f.o.streams {
		s, err := f.js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("backlog of stream %s: %w", name, err)
		}
		st := s.CachedInfo().State
		from := max(f.st.Cursor(name), st.FirstSeq-min(st.FirstSeq, 1))
		if st.LastSeq > from {
			out[name] = st.LastSeq - from
		} else {
			out[name] = 0
		}
	}
	return out, nil
}

// Run forwards until ctx ends. A failed session (hub stream missing, link
// down, ack timeout) restarts from the cursor after a backoff; it never
// returns an error for a hub-side problem, because a broken uplink must not
// stop the agent.
func (f *Forwarder) Run(ctx context.Context) error {
	f.mu.Lock()
	f.progress(time.Now())
	f.mu.Unlock()
	var wg sync.WaitGroup
	wctx, stopWatch := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); f.watch(wctx) }()
	defer func() { stopWatch(); wg.Wait() }()

	wait := f.o.retryMin
	var lastErr string
	for {
		if err := f.waitLink(ctx); err != nil {
			return nil
		}
		before := f.ackedCount()
		sentTo := maps.Clone(f.sentTo)
		err := f.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var rr *replayReq
		if errors.As(err, &rr) {
			rr.reply <- f.replay(rr)
			wait = f.o.retryMin
			continue
		}
		if errors.Is(err, errModeChanged) {
			// The hub stored nothing of the refused batch: its readings
			// are not resends.
			f.sentTo = sentTo
			continue
		}
		if errors.Is(err, errLinkDown) {
			continue // waitLink holds until the link is back; then resend at once
		}
		if f.ackedCount() > before {
			wait = f.o.retryMin
		}
		class, reason := classify(ctx, err, f)
		f.setError(class, reason)
		if reason != lastErr {
			if f.o.link != nil && (class == ReasonHubStream || class == ReasonPermission) {
				f.o.link.SetDegraded(class, reason)
			}
			f.log.Warn("forwarder: paused; resending from the cursor after a backoff", "reason_class", class, "reason", reason, "retry_in", wait, "window", f.Status().Window)
			lastErr = reason
		}
		select {
		case <-ctx.Done():
			return nil
		case rr := <-f.ctl:
			rr.reply <- f.replay(&rr)
			wait = f.o.retryMin
		case <-time.After(wait):
			wait = retry.Exp(wait, f.o.retryMax, 1)
		}
	}
}

// waitLink blocks while the leaf connection is down, then draws the start
// delay (WithStartJitter). A dead WAN costs nothing: with the link manager
// the forwarder sleeps on its Up channel; with only the leaf server, which
// announces nothing, it polls the connection count.
func (f *Forwarder) waitLink(ctx context.Context) error {
	if f.linkUp() {
		return nil
	}
	f.setError(ReasonOther, errLinkDown.Error())
	f.mu.Lock()
	f.waiting = true
	f.hold = time.Time{} // the link's return draws a new one (drawHold)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.waiting = false
		f.progress(time.Now()) // a link that just came up has not stalled
		f.mu.Unlock()
	}()
	if err := f.untilUp(ctx); err != nil {
		return err
	}
	f.setError("", "") // the link is back: no longer the reason to wait
	f.drawHold()
	return nil
}

// untilUp returns once the link is up, answering replay requests meanwhile.
func (f *Forwarder) untilUp(ctx context.Context) error {
	var poll <-chan time.Time
	if f.o.link == nil {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		poll = t.C
	}
	for !f.linkUp() {
		var up <-chan struct{}
		if f.o.link != nil {
			up = f.o.link.Up()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case rr := <-f.ctl:
			rr.reply <- f.replay(&rr)
		case <-up:
		case <-poll:
		}
	}
	return nil
}

// drawHold draws the random part of the drain ramp, uniform in [0, jitter],
// and holds every lane but the first until it has passed; the stall clock
// starts at its end.
func (f *Forwarder) drawHold() {
	if f.o.jitter <= 0 || f.o.link != nil && f.o.link.WANRestored() {
		return
	}
	d := time.Duration(f.o.rnd(int64(f.o.jitter) + 1))
	f.log.Debug("forwarder: link is back; alerts go now, the rest after a random delay so a fleet back from an outage does not drain at once", "delay", d)
	f.mu.Lock()
	f.hold = time.Now().Add(d)
	f.progress(f.hold)
	f.mu.Unlock()
}

// linkUp is the cheap signal: is a leaf connection established right now?
func (f *Forwarder) linkUp() bool {
	if f.o.link != nil {
		return f.o.link.Connected()
	}
	return f.o.leaf == nil || f.o.leaf.NumLeafNodes() > 0
}

// hubInterest reports whether the hub announced interest in subject over
// the leaf: a hub stream capturing it exists, so "no responders" means the
// leaf user may not publish there.
func (f *Forwarder) hubInterest(subject string) bool {
	return HubInterest(f.o.leaf, subject)
}

// noStreamConfirm is how long the hub must stay connected without
// interest in the site's subjects before "no responders" reads as a
// missing hub stream. A hub that shuts down stops its JetStream first,
// which withdraws the stream's interest over the still open leaf
// connection, and closes the connection only after that.
const noStreamConfirm = 3 * time.Second

// hubStillSilent reports whether the leaf connection stays up for
// noStreamConfirm without the hub announcing interest in subject: the hub
// is there and has no stream for it. False as soon as the link drops or
// the interest returns (a hub restarting, not a missing stream).
func (f *Forwarder) hubStillSilent(ctx context.Context, subject string) bool {
	deadline := time.NewTimer(noStreamConfirm)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if !f.linkUp() || f.hubInterest(subject) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return f.linkUp() && !f.hubInterest(subject)
		case <-tick.C:
		}
	}
}

func (f *Forwarder) setError(class ReasonClass, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.ReasonClass, f.status.LastError = class, reason
}

func (f *Forwarder) ackedCount() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acked
}

// watch samples the ack rate and resets a stalled forwarder: link up,
// backlog waiting, no hub ack for stall_timeout of connected time. The
// stall clock restarts at every ack, when the forwarder stops waiting for
// the link, and when a look finds a connection other than the previous
// look's: an outage the forwarder slept through in a backoff, or one
// shorter than a tick, does not count either. While the link is down or
// the forwarder waits for it, nothing is checked. A second stall with no
// ack since the first bounces the leaf connection too.
func (f *Forwarder) watch(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var seen any // the connection at the previous look
	stalled, ackedAtStall := false, uint64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		conn := f.connection()
		f.mu.Lock()
		f.rate = append(f.rate, float64(f.acked))
		if len(f.rate) > 11 {
			f.rate = f.rate[1:]
		}
		if conn != nil && conn != seen {
			f.progress(time.Now())
		}
		seen = conn
		idle := time.Since(f.lastProgress)
		// A missing stream or permission is not cured by a reset: the
		// status says what to fix instead.
		known := f.status.ReasonClass == ReasonHubStream || f.status.ReasonClass == ReasonPermission
		skip := idle < f.cfg.StallTimeout || conn == nil || f.waiting || known
		f.mu.Unlock()
		if skip {
			continue
		}
		bl, err := f.Backlog(ctx)
		if err != nil || sum(bl) == 0 {
			continue
		}
		f.mu.Lock()
		f.status.Stalls++
		f.progress(time.Now())
		cur := f.cur
		bounce := stalled && f.acked == ackedAtStall
		stalled, ackedAtStall = true, f.acked
		f.mu.Unlock()
		f.log.Warn("forwarder: stalled (link up, backlog waiting, no hub ack); restarting it", "stall_timeout", f.cfg.StallTimeout, "backlog", sum(bl), "bounce_link", bounce)
		if cur != nil {
			cur.fail(errors.New("stalled: no hub ack for " + f.cfg.StallTimeout.String()))
		}
		if bounce && f.o.link != nil {
			f.o.link.Bounce()
		}
	}
}

// connection identifies the leaf connection in use, nil while the link is
// down: the link manager's Up channel, which it replaces at each drop, or
// the newest leaf connection's id (ids only grow).
func (f *Forwarder) connection() any {
	switch {
	case f.o.link != nil:
		if !f.o.link.Connected() {
			return nil
		}
		return f.o.link.Up()
	case f.o.leaf != nil:
		lz, err := f.o.leaf.Leafz(nil)
		if err != nil || len(lz.Leafs) == 0 {
			return nil
		}
		var id uint64
		for _, l := range lz.Leafs {
			id = max(id, l.ID)
		}
		return id
	}
	return true // no link signal: always up, as linkUp says
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// classify turns a session error into the status reason a technician reads.
// A reason is given only as observed: "no responders" means no hub stream
// only while the hub, connected, keeps saying so (hubStillSilent).
func classify(ctx context.Context, err error, f *Forwarder) (class ReasonClass, reason string) {
	var ae *ackError
	switch {
	case errors.Is(err, errNoResponders) && !f.linkUp():
		return ReasonOther, errLinkDown.Error()
	case errors.Is(err, errNoResponders) && f.hubInterest(f.HubSubject("telemetry.x")):
		return ReasonPermission, fmt.Sprintf("the hub has a stream for %s but this site's leaf user may not publish there: allow publish to %s.%s.> for it in the hub config (docs/UPLINK.md: Hub side)", f.HubSubject("telemetry.>"), f.prefix, f.site)
	case errors.Is(err, errNoResponders) && !f.hubStillSilent(ctx, f.HubSubject("telemetry.x")):
		if !f.linkUp() {
			return ReasonOther, errLinkDown.Error()
		}
		return ReasonOther, fmt.Sprintf("the hub stopped answering for %s for a moment (a hub restarting?); resending from the cursor", f.HubSubject("telemetry.>"))
	case errors.Is(err, errNoResponders):
		return ReasonHubStream, NoHubStreamReason(f.HubSubject("telemetry.>"))
	case errors.As(err, &ae) && ae.busy():
		return ReasonHubBusy, "the hub stream is overloaded (" + ae.Error() + "): resending from the cursor with half the window; nothing is lost. If it persists, the hub's JetStream ingest (CPU, disk) is the bottleneck"
	case errors.As(err, &ae):
		return ReasonHubStream, "hub stream refused a message: " + ae.Error()
	}
	return ReasonOther, err.Error()
}

var (
	errNoResponders = errors.New("no responders: nothing at the hub captures the subject")
	errAckTimeout   = errors.New("hub ack timed out")
	errLinkDown     = errors.New("leaf connection to the hub is down; readings wait in the local buffer")
)

// ackError is the hub stream's refusal of a publish.
type ackError struct {
	Code    int    `json:"code"`
	ErrCode int    `json:"err_code"`
	Desc    string `json:"description"`
}

func (e *ackError) Error() string {
	return fmt.Sprintf("%s (code %d, err_code %d)", e.Desc, e.Code, e.ErrCode)
}

// busy is the hub stream's "too many requests": its ingest queue is full.
func (e *ackError) busy() bool { return e.Code == 429 }

// permanent errors cannot succeed on resend: the forwarder skips the message
// rather than stalling behind it forever.
func (e *ackError) permanent() bool {
	const errMsgTooLarge = 10054 // JSStreamMessageExceedsMaximumErr
	return e.ErrCode == errMsgTooLarge
}

// fillHubHeaders builds the forwarded message's headers into h, for the
// message at seq stored at ts: the local app's own headers travel along,
// except the Nats-* ones, which would tell the hub stream to de-duplicate
// or check sequences by the local app's rules. The six values of its own
// go in v; buf is scratch space, returned for the next call, and tf
// formats the time. A session reuses h, v, buf and tf for every reading,
// as the client has encoded them by the time PublishMsg returns. This runs
// once per reading: the id and the time share one string, and a reading
// without headers of its own leaves h as the previous one left it, since
// its six slices are views of v.
func (f *Forwarder) fillHubHeaders(h nats.Header, v *[6]string, buf []byte, tf *rfc3339Nano, m jetstream.Msg, seq uint64, ts time.Time, stream string) (nats.Header, []byte) {
	buf = f.appendMsgID(buf[:0], stream, seq)
	idLen := len(buf)
	buf = tf.append(buf, ts)
	both := string(buf)
	id := both[:idLen]
	*v = [6]string{id, m.Subject(), both[idLen:], f.site, stream, id[strings.LastIndexByte(id, '.')+1:]}
	app := m.Headers()
	if len(app) == 0 && len(h) == 6 {
		// Only the six are in h (they are set last, over any app header
		// of the same name), each a view of v.
		return h, buf
	}
	clear(h)
	for k, vs := range app {
		if len(k) < 5 || !strings.EqualFold(k[:5], "nats-") {
			h[k] = vs
		}
	}
	// The keys are canonical already: assigning skips Set's canonicalizing.
	h[nats.MsgIdHdr] = v[0:1:1]
	h[HdrSubject] = v[1:2:2]
	h[HdrTime] = v[2:3:3]
	h[HdrSite] = v[3:4:4]
	h[HdrStream] = v[4:5:5]
	h[HdrSeq] = v[5:6:6]
	return h, buf
}

// rfc3339Nano formats times in UTC as time.RFC3339Nano does. A backlog's
// readings come in time order, many to a second: the date and the clock
// are formatted once per second, the fraction by hand.
type rfc3339Nano struct {
	sec    int64
	prefix []byte // the time of sec up to its seconds; nil: none yet
}

// append appends ts, in UTC, to b.
func (c *rfc3339Nano) append(b []byte, ts time.Time) []byte {
	ts = ts.UTC()
	if sec := ts.Unix(); c.prefix == nil || sec != c.sec {
		c.sec, c.prefix = sec, ts.AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
	}
	b = append(b, c.prefix...)
	if ns := ts.Nanosecond(); ns != 0 {
		// .999999999: nine digits, trailing zeros dropped.
		var d [10]byte
		d[0] = '.'
		for i := 9; i > 0; i-- {
			d[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := len(d)
		for d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return append(b, 'Z')
}

// msgSize is what the hub counts against max_payload: headers and data.
func msgSize(m *nats.Msg) int {
	n := len(m.Data)
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n + len("NATS/1.0\r\n\r\n")
}
