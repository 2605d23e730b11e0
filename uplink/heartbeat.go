package uplink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/uplink/wire"
)

// HeartbeatOptions are the heartbeat's dependencies; the agent supplies
// them because uplink cannot import agent.
type HeartbeatOptions struct {
	Conn     *nats.Conn // the agent's connection to the leaf server
	Prefix   string
	Site     string
	Server   string
	Instance string
	Interval time.Duration
	// Build returns the status-derived fields; identity, time and the
	// duplicate flag are filled in by the heartbeat itself.
	Build func(ctx context.Context) wire.Heartbeat
	// LinkConn identifies the current leaf connection to the hub (0: down).
	// Polled every second, so it must be cheap; a new id is a new connect,
	// even when the link came back between two polls.
	LinkConn func() uint64
	// LinkReason is the link manager's reason class for the last drop,
	// polled like LinkConn; nil when no link manager runs.
	LinkReason func() ReasonClass
	// HubListening reports that the hub's interest in subject has arrived
	// over the leaf: a heartbeat published before that is dropped locally.
	HubListening func(subject string) bool
	// Now is the wall clock the site stamps readings with (default
	// time.Now); heartbeats carry it so the hub's clock can be compared.
	Now func() time.Time
	Log *slog.Logger
}

// Twin is another device heard publishing as this site.
type Twin struct {
	Server, Instance string
	Heard            time.Time
	interval         time.Duration
}

// Heartbeater publishes heartbeats and listens on its own subject for a twin.
type Heartbeater struct {
	o       HeartbeatOptions
	subject string
	kick    chan struct{}

	mu   sync.Mutex
	twin Twin
	sent uint64
	// evicted is when the hub last dropped this leaf for a duplicate server
	// name: a clone with the same machine id, never connected at the same
	// time as us, so never heard on the status subject.
	evicted time.Time
	// sentWall and sentMono are the last heartbeat's send time, and clock
	// the offset measured when the hub echoed it (clock.go).
	sentWall, sentMono time.Time
	clock              ClockSample
}

// listenWait bounds how long a fresh connection waits for the hub's interest
// before publishing anyway: the next interval repeats it regardless.
const listenWait = 5 * time.Second

// NewHeartbeater checks the options; nothing runs until Run.
func NewHeartbeater(o HeartbeatOptions) (*Heartbeater, error) {
	if o.Conn == nil || o.Build == nil || o.LinkConn == nil || o.Site == "" || o.Instance == "" || o.Interval <= 0 {
		return nil, fmt.Errorf("heartbeat: connection, site, instance, interval, Build and LinkConn are required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Heartbeater{o: o, subject: wire.StatusSubject(o.Prefix, o.Site), kick: make(chan struct{}, 1)}, nil
}

// Kick publishes a heartbeat now (if connected) instead of at the next
// interval: for changes the hub should learn at once.
func (h *Heartbeater) Kick() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// Subject is where this site's heartbeats go.
func (h *Heartbeater) Subject() string { return h.subject }

// Sent counts heartbeats published this run.
func (h *Heartbeater) Sent() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent
}

// Twin returns the other device heard on this site's subject, or the hub's
// latest duplicate eviction (Twin.Server and Instance empty), if either
// happened within three heartbeat intervals.
func (h *Heartbeater) Twin() (Twin, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.twinCurrent(now) {
		return h.twin, true
	}
	if !h.evicted.IsZero() && now.Sub(h.evicted) <= 3*h.o.Interval {
		return Twin{Heard: h.evicted}, true
	}
	return Twin{}, false
}

func (h *Heartbeater) twinCurrent(now time.Time) bool {
	return h.twin.Instance != "" && now.Sub(h.twin.Heard) <= 3*max(h.twin.interval, h.o.Interval)
}

// noteReason makes a duplicate eviction sticky for three intervals: the
// link clears its reason on the next connect, which with a clone is within
// a second, before any heartbeat could carry it.
func (h *Heartbeater) noteReason(now time.Time) {
	if h.o.LinkReason == nil || h.o.LinkReason() != ReasonDuplicate {
		return
	}
	h.mu.Lock()
	first := h.evicted.IsZero() || now.Sub(h.evicted) > 3*h.o.Interval
	h.evicted = now
	h.mu.Unlock()
	if first {
		h.o.Log.Error("DUPLICATE SITE: the hub dropped this leaf for another one with the same server name; two devices share this site id and machine id (cloned SD card?)",
			"site", h.o.Site, "server", h.o.Server, "instance", h.o.Instance,
			"fix", "give each device its own `site` in agent.yaml and regenerate the machine id on the clone (rm /etc/machine-id && systemd-machine-id-setup), then restart")
	}
}

// Run publishes on every connect and every interval while connected, until
// ctx ends.
func (h *Heartbeater) Run(ctx context.Context) error {
	sub, err := h.o.Conn.Subscribe(h.subject, h.hear)
	if err != nil {
		return fmt.Errorf("heartbeat: subscribe %s: %w", h.subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	clockSub, err := h.o.Conn.Subscribe(wire.ClockSubject(h.o.Prefix, h.o.Site), h.hearClock)
	if err != nil {
		return fmt.Errorf("heartbeat: subscribe %s: %w", wire.ClockSubject(h.o.Prefix, h.o.Site), err)
	}
	defer func() { _ = clockSub.Unsubscribe() }()
	// A clone's connections last well under a second: poll often enough to
	// see them (both probes are a lock and a counter).
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var conn uint64
	var hadTwin bool
	var next time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-h.kick:
			// A new twin: tell the hub (and the twin) now, not in 30 s.
			next = time.Time{}
		}
		now := time.Now()
		h.noteReason(now)
		h.mu.Lock()
		twin, current := h.twin, h.twinCurrent(now)
		h.mu.Unlock()
		if hadTwin && !current {
			h.o.Log.Info("the other device using this site id is no longer heard", "site", h.o.Site, "other_server", twin.Server, "other_instance", twin.Instance)
		}
		hadTwin = current
		cur := h.o.LinkConn()
		if cur == 0 {
			conn = 0
			continue
		}
		if cur != conn {
			conn = cur
			h.waitHubListening(ctx)
			next = time.Time{}
		}
		if now.Before(next) {
			continue
		}
		if err := h.publish(ctx); err != nil {
			h.o.Log.Warn("heartbeat not sent", "subject", h.subject, "err", err)
		}
		next = now.Add(h.o.Interval)
	}
}

func (h *Heartbeater) waitHubListening(ctx context.Context) {
	if h.o.HubListening == nil {
		return
	}
	deadline := time.Now().Add(listenWait)
	for !h.o.HubListening(h.subject) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Beat returns the heartbeat as it would be published now.
func (h *Heartbeater) Beat(ctx context.Context) wire.Heartbeat {
	hb := h.o.Build(ctx)
	hb.Schema, hb.Site, hb.Server, hb.Instance = wire.HeartbeatSchema, h.o.Site, h.o.Server, h.o.Instance
	hb.Interval = int64(h.o.Interval / time.Second)
	if t, ok := h.Twin(); ok {
		hb.Dup = true
		if t.Instance != "" {
			hb.Twin = t.Server + "/" + t.Instance
		}
	}
	if hb.Reason == ReasonDuplicate {
		hb.Dup = true
	}
	return hb
}

func (h *Heartbeater) publish(ctx context.Context) error {
	hb := h.Beat(ctx)
	wall, mono := h.o.Now().Round(0), time.Now()
	hb.Sent = wall.UnixMilli()
	data, err := json.Marshal(hb)
	if err != nil {
		return fmt.Errorf("encode heartbeat: %w", err)
	}
	h.mu.Lock()
	h.sentWall, h.sentMono = time.UnixMilli(hb.Sent), mono
	h.mu.Unlock()
	if err := h.o.Conn.Publish(h.subject, data); err != nil {
		return fmt.Errorf("publish %s: %w", h.subject, err)
	}
	h.mu.Lock()
	h.sent++
	h.mu.Unlock()
	return nil
}

// hear is the twin detector: our own heartbeats come back on the local
// subscription; one with another instance id is a second device with this
// site id (a cloned SD card clones /etc/machine-id too, so the server name
// alone cannot tell).
func (h *Heartbeater) hear(m *nats.Msg) {
	var hb wire.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || hb.Instance == "" || hb.Instance == h.o.Instance {
		return
	}
	now := time.Now()
	h.mu.Lock()
	isNew := h.twin.Instance != hb.Instance || !h.twinCurrent(now)
	h.twin = Twin{Server: hb.Server, Instance: hb.Instance, Heard: now, interval: time.Duration(hb.Interval) * time.Second}
	h.mu.Unlock()
	if !isNew {
		return
	}
	h.o.Log.Error("DUPLICATE SITE: another device is publishing as this site; the hub cannot tell their data apart",
		"site", h.o.Site, "this_server", h.o.Server, "this_instance", h.o.Instance,
		"other_server", hb.Server, "other_instance", hb.Instance,
		"fix", "give each device its own `site` in agent.yaml; on a cloned SD card also regenerate the machine id (rm /etc/machine-id && systemd-machine-id-setup) and restart")
	select {
	case h.kick <- struct{}{}:
	default:
	}
}
