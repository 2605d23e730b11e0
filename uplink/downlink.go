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
}

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

// ReplayPlan says what a replay will resend, per stream.
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
		d.log.Warn("downlink: reply failed", "subject", m.Subject, "err", err)
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
		d.log.Warn("downlink: command not delivered locally", "subject", local, "err", err)
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
	var plans []ReplayPlan
	for _, name := range streams {
		p, err := d.plan(rctx, name, req)
		if err == nil {
			err = d.fwd.Replay(rctx, name, p.FromSeq-1)
		}
		if err != nil {
			d.respond(m, replyError{Error: err.Error()})
			return
		}
		plans = append(plans, p)
	}
	d.log.Info("downlink: replay requested by the hub", "plans", plans)
	d.respond(m, plans)
}

// plan turns a request into the first sequence to resend: never before the
// first stored message (that would count evictions again) and never past
// the cursor (that would skip readings the hub never had).
func (d *Downlink) plan(ctx context.Context, name string, req ReplayRequest) (ReplayPlan, error) {
	s, err := d.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return ReplayPlan{}, fmt.Errorf("replay: unknown stream %q (forwarded streams: %v)", name, d.fwd.o.streams)
	}
	if err != nil {
		return ReplayPlan{}, fmt.Errorf("replay %s: %w", name, err)
	}
	st := s.CachedInfo().State
	from := req.FromSeq
	if !req.FromTime.IsZero() {
		if from, err = firstSeqSince(ctx, s, req.FromTime, st.LastSeq); err != nil {
			return ReplayPlan{}, fmt.Errorf("replay %s from %s: %w", name, req.FromTime, err)
		}
	}
	from = max(from, st.FirstSeq, 1)
	from = min(from, d.fwd.st.Cursor(name)+1)
	p := ReplayPlan{Stream: name, FromSeq: from, LastSeq: st.LastSeq}
	if st.LastSeq >= from {
		p.Messages = st.LastSeq - from + 1
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
