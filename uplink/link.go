package uplink

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EventSink records the link's history where `edge-agent status` can read
// it while the daemon is down: a History over buffer.State in the agent.
type EventSink interface {
	AddLinkEvent(LinkEvent)
}

// Link event kinds written to the EventSink.
const (
	EventConnect    EventKind = "connect"
	EventDisconnect EventKind = "disconnect"
	EventError      EventKind = "error"
)

const (
	// attemptTimeout bounds one dial + TLS + CONNECT before it counts as
	// failed; generous because a 200 ms satellite link needs several RTTs.
	attemptTimeout = 15 * time.Second
	// pollEvery refreshes RTT and catches a drop the log did not announce.
	pollEvery = time.Second
)

// Link manages the embedded server's leaf remote to the hub. The server
// keeps doing the protocol work; the link decides when it may dial: the
// remote reaches the hub only through the link's gate (gate.go), which
// holds the server's dials while the link waits out an exponential backoff
// with full jitter, then lets exactly one attempt through. nats-server's
// own retry is a fixed interval plus up to one interval of jitter, which
// after a hub outage brings a whole fleet back within the same couple of
// seconds.
// While an attempt's dial failed at TCP it also watches the hub's address
// (waitAttempt): when the dial got no answer (the site's own WAN is down)
// it dials the moment the address answers again; when it was refused (the
// hub is down or restarting) it dials within a short random delay of the
// hub accepting again. The backoff only bounds how often a hub that keeps
// failing sees this site.
//
// State comes from the server itself (Leafz); the reason for a failure from
// the gate's own dial, the server's log lines (fed through ServerLog), and
// an active probe (DNS, TCP, TLS certificate) so status can say "TLS: hub
// certificate expired 3 days ago" instead of "connection closed".
type Link struct {
	srv    *server.Server
	cfg    *Config
	events EventSink
	log    *slog.Logger
	bo     backoff
	probe  func(ctx context.Context) (class ReasonClass, reason string)
	gate   *Gate

	lines  chan serverLine // link-related server log lines, newest last
	bounce chan struct{}   // Bounce requests

	mu        sync.Mutex
	st        LinkStatus
	up        chan struct{} // closed while connected
	lastEvent string        // last recorded error reason, to not flood state.db
	lastDial  string        // last dial error the server logged at error level
	restored  bool          // the restore watch ended the last wait (WANRestored)
	// hubWatch: after a refused dial, watch for the hub to accept again
	// (waitAttempt). Always on in the agent; BenchmarkHubRestart turns it
	// off to measure the backoff alone.
	hubWatch bool
}

// NewLink manages the remote built from cfg, which GateRemote routed
// through g before srv was created; the link takes g over. The gate stays
// closed until Run, so the link sees the first attempt.
func NewLink(srv *server.Server, g *Gate, cfg *Config, events EventSink, log *slog.Logger) *Link {
	l := &Link{
		srv: srv, gate: g, cfg: cfg, events: events, log: log,
		bo:       newBackoff(cfg.Reconnect),
		lines:    make(chan serverLine, 64),
		bounce:   make(chan struct{}, 1),
		up:       make(chan struct{}),
		hubWatch: true,
	}
	now := time.Now()
	l.st = LinkStatus{State: StateConnecting, Since: now, DownSince: now}
	l.probe = func(ctx context.Context) (ReasonClass, string) { return diagnose(ctx, cfg) }
	return l
}

// ServerReconnectInterval is the embedded server's fixed leaf retry: how
// soon after a drop or a refused CONNECT the server is back at the link's
// gate, which holds it there until the backoff opens. Short, so the quick
// first retry after a drop (uniform in [0, min]) is not held up by it.
func ServerReconnectInterval(c *Config) time.Duration {
	return max(min(c.Reconnect.Min/2, 100*time.Millisecond), 10*time.Millisecond)
}

// Status is the link as status shows it.
func (l *Link) Status() LinkStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.st
	st.SentBytes = l.SentUpstream()
	return st
}

// Connected reports whether the leaf connection to the hub is up.
func (l *Link) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.State == StateConnected
}

// Up returns a channel that is closed while the link is connected; after a
// drop, a call returns a new channel that closes on the next connect.
func (l *Link) Up() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up
}

// Bounce drops the leaf connection and dials again at once: the cure for a
// connection that is up but no longer carries anything (the forwarder's
// stall watchdog calls it).
func (l *Link) Bounce() {
	select {
	case l.bounce <- struct{}{}:
	default:
	}
}

// SetDegraded lets the forwarder report a hub-side problem that leaves the
// connection up but forwarding impossible (ReasonHubStream,
// ReasonPermission); it is cleared on the next connect.
//
// An empty class and reason clear such a reason once forwarding works again,
// so status does not keep blaming a hub stream that has since been created;
// a connection-level reason (DNS, TLS, ...) is left for the link to clear.
func (l *Link) SetDegraded(class ReasonClass, reason string) {
	l.mu.Lock()
	if class == "" && reason == "" {
		if l.st.ReasonClass == ReasonHubStream || l.st.ReasonClass == ReasonPermission {
			l.st.ReasonClass, l.st.Reason, l.st.Fix = "", "", ""
		}
		l.mu.Unlock()
		return
	}
	reason = l.explain(class, reason)
	l.st.ReasonClass, l.st.Reason, l.st.Fix = class, reason, FixFor(l.cfg, class, reason)
	l.mu.Unlock()
	l.record(EventError, reason)
}

// Run paces the remote until ctx ends. It never fails for a link problem:
// a broken uplink degrades the uplink only.
func (l *Link) Run(ctx context.Context) error {
	defer l.gate.Close()
	if err := l.open(ctx); err != nil {
		return nil
	}
	for {
		ok, class, reason, watch := l.awaitAttempt(ctx)
		if ctx.Err() != nil {
			return nil
		}
		bounced := false
		if ok {
			l.bo.connected()
			l.setConnected()
			class, reason, bounced = l.awaitDrop(ctx)
			if ctx.Err() != nil {
				return nil
			}
		}
		l.gate.shut()
		var wait time.Duration
		switch {
		case bounced:
			l.setDown(StateConnecting, ReasonOther, "bounced: dropped and redialed on request (forwarder stall watchdog)", ok)
		default:
			c, r := l.probe(ctx)
			if c != "" {
				class, reason = c, r
			}
			if !ok {
				l.bo.fail(reachable(c))
			}
			// After a drop failures is 0: a quick, jittered first retry.
			wait = l.bo.next()
			l.setDown(StateDisconnected, class, reason, ok)
		}
		l.mu.Lock()
		l.st.NextAttempt = time.Now().Add(wait)
		l.mu.Unlock()
		l.log.Debug("next attempt", "in", wait, "failures", l.bo.failures)
		// A dial that failed at TCP, or a drop: watch the hub's address.
		if ok && !bounced {
			watch = watchDropped
		}
		restored, err := l.waitAttempt(ctx, wait, watch)
		if err != nil {
			return nil
		}
		l.mu.Lock()
		l.restored = restored
		l.mu.Unlock()
		if err := l.open(ctx); err != nil {
			return nil
		}
	}
}

// restoreWatchEvery paces the watch's checks (jittered ±25 %).
const restoreWatchEvery = time.Second

// watchMode says what the last attempt (or drop) told about the hub's
// address, and so what waitAttempt watches for.
type watchMode int

const (
	watchNone       watchMode = iota
	watchUnanswered           // the dial got no answer: the path may be down
	watchRefused              // the dial was refused: the hub is down
	watchDropped              // the connection dropped: not known yet
)

// waitAttempt waits out the backoff before the next attempt, or less on a
// bounce. With a watch it checks with a bare TCP connect, at once and then
// about once a second, whether the hub's address answers:
//
//   - unanswered: the path to the hub was down, most likely the site's
//     own WAN (a modem lost its uplink, DNS failed); an answer ends the
//     wait at once (restored). Without this the exponential backoff,
//     which after a long outage waits up to reconnect.max, would keep the
//     backlog waiting up to that long after the WAN returns.
//   - refused: the path works and the hub itself is down or restarting;
//     an answer ends the wait after a random delay (spreadDelay), so a
//     fleet that checks about once a second does not dial in one instant,
//     and the hub's return costs each site about a second, not the rest
//     of a backoff that has grown towards reconnect.max.
//   - dropped: the first check decides: no answer or a refusal watches as
//     above, an answer leaves the backoff's quick retry to it.
//
// A name the resolver says does not exist is a config error: no watch.
// The checks end with the wait, when the backoff's attempt is due.
func (l *Link) waitAttempt(ctx context.Context, wait time.Duration, mode watchMode) (restored bool, err error) {
	due := time.Now().Add(wait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var (
		next, spread <-chan time.Time
		checked      chan hubAnswer
	)
	check := func() {
		checked = make(chan hubAnswer, 1)
		go func(c chan<- hubAnswer) { c <- dialHub(ctx, l.cfg, restoreWatchEvery) }(checked)
	}
	if mode == watchRefused && !l.hubWatch {
		mode = watchNone
	}
	if mode != watchNone {
		check()
	}
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timer.C:
			return false, nil
		case <-l.bounce:
			return false, nil
		case <-spread:
			return false, nil
		case <-next:
			next = nil
			check()
		case a := <-checked:
			checked = nil
			switch {
			case a.answered && mode == watchUnanswered:
				l.log.Info("hub reachable again; dialing now", "backoff_left", time.Until(due).Round(time.Millisecond))
				return true, nil
			case a.answered && mode == watchRefused:
				d := l.spreadDelay()
				l.log.Info("hub accepting connections again; dialing after a random delay", "delay", d.Round(time.Millisecond), "backoff_left", time.Until(due).Round(time.Millisecond))
				spread = time.After(d)
				continue // no more checks
			case a.answered:
				continue // dropped, yet the hub answers: the backoff's quick retry
			case a.refused && !l.hubWatch:
				continue // the backoff alone paces the hub's return
			case a.refused:
				mode = watchRefused
			case mode == watchDropped:
				mode = watchUnanswered
			}
			next = time.After(l.watchDelay())
		}
	}
}

// spreadDelay is the random delay between a refusing hub accepting again
// and this site's dial: uniform in [0, restoreWatchEvery], at most
// reconnect.min.
func (l *Link) spreadDelay() time.Duration {
	return time.Duration(l.bo.rnd(int64(min(restoreWatchEvery, l.cfg.Reconnect.Min)) + 1))
}

// watchDelay is restoreWatchEvery ±25 %, so sites that lost the same
// network do not check in step.
func (l *Link) watchDelay() time.Duration {
	return restoreWatchEvery*3/4 + time.Duration(l.bo.rnd(int64(restoreWatchEvery/2)+1))
}

// WANRestored says the current connection came back through the restore
// watch: the path to the hub was down while the hub stayed up, so this
// site's return is its own, not one of a whole fleet after a hub outage.
func (l *Link) WANRestored() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.restored && l.st.State == StateConnected
}

// SentUpstream is the bytes this site has sent towards the hub since the
// link started, as they left for the WAN: compressed, encrypted, framed.
func (l *Link) SentUpstream() int64 { return l.gate.up.Load() }

// reachable reads the probe that follows a failed attempt: only a DNS or
// TCP failure means the hub's address did not answer; anything else (or
// nothing) means the hub is there and the attempt failed at it.
func reachable(probeClass ReasonClass) bool {
	return probeClass != ReasonDNS && probeClass != ReasonTCP
}

// open starts one attempt, once the server has let go of the previous
// connection: until then Leafz would show it as this attempt's success.
func (l *Link) open(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for l.connected() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	l.drainLines()
	l.gate.open()
	l.mu.Lock()
	l.st.NextAttempt = time.Time{}
	if l.st.State != StateConnected {
		l.st.State = StateConnecting
	}
	l.mu.Unlock()
	return nil
}

func (l *Link) drainLines() {
	for {
		select {
		case <-l.lines:
		default:
			return
		}
	}
}

// awaitAttempt waits for the attempt in progress to connect or fail;
// watch says how its TCP dial failed, if it did (see waitAttempt).
func (l *Link) awaitAttempt(ctx context.Context) (ok bool, class ReasonClass, reason string, watch watchMode) {
	deadline := time.NewTimer(attemptTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if l.connected() {
			return true, "", "", watchNone
		}
		select {
		case <-ctx.Done():
			return false, "", "", watchNone
		case f := <-l.gate.failed:
			return false, f.class, f.reason, f.watch()
		case line := <-l.lines:
			c, r := line.class, line.reason
			if c == ReasonPermission { // a permission error does not end the attempt
				continue
			}
			// The connection may still be registered for a moment after
			// its error; the attempt failed either way.
			return false, c, r, watchNone
		case <-deadline.C:
			return false, ReasonOther, fmt.Sprintf("no connection within %s", attemptTimeout), watchNone
		case <-tick.C:
		}
	}
}

// awaitDrop watches an established connection until it drops or a bounce
// is asked for; it refreshes RTT meanwhile. A leaf log line makes it look
// again soon, because the server announces a drop before it unregisters
// the connection.
func (l *Link) awaitDrop(ctx context.Context) (class ReasonClass, reason string, bounced bool) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var soon <-chan time.Time
	var lineAt time.Time
	for {
		select {
		case <-ctx.Done():
			return "", "", false
		case <-l.bounce:
			return "", "", true
		case line := <-l.lines:
			c, r := line.class, line.reason
			if c == ReasonPermission {
				l.SetDegraded(c, r)
				continue
			}
			// The first specific line explains the drop better than the
			// generic "connection closed" that follows it.
			if reason == "" || class == ReasonOther {
				class, reason = c, r
			}
			lineAt = time.Now()
			soon = time.After(20 * time.Millisecond)
			continue
		case <-soon:
			soon = time.After(20 * time.Millisecond)
		case <-tick.C:
			soon = nil
		}
		if !l.connected() {
			if reason == "" {
				class, reason = ReasonOther, "connection closed"
			}
			return class, reason, false
		}
		if time.Since(lineAt) > 2*time.Second {
			class, reason = "", "" // lines that did not end the connection
		}
	}
}

// connected asks the server for our solicited leaf connection, the one
// whose peer is the gate, and refreshes hub address (the gate's side of
// the tunnel: Leafz only knows the gate) and RTT from it.
func (l *Link) connected() bool {
	lz, err := l.srv.Leafz(&server.LeafzOptions{})
	if err != nil {
		return false
	}
	gateAddr := l.gate.ln.Addr().String()
	for _, li := range lz.Leafs {
		if !li.IsSpoke || net.JoinHostPort(li.IP, strconv.Itoa(li.Port)) != gateAddr {
			continue
		}
		rtt, _ := time.ParseDuration(li.RTT)
		hub := l.gate.hub()
		l.mu.Lock()
		if hub != "" {
			l.st.Hub = hub
		}
		l.st.RTT, l.st.Compression = rtt, li.Compression
		l.mu.Unlock()
		return true
	}
	return false
}

func (l *Link) setConnected() {
	now := time.Now()
	l.mu.Lock()
	if !l.st.LastUp.IsZero() {
		l.st.LastOutage = now.Sub(l.st.DownSince)
	}
	l.st.State, l.st.Since, l.st.LastConnected = StateConnected, now, now
	l.st.DownSince, l.st.LastUp, l.st.Attempts = time.Time{}, time.Time{}, 0
	l.st.ReasonClass, l.st.Reason, l.st.Fix, l.st.NextAttempt = "", "", "", time.Time{}
	hub := l.st.Hub
	close(l.up)
	l.lastEvent, l.lastDial = "", ""
	l.mu.Unlock()
	l.log.Info("connected to hub", "hub", hub)
	l.record(EventConnect, hub)
}

// setDown enters state with a reason; wasUp says the connection was up
// and has just dropped, otherwise an attempt failed. The outage's times
// start at the drop only: a failed attempt counts, it does not restart them.
func (l *Link) setDown(state LinkState, class ReasonClass, reason string, wasUp bool) {
	now := time.Now()
	l.mu.Lock()
	if wasUp {
		l.up = make(chan struct{})
		l.st.Reconnects++
		l.st.RTT, l.st.Compression = 0, ""
		l.st.Since, l.st.DownSince, l.st.LastUp = now, now, now
		l.st.Attempts, l.st.LastOutage = 0, 0
	} else {
		l.st.Attempts++
	}
	reason = l.explain(class, reason)
	l.st.State, l.st.ReasonClass, l.st.Reason, l.st.Fix = state, class, reason, FixFor(l.cfg, class, reason)
	l.mu.Unlock()
	if wasUp {
		l.log.Warn("disconnected from hub", "class", class, "reason", reason)
		l.record(EventDisconnect, reason)
		return
	}
	l.record(EventError, reason)
}

// record writes an event; an error identical to the previous one is
// skipped, so a long outage does not wear the SD card with one entry per
// attempt.
func (l *Link) record(kind EventKind, reason string) {
	if kind == EventError {
		l.mu.Lock()
		repeat := reason == l.lastEvent
		l.lastEvent = reason
		l.mu.Unlock()
		if repeat {
			return
		}
		l.log.Warn("cannot connect to hub", "reason", reason)
	}
	if l.events != nil {
		l.events.AddLinkEvent(LinkEvent{Time: time.Now(), Kind: kind, Reason: reason})
	}
}
