package uplink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Publishing modes of the forwarder, as status shows them.
const (
	// ModeBatch is nats-server's fast batch publishing (2.14+, a hub
	// stream with allow_batched): the hub acknowledges every N readings
	// (a flow ack) instead of each one.
	ModeBatch = "batched"
	// ModePerMessage is one hub ack per reading: hubs older than 2.14, a
	// stream without allow_batched, or a stream at its limit of open
	// batches.
	ModePerMessage = "per-message"
)

// Fast batch publishing, as nats-server (jetstream_batching.go) defines
// it: each message's reply subject says which batch it belongs to, its
// place in it and what it does, <inbox>.<batch>.<flow>.<gap>.<seq>.<op>.$FI.
// The stream answers on the reply subject of the message that triggered
// the answer: a flow ack ({"type":"ack","seq":N,"msgs":M}: batch messages
// 1..N are stored, the next ack comes M messages later), a gap or error
// notice, and a PubAck carrying "batch" and "count" once a commit ended
// the batch. With gap "fail" a batch ends at the first missing or refused
// message, so a flow ack always covers a contiguous prefix: the cursor can
// move on it.
const (
	batchOpStart  = 0
	batchOpAppend = 1
	batchOpCommit = 2
	batchSuffix   = ".$FI"
	// maxBatchFlow is the most messages per flow ack a single batch on a
	// stream gets from nats-server; it divides this among the open
	// batches of the stream (500/n, at least 1).
	maxBatchFlow = 500
)

// nats-server error codes (err_code) that make the forwarder fall back to
// per-message acks, each before the stream stored the message.
const (
	errCodeBatchDisabled    = 10205 // JSBatchPublishDisabledErr: no allow_batched
	errCodeBatchTooInflight = 10211 // JSBatchPublishTooManyInflight: too many open batches
	errCodeBatchUnknown     = 10208 // JSBatchPublishUnknownBatchIDErr
)

// Re-probing after a fall back: a hub may be upgraded or `hub init` run,
// and a crowded stream frees its batches as drains end.
const (
	reprobeUnsupported = 10 * time.Minute
	reprobeCrowded     = time.Minute
)

// errModeChanged ends a session whose first batch the hub refused before
// storing any of it; the next one starts at once from the cursor, per
// message.
var errModeChanged = errors.New("publishing mode changed")

// errBatchLost ends a session whose batch the hub no longer knows.
var errBatchLost = errors.New("the hub no longer knows the batch in flight (it restarted, or ended the batch at a gap); resending from the cursor")

// fastBatch is one batch of a session: its messages are the entries with
// ids base, base+1, ... in sending order.
type fastBatch struct {
	id    string
	base  uint64 // entry id of batch sequence 1
	n     uint64 // messages sent in it
	acked uint64 // batch sequence the hub confirmed stored
	ended bool   // a commit was sent
}

// batchFlow is the ack interval the forwarder asks for: at most half the
// window, so a window full of messages always holds a flow ack's worth.
func (f *Forwarder) batchFlow() int { return max(1, min(maxBatchFlow, f.o.window/2)) }

// batchFirst decides the mode of a new session on leaf connection conn:
// batched unless a recent fall back on the same connection said the hub
// cannot take batches. Nothing is lost by trying: a hub that does not know
// fast batches stores and acks each message as a plain publish, and one
// whose stream refuses them stores nothing.
func (f *Forwarder) batchFirst(conn any) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status.Mode != ModePerMessage || time.Now().After(f.reprobe) || conn != f.fellBackOn
}

// setMode records what the hub's answer on session s showed; a fall back
// is retried after wait, or on another leaf connection (batchFirst).
func (s *session) setMode(mode string, wait time.Duration, why string) {
	f := s.f
	f.mu.Lock()
	changed := f.status.Mode != mode
	f.status.Mode = mode
	if mode == ModePerMessage {
		f.reprobe, f.fellBackOn = time.Now().Add(wait), s.conn
	}
	f.mu.Unlock()
	if changed {
		f.log.Info("forwarder: publishing mode", "mode", mode, "why", why)
	}
}

// batchReply is the reply subject of the next message of batch b: its
// sequence is b.n (already counted).
func (s *session) batchReply(b *fastBatch, op int) string {
	r := append(s.reply[:0], s.inbox...)
	r = append(r, '.')
	r = append(r, b.id...)
	r = append(r, '.')
	r = strconv.AppendInt(r, int64(s.f.batchFlow()), 10)
	r = append(r, ".fail."...)
	r = strconv.AppendUint(r, b.n, 10)
	r = append(r, '.')
	r = strconv.AppendInt(r, int64(op), 10)
	r = append(r, batchSuffix...)
	s.reply = r
	return string(r)
}

// batchReplyFor sets up entry e's place in the open batch (starting one if
// none is open) and returns its reply subject. last ends the batch with
// e: nothing else is waiting to be sent, and a commit makes the hub
// confirm the tail at once instead of after the next N messages.
func (s *session) batchReplyFor(e *entry, last bool) string {
	s.mu.Lock()
	b := s.open
	if b == nil {
		// The id is the stream's key for the batch, across every site:
		// the session inbox's unique token and a count.
		s.batchCount++
		b = &fastBatch{id: s.inbox[strings.LastIndexByte(s.inbox, '.')+1:] + strconv.FormatUint(s.batchCount, 36), base: e.id}
		s.open = b
		s.batches[b.id] = b
	}
	b.n++
	op := batchOpAppend
	if b.n == 1 {
		op = batchOpStart
	}
	if last {
		op, b.ended, s.open = batchOpCommit, true, nil
	}
	s.mu.Unlock()
	return s.batchReply(b, op)
}

// windowLimit is the bound on messages in flight: the congestion window,
// and in batch mode at least two flow acks' worth, since the hub answers
// only every flowMsgs messages. The caller holds s.mu.
func (s *session) windowLimit() int {
	n := s.cc.limit()
	if s.batch {
		n = max(n, min(2*s.flowMsgs, len(s.sent)))
	}
	return n
}

// moreQueued reports whether a message waits to be sent right after the
// current one (pick would find it): if not, the batch commits.
func (s *session) moreQueued() bool {
	for i, l := range s.lanes {
		if i > 0 && s.held.Load() {
			break
		}
		if l.pos < len(l.batch) {
			return true
		}
		l.qmu.Lock()
		n := len(l.queue)
		l.qmu.Unlock()
		if n > 0 {
			return true
		}
	}
	return false
}

// flowMsg is a batch flow notice ({"type":"ack"|"gap"|"err",...}).
type flowMsg struct {
	Type  string    `json:"type"`
	Seq   uint64    `json:"seq"`
	Msgs  int       `json:"msgs"`
	Error *ackError `json:"error"`
}

// parseFlowAck reads the frequent {"type":"ack","seq":N,"msgs":M} without
// reflection; anything else goes through encoding/json.
func parseFlow(data []byte) (flowMsg, bool) {
	if bytes.HasPrefix(data, []byte(`{"type":"ack","seq":`)) {
		rest := data[len(`{"type":"ack","seq":`):]
		i := bytes.IndexByte(rest, ',')
		if i > 0 && bytes.HasPrefix(rest[i:], []byte(`,"msgs":`)) {
			seq, err1 := strconv.ParseUint(string(rest[:i]), 10, 64)
			m := bytes.TrimSuffix(rest[i+len(`,"msgs":`):], []byte("}"))
			msgs, err2 := strconv.Atoi(string(m))
			if err1 == nil && err2 == nil {
				return flowMsg{Type: "ack", Seq: seq, Msgs: msgs}, true
			}
		}
	}
	var fm flowMsg
	if err := json.Unmarshal(data, &fm); err != nil || fm.Type == "" {
		return flowMsg{}, false
	}
	return fm, true
}

// onBatchReply handles the hub's answer to a message sent in a batch:
// subject is the reply subject past the inbox and its dot.
func (s *session) onBatchReply(subject string, data []byte, status string) {
	tok := strings.Split(strings.TrimSuffix(subject, batchSuffix), ".")
	if len(tok) != 5 {
		return
	}
	bseq, err := strconv.ParseUint(tok[3], 10, 64)
	if err != nil || bseq == 0 {
		return
	}
	s.mu.Lock()
	b := s.batches[tok[0]]
	s.mu.Unlock()
	if b == nil {
		return // a batch the hub's PubAck ended already
	}
	if len(data) == 0 && status == "503" {
		s.fail(errNoResponders)
		return
	}
	if len(data) > 0 && bytes.HasPrefix(data, []byte(`{"type":`)) {
		fm, ok := parseFlow(data)
		if !ok {
			s.fail(fmt.Errorf("hub reply to a batch is not a flow notice: %q", data))
			return
		}
		switch fm.Type {
		case "ack":
			s.setMode(ModeBatch, 0, "the hub stream takes fast batches")
			s.mu.Lock()
			s.flowMsgs = max(fm.Msgs, 1)
			s.mu.Unlock()
			s.ackBatch(b, fm.Seq, pubAck{})
		case "err":
			// The batch ends before this message; the PubAck that closes
			// it follows. A message the hub can never take is skipped.
			if fm.Error != nil && fm.Error.permanent() {
				s.rejectBatched(b, fm.Seq, fm.Error)
			}
		}
		// A gap notice needs nothing: the PubAck ending the batch follows.
		return
	}
	pa, ok := parseAck(data)
	if !ok {
		s.fail(fmt.Errorf("hub reply to a batch is not a stream ack: %q", data))
		return
	}
	switch {
	case pa.Error != nil && (pa.Error.ErrCode == errCodeBatchDisabled || pa.Error.ErrCode == errCodeBatchTooInflight):
		// Refused before it was stored: resend per message.
		wait, why := reprobeUnsupported, "the hub stream has no allow_batched (run `edge-agent hub init`)"
		if pa.Error.ErrCode == errCodeBatchTooInflight {
			wait, why = reprobeCrowded, "the hub stream has too many open batches (many sites draining)"
		}
		s.setMode(ModePerMessage, wait, why)
		if b.base == 0 {
			s.fail(errModeChanged) // the session's first batch: it stored nothing
		} else {
			s.fail(errBatchLost)
		}
	case pa.Batch == "" && pa.Error != nil && pa.Error.ErrCode == errCodeBatchUnknown:
		// The hub forgot the batch (it restarted, or ended the batch at a
		// gap and its PubAck is still on the way): resend from the cursor.
		s.fail(errBatchLost)
	case pa.Batch == "":
		// A hub that does not know fast batches (older than 2.14) took it
		// as a plain publish and acked it alone, as it does every message
		// sent so far: the session goes on per message. An error without
		// a batch is a refusal of this one message.
		if pa.Error == nil {
			s.setMode(ModePerMessage, reprobeUnsupported, "the hub's nats-server is older than 2.14")
			s.mu.Lock()
			s.batch = false
			s.mu.Unlock()
		}
		s.ackOne(b.base+bseq-1, pa, true, data, status)
	default:
		// A commit's PubAck: the batch ended with count messages stored.
		s.setMode(ModeBatch, 0, "the hub stream takes fast batches")
		s.ackBatch(b, pa.Count, pa)
		s.mu.Lock()
		delete(s.batches, b.id)
		lost := !b.ended || b.acked < b.n
		if s.open == b {
			s.open = nil
		}
		s.mu.Unlock()
		if lost {
			s.fail(fmt.Errorf("the hub ended a batch after %d of %d messages (a gap or a refused message); resending from the cursor", b.acked, b.n))
		}
	}
}

// ackBatch completes the messages of b up to batch sequence seq. pa is the
// PubAck ending the batch, if that is the answer: it names the hub stream,
// and its duplicate flag, which the hub sets only when the batch's single
// message was a duplicate.
func (s *session) ackBatch(b *fastBatch, seq uint64, pa pubAck) {
	f := s.f
	now := time.Now()
	var done []*entry
	s.mu.Lock()
	for ; b.acked < min(seq, b.n); b.acked++ {
		if e := s.takeLocked(b.base + b.acked); e != nil {
			s.cc.acked()
			done = append(done, e)
		}
	}
	s.lastAck = now
	s.mu.Unlock()
	// Even with nothing acked the window may have grown (flowMsgs).
	select {
	case s.freed <- struct{}{}:
	default:
	}
	if len(done) == 0 {
		f.mu.Lock()
		f.progress(now)
		f.mu.Unlock()
		return
	}
	if pa.Duplicate && len(done) == 1 && done[0].fresh {
		f.droppedDuplicate(done[0])
		s.complete(done[0])
		return
	}
	f.mu.Lock()
	f.acked += uint64(len(done))
	for _, e := range done {
		f.status.Forwarded[e.lane.name]++
	}
	f.status.LastAck = now
	if len(pa.Stream) > 0 && string(pa.Stream) != f.status.HubStream {
		f.status.HubStream = string(pa.Stream)
	}
	if len(pa.Stream) > 0 && string(pa.Domain) != f.status.HubDomain {
		f.status.HubDomain = string(pa.Domain)
	}
	cured := f.status.ReasonClass == ReasonHubStream || f.status.ReasonClass == ReasonPermission
	f.status.ReasonClass, f.status.LastError = "", ""
	f.progress(now)
	f.mu.Unlock()
	if cured && f.o.link != nil {
		f.o.link.SetDegraded("", "")
	}
	s.completeAll(done)
}

// rejectBatched skips the message at batch sequence seq, which the hub
// refused for good.
func (s *session) rejectBatched(b *fastBatch, seq uint64, why *ackError) {
	s.mu.Lock()
	e := s.takeLocked(b.base + seq - 1)
	s.mu.Unlock()
	if e == nil {
		return
	}
	s.f.reject(e.lane.name, e.seq, e.subject, "hub stream refused it: "+why.Error())
	s.complete(e)
}
