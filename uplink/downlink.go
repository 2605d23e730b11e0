package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StatusFunc builds the agent's status document for `agent.status`.
type StatusFunc func(ctx context.Context) any

// Downlink answers hub operators on <prefix>.<site>.agent.<cmd> and hands
// hub commands on <prefix>.<site>.cmd.> to local apps as cmd.>.
type Downlink struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	fwd    *Forwarder
	status StatusFunc
	site   string
	base   string // <prefix>.<site>
	log    *slog.Logger
	// replayGate, when set, holds replays until it is closed (HoldReplays).
	replayGate <-chan struct{}
}

// HoldReplays makes replay requests wait until open is closed: a replay
// plans from the cursors, which the agent's start check may still move.
// Status, pings and commands to local apps are answered meanwhile.
func (d *Downlink) HoldReplays(open <-chan struct{}) { d.replayGate = open }

// NewDownlink serves the downlink subjects on the agent's in-process
// connection; the leaf carries their interest to the hub.
func NewDownlink(fwd *Forwarder, status StatusFunc, log *slog.Logger) (*Downlink, error) {
	js, err := jetstream.New(fwd.nc)
	if err != nil {
		return nil, fmt.Errorf("downlink: %w", err)
	}
	return &Downlink{nc: fwd.nc, js: js, fwd: fwd, status: status, site: fwd.site, base: fwd.prefix + "." + fwd.site, log: log}, nil
}

// AgentSubject is where hub operators send a request for cmd.
func (d *Downlink) AgentSubject(cmd string) string { return d.base + ".agent." + cmd }

// ReplayRequest asks for readings again, from a sequence or a time. Without
// a stream every forwarded stream is replayed.
type ReplayRequest struct {
	Stream   string    `json:"stream,omitempty"`
	FromSeq  uint64    `json:"from_seq,omitempty"`
	FromTime time.Time `json:"from_time,omitzero"`
}

// ReplayPlan says what a replay will resend, per stream: FromSeq..LastSeq,
// never past what was already forwarded (what comes after goes anyway).
type ReplayPlan struct {
	Stream   string `json:"stream"`
	FromSeq  uint64 `json:"from_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Messages uint64 `json:"messages"`
}

// replyError is every downlink error reply: the requester sees why.
type replyError struct {
	Error string `json:"error"`
}

// Run serves until ctx ends.
func (d *Downlink) Run(ctx context.Context) error {
	handlers := map[string]nats.MsgHandler{
		d.AgentSubject("status"): func(m *nats.Msg) {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			d.respond(m, d.status(rctx))
		},
		d.AgentSubject("ping"): func(m *nats.Msg) {
			d.respond(m, map[string]any{"site": d.site, "time": time.Now().UTC()})
		},
		d.AgentSubject("replay"): func(m *nats.Msg) { d.replay(ctx, m) },
		d.base + ".cmd.>":        d.command,
	}
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	for subj, h := range handlers {
		s, err := d.nc.Subscribe(subj, h)
		if err != nil {
			return fmt.Errorf("downlink: subscribe %s: %w", subj, err)
		}
		subs = append(subs, s)
	}
	<-ctx.Done()
	return nil
}

func (d *Downlink) respond(m *nats.Msg, v any) {
	if m.Reply == "" {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(replyError{Error: err.Error()})
	}
	if err := m.Respond(b); err != nil {
		d.log.Warn("reply failed", "subject", m.Subject, "err", err)
	}
}

// command republishes a hub command for local apps: the hub's
// <prefix>.<site>.cmd.x becomes cmd.x, with its headers and reply subject,
// so a local app can answer the hub directly. cmd.> is not subscribed here,
// so a republished command never comes back around.
func (d *Downlink) command(m *nats.Msg) {
	local := strings.TrimPrefix(m.Subject, d.base+".")
	out := &nats.Msg{Subject: local, Reply: m.Reply, Header: m.Header, Data: m.Data}
	if err := d.nc.PublishMsg(out); err != nil {
		d.log.Warn("command not delivered locally", "subject", local, "err", err)
	}
}

func (d *Downlink) replay(ctx context.Context, m *nats.Msg) {
	var req ReplayRequest
	if err := json.Unmarshal(m.Data, &req); err != nil || (req.FromSeq == 0 && req.FromTime.IsZero()) {
		d.respond(m, replyError{Error: `want {"stream":"TELEMETRY","from_seq":N} or {"from_time":"2026-01-02T15:04:05Z"} (stream optional: all streams)`})
		return
	}
	streams := d.fwd.o.streams
	if req.Stream != "" {
		streams = []string{req.Stream}
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if d.replayGate != nil {
		select {
		case <-d.replayGate:
		case <-rctx.Done():
			d.respond(m, replyError{Error: "the site is starting: replays wait for its check of the local streams, which is not done yet; send the request again"})
			return
		}
	}
	var plans []ReplayPlan
	var outside []string
	for _, name := range streams {
		p, err := d.plan(rctx, name, req)
		var o *outsideError
		if errors.As(err, &o) && req.Stream == "" {
			// All streams: one that holds nothing of the range is left out.
			outside, p, err = append(outside, o.Error()), ReplayPlan{Stream: name}, nil
		}
		if err != nil {
			d.respond(m, replyError{Error: err.Error()})
			return
		}
		plans = append(plans, p)
	}
	if len(outside) == len(streams) {
		d.respond(m, replyError{Error: strings.Join(outside, "; ")})
		return
	}
	for _, p := range plans {
		if p.Messages == 0 {
			continue
		}
		if err := d.fwd.Replay(rctx, p.Stream, p.FromSeq); err != nil {
			d.respond(m, replyError{Error: err.Error()})
			return
		}
	}
	d.log.Info("replay requested by the hub", "plans", plans)
	d.respond(m, plans)
}

// outsideError refuses a replay whose start lies past everything the
// stream holds, and says what it holds.
type outsideError struct {
	stream string
	req    ReplayRequest
	st     jetstream.StreamState
}

func (e *outsideError) Error() string {
	from := fmt.Sprintf("from_seq %d", e.req.FromSeq)
	if !e.req.FromTime.IsZero() {
		from = "from_time " + e.req.FromTime.UTC().Format(time.RFC3339Nano)
	}
	if e.st.Msgs == 0 {
		return fmt.Sprintf("replay %s %s: the stream holds no readings (next seq %d): nothing to replay", e.stream, from, e.st.LastSeq+1)
	}
	return fmt.Sprintf("replay %s %s: outside the store, which holds seq %d..%d stored %s..%s: nothing replayed", e.stream, from,
		e.st.FirstSeq, e.st.LastSeq, e.st.FirstTime.UTC().Format(time.RFC3339), e.st.LastTime.UTC().Format(time.RFC3339))
}

// plan turns a request into the range to resend: from the first stored
// message at or after the request (never before the first stored one:
// that would count evictions again) to the cursor. A start past the last
// stored message is refused (outsideError).
func (d *Downlink) plan(ctx context.Context, name string, req ReplayRequest) (ReplayPlan, error) {
	s, err := d.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return ReplayPlan{}, fmt.Errorf("replay: unknown stream %q (forwarded streams: %v)", name, d.fwd.o.streams)
	}
	if err != nil {
		return ReplayPlan{}, fmt.Errorf("replay %s: %w", name, err)
	}
	st := s.CachedInfo().State
	if st.Msgs == 0 || req.FromSeq > st.LastSeq || req.FromTime.After(st.LastTime) {
		return ReplayPlan{}, &outsideError{stream: name, req: req, st: st}
	}
	from := req.FromSeq
	if !req.FromTime.IsZero() {
		if from, err = firstSeqSince(ctx, s, req.FromTime, st.LastSeq); err != nil {
			return ReplayPlan{}, fmt.Errorf("replay %s from %s: %w", name, req.FromTime, err)
		}
	}
	from = max(from, st.FirstSeq, 1)
	to := min(d.fwd.st.Cursor(name), st.LastSeq)
	p := ReplayPlan{Stream: name, FromSeq: from, LastSeq: to}
	if to >= from {
		p.Messages = to - from + 1
	}
	return p, nil
}

// firstSeqSince is the sequence of the first message stored at or after t,
// or last+1 when there is none.
func firstSeqSince(ctx context.Context, s jetstream.Stream, t time.Time, last uint64) (uint64, error) {
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t, InactiveThreshold: 10 * time.Second})
	if err != nil {
		return 0, err
	}
	m, err := c.Next(jetstream.FetchMaxWait(time.Second))
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return last + 1, nil
	}
	if err != nil {
		return 0, err
	}
	meta, err := m.Metadata()
	if err != nil {
		return 0, err
	}
	return meta.Sequence.Stream, nil
}
