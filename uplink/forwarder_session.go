package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// session is one pass of the forwarder from the cursor onward. It ends on
// the first failure; the next session starts again from the cursor, with a
// fresh reply inbox so late acks of the old one cannot move anything.
type session struct {
	f          *Forwarder
	inbox      string
	conn       any           // the leaf connection it started on (Forwarder.connection)
	maxPayload int64         // the smaller of the hub's and the local server's
	freed      chan struct{} // an ack freed room in the window
	ready      chan struct{} // a lane's queue received messages
	failed     chan error
	tick       *time.Ticker // overdue-ack checks
	lanes      []*lane      // priority order
	// held is set while the start delay holds every lane but the first.
	held  atomic.Bool
	slab  []entry // send's entries, allocated in blocks
	reply []byte  // send's scratch for the reply subject
	// out, hdr, vals and hdrBuf are send's message, reused for every
	// reading: the client has encoded it by the time PublishMsg returns.
	// hubSubjects caches the hub subject of each local one, times the
	// formatted second.
	out         nats.Msg
	hdr         nats.Header
	vals        [6]string
	hdrBuf      []byte
	times       rfc3339Nano
	hubSubjects map[string]string

	mu sync.Mutex
	// sent holds the entries in flight by ack id: the slot of id is
	// id%window. Ids are issued in order and acks mostly come in order,
	// so a ring is the cheap map; a slot still taken by an older id (acks
	// far out of order) counts as a full window.
	sent     []*entry
	inFlight int
	nextID   uint64
	bytes    int       // in flight
	lastAck  time.Time // or the session start
	// cc is the forwarder's window control, copied in at the start and
	// back at the end, so late acks of an ended session change nothing.
	cc   congestion
	busy bool // the window was halved for a 429 in this session already
	// batch is set while the session publishes in fast batches
	// (forwarder_batch.go): open is the batch being sent, batches every
	// batch not yet ended by the hub's PubAck, flowMsgs the hub's latest
	// ack interval.
	batch      bool
	batchCount uint64 // batches started, for their ids
	open       *fastBatch
	batches    map[string]*fastBatch
	flowMsgs   int
}

// lane is one local stream within a session.
type lane struct {
	name string
	str  jetstream.Stream
	// next is the stream sequence expected next. A jump past it is
	// skipped only once the stream confirms the missing messages are gone
	// (checkGap); the reader alone is not trusted with that.
	next uint64
	// The reader appends to queue; the session swaps the whole queue for
	// its empty batch when that is used up, so messages cross between the
	// two goroutines a batch at a time while the reader fetches the next.
	// The session takes batch[pos:] one message at a time and looks at
	// the higher lanes before each, so a new alert still goes next.
	qmu    sync.Mutex
	queue  []item
	qbytes int
	room   chan struct{} // the session took the queue
	batch  []item
	pos    int
	// fifo holds sent and skipped messages in stream order; the cursor
	// moves past its head while the head is done (under session.mu).
	fifo []*entry
	// freshFrom is the first sequence whose id is this process's own
	// (Cursors.FreshFrom).
	freshFrom uint64
}

// item is one message read from a lane, with its stream sequence and the
// time the stream stored it (Unix nanoseconds), parsed by the reader.
type item struct {
	m   jetstream.Msg
	seq uint64
	ts  int64
}

type entry struct {
	lane    *lane
	id      uint64
	seq     uint64
	size    int
	sent    time.Time
	done    bool
	gap     uint64 // messages missing before seq+1 (evicted unforwarded)
	fresh   bool   // its message id was never sent before (see onAck)
	subject string // at the hub
}

func (s *session) fail(err error) {
	select {
	case s.failed <- err:
	default:
	}
}

func (s *session) inFlightCount() (n, window int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight, s.windowLimit()
}

func (f *Forwarder) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel below: readers stop first
	defer cancel()

	s := &session{
		f: f, inbox: nats.NewInbox(), maxPayload: min(int64(f.cfg.HubMaxPayload), f.nc.MaxPayload()),
		freed: make(chan struct{}, 1), ready: make(chan struct{}, 1), failed: make(chan error, 1),
		tick: time.NewTicker(min(max(f.o.ackTimeout/4, 10*time.Millisecond), 250*time.Millisecond)),
		sent: make([]*entry, f.o.window), lastAck: time.Now(), conn: f.connection(),
	}
	f.mu.Lock()
	s.cc = f.cc
	hold := time.Until(f.hold)
	f.mu.Unlock()
	s.batch = f.batchFirst(s.conn)
	s.batches = map[string]*fastBatch{}
	defer s.tick.Stop()
	if hold > 0 {
		s.held.Store(true)
		t := time.AfterFunc(hold, func() {
			s.held.Store(false)
			select {
			case s.ready <- struct{}{}:
			default:
			}
		})
		defer t.Stop()
	}
	sub, err := f.nc.Subscribe(s.inbox+".>", s.onAck)
	if err != nil {
		return fmt.Errorf("subscribe for hub acks: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return fmt.Errorf("hub ack subscription: %w", err)
	}
	for _, name := range f.o.streams {
		l, err := s.openLane(sctx, name, &wg)
		if err != nil {
			return err
		}
		s.lanes = append(s.lanes, l)
	}
	f.mu.Lock()
	f.cur = s
	f.mu.Unlock()
	defer func() {
		s.mu.Lock()
		cc := s.cc
		s.mu.Unlock()
		f.mu.Lock()
		f.cur, f.cc = nil, cc
		f.mu.Unlock()
	}()

	var it item
	var l *lane
	roomInWindow := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.inFlight < s.windowLimit() && s.bytes < windowBytes && s.sent[s.nextID%uint64(len(s.sent))] == nil
	}
	picked := func() bool {
		if it, l = s.pick(); l != nil {
			return true
		}
		s.mu.Lock()
		if s.inFlight == 0 && time.Since(s.lastAck) > time.Second {
			s.cc.idle()
		}
		s.mu.Unlock()
		return false
	}
	for {
		// Wait for room first and choose the message after, so an alert
		// that arrived while the window was full goes next.
		if err := s.await(ctx, s.freed, roomInWindow); err != nil {
			return err
		}
		if err := s.await(ctx, s.ready, picked); err != nil {
			return err
		}
		if err := s.send(sctx, l, it); err != nil {
			return err
		}
	}
}

// await blocks until try succeeds or the session must end: a failure, a
// replay request, an ack overdue, or ctx. wake is signalled when try may
// have become true.
func (s *session) await(ctx context.Context, wake <-chan struct{}, try func() bool) error {
	for !try() {
		select {
		case <-wake:
		case err := <-s.failed:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case rr := <-s.f.ctl:
			return &rr
		case <-s.tick.C:
			if err := s.checkTimeouts(); err != nil {
				return err
			}
		}
	}
	// A busy session never blocks above, so it looks here, before every
	// message: for a failure, above all the hub's "no responders" as the
	// leaf drops (sending on would let later messages reach the hub
	// through the redialed leaf ahead of the lost ones, out of stream
	// order), and for overdue acks.
	select {
	case err := <-s.failed:
		return err
	case <-s.tick.C:
		return s.checkTimeouts()
	default:
		return nil
	}
}

// pick takes the next message of the highest-priority lane that has one.
func (s *session) pick() (item, *lane) {
	for i, l := range s.lanes {
		if i > 0 && s.held.Load() {
			break
		}
		if l.pos == len(l.batch) && !l.refill() {
			continue
		}
		it := l.batch[l.pos]
		l.batch[l.pos] = item{} // the batch goes back as the next queue
		l.pos++
		return it, l
	}
	return item{}, nil
}

// refill swaps the used-up batch for the reader's queue, if it has any.
func (l *lane) refill() bool {
	l.qmu.Lock()
	if len(l.queue) == 0 {
		l.qmu.Unlock()
		return false
	}
	l.batch, l.queue, l.pos, l.qbytes = l.queue, l.batch[:0], 0, 0
	l.qmu.Unlock()
	select {
	case l.room <- struct{}{}:
	default:
	}
	return true
}

// push queues one message for the session, waiting while the queue holds
// a whole read batch (readBatch, readBatchBytes).
func (l *lane) push(ctx context.Context, it item, ready chan<- struct{}) bool {
	size := len(it.m.Data())
	for {
		l.qmu.Lock()
		if n := len(l.queue); n == 0 || n < readBatch && l.qbytes+size <= readBatchBytes {
			l.queue = append(l.queue, it)
			l.qbytes += size
			l.qmu.Unlock()
			if n == 0 { // the session may be waiting for it
				select {
				case ready <- struct{}{}:
				default:
				}
			}
			return true
		}
		l.qmu.Unlock()
		select {
		case <-l.room:
		case <-ctx.Done():
			return false
		}
	}
}

// openLane starts reading stream from cursor+1 (options.read, readStream)
// in its own goroutine, which parses each message's metadata and queues it
// for the session loop (lane.push).
func (s *session) openLane(ctx context.Context, name string, wg *sync.WaitGroup) (*lane, error) {
	f := s.f
	str, err := f.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("local stream %s: %w", name, err)
	}
	if !f.st.SameStream(name, str.CachedInfo().Config.Metadata) {
		return nil, fmt.Errorf("local stream %s was recreated and state.db has not adopted its message ids yet; forwarding it once it has", name)
	}
	st := str.CachedInfo().State
	cursor := f.st.Cursor(name)
	if st.LastSeq < cursor {
		f.log.Warn("forwarder: local stream is behind its cursor (recreated or restored?); forwarding it from the start. Messages with a reused sequence inside the hub's duplicate window are dropped there as duplicates",
			"stream", name, "cursor", cursor, "last_seq", st.LastSeq)
		if err := f.st.ResetCursor(name, 0); err != nil {
			return nil, fmt.Errorf("reset cursor of %s: %w", name, err)
		}
		cursor = 0
	}
	if st.FirstSeq > cursor+1 {
		n := st.FirstSeq - 1 - cursor
		f.st.AddEvicted(name, n)
		f.st.SetCursor(name, st.FirstSeq-1)
		f.log.Warn("forwarder: readings were evicted by the buffer limits before they reached the hub (raise buffer.max_bytes/max_age if this repeats)",
			"stream", name, "evicted", n, "from_seq", cursor+1, "to_seq", st.FirstSeq-1)
		cursor = st.FirstSeq - 1
	}
	start := f.replayStart(name, cursor, st.FirstSeq)
	l := &lane{name: name, str: str, next: start, room: make(chan struct{}, 1), freshFrom: f.st.FreshFrom(name)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var metaErr error
		err := f.o.read(ctx, str, start, func(m jetstream.Msg) bool {
			it, err := readItem(m)
			if err != nil {
				metaErr = fmt.Errorf("message metadata: %w", err)
				return false
			}
			return l.push(ctx, it, s.ready)
		})
		if metaErr != nil {
			err = metaErr
		}
		if ctx.Err() == nil {
			s.fail(fmt.Errorf("read stream %s from %d: %w", name, start, err))
		}
	}()
	return l, nil
}

// readItem reads m's stream sequence and storage time from its reply
// subject, as jetstream's Metadata does but without allocating: it runs
// once per reading. After "$JS.ACK." come the stream, the consumer, the
// delivery count, the stream and consumer sequences, the time and the
// pending count; from nats-server 2.10 on, a domain and an account hash
// come first and a random token last. Any other shape goes through
// Metadata, which says what is wrong with it.
func readItem(m jetstream.Msg) (item, error) {
	reply := m.Reply()
	seqAt := -1
	if rest, ok := strings.CutPrefix(reply, "$JS.ACK."); ok {
		switch strings.Count(rest, ".") + 1 {
		case 7:
			seqAt = 3
		case 9, 10:
			seqAt = 5
		}
		for i := 0; seqAt >= 0 && i < seqAt; i++ {
			_, rest, _ = strings.Cut(rest, ".")
		}
		if seqAt >= 0 {
			seqTok, rest, _ := strings.Cut(rest, ".")
			_, rest, _ = strings.Cut(rest, ".") // the consumer sequence
			tsTok, _, _ := strings.Cut(rest, ".")
			seq, err1 := strconv.ParseUint(seqTok, 10, 64)
			// 63 bits: an int64 without the sign ParseInt would accept.
			ts, err2 := strconv.ParseUint(tsTok, 10, 63)
			if err1 == nil && err2 == nil {
				return item{m, seq, int64(ts)}, nil
			}
		}
	}
	meta, err := m.Metadata()
	if err != nil {
		return item{}, err
	}
	return item{m, meta.Sequence.Stream, meta.Timestamp.UnixNano()}, nil
}

// readFunc delivers a local stream's messages from sequence from onward,
// in stream order, to deliver until ctx ends, deliver returns false or
// reading fails; it always returns a non-nil error (ctx.Err() when
// cancelled).
type readFunc func(ctx context.Context, str jetstream.Stream, from uint64, deliver func(jetstream.Msg) bool) error

// Reader batches: a batch is the unit of one pull request, so its size
// bounds the memory a lane holds (three batches: one being fetched, one
// queued, one being sent) and sets how often the reader asks the local
// server.
const (
	readBatch      = 512
	readBatchBytes = 4 << 20
)

// readStream reads with an ephemeral pull consumer, one Fetch at a time.
// The ordered consumer's Messages iterator, used before, overflowed its
// 512-message buffer in every backlog drain ("nats: slow consumer,
// messages dropped") and recreated itself after each drop; a Fetch
// subscription buffers twice its batch, so nothing overflows, and with one
// request at a time the server delivers strictly in stream order. A
// delivery lost anyway (a fetch that gave up while the server was still
// sending) shows as a jump in the stream sequence, which the session does
// not skip before the stream confirms it (checkGap). The consumer keeps its
// state in memory, as an ordered one does (no writes to the device's
// storage per reading), acknowledges nothing (the cursor in state.db is the
// only position that matters), and is deleted when reading ends, or by the
// server once idle if the agent died: idle meaning no pull waiting, which
// also happens while a metered link slowly empties the last batch, hence
// minutes rather than seconds.
func readStream(ctx context.Context, str jetstream.Stream, from uint64, deliver func(jetstream.Msg) bool) error {
	created := str.CachedInfo().Created
	cons, err := str.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: 10 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("create consumer: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = str.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	// The consumer reads whatever stream has the name now: one deleted and
	// recreated since openLane checked it would go out under the deleted
	// stream's message ids.
	if info, err := str.Info(ctx); err != nil {
		return fmt.Errorf("stream info: %w", err)
	} else if !info.Created.Equal(created) {
		return errors.New("the stream was recreated while its lane opened")
	}
	for {
		// Without a deadline on ctx the pull waits 30 s for new readings
		// (with server heartbeats every 5 s, so a lost consumer is noticed).
		b, err := cons.Fetch(readBatch, jetstream.FetchMaxBytes(readBatchBytes), jetstream.FetchContext(ctx))
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		for m := range b.Messages() {
			if !deliver(m) {
				return ctx.Err()
			}
		}
		if err := b.Error(); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
	}
}

// send publishes one local message to the hub, or skips it with a reason
// when the hub could never take it.
func (s *session) send(ctx context.Context, l *lane, it item) error {
	f := s.f
	m, seq := it.m, it.seq
	if seq < l.next {
		return fmt.Errorf("stream %s: reader went back to seq %d after %d; resending from the cursor", l.name, seq, l.next-1)
	}
	if seq > l.next {
		if err := l.checkGap(ctx, seq); err != nil {
			return err
		}
	}
	if seq > l.next {
		// Only what is missing past the cursor was never forwarded; below
		// it (a replay) the hub had the readings.
		g := s.newEntry()
		*g = entry{lane: l, seq: seq - 1, done: true, gap: seq - min(seq, max(l.next, f.st.Cursor(l.name)+1))}
		s.mu.Lock()
		l.fifo = append(l.fifo, g)
		s.mu.Unlock()
	}
	l.next = seq + 1

	if !server.IsValidLiteralSubject(m.Subject()) {
		// A local app published on a wildcard subject (nats-server only
		// refuses that to clients that connect pedantic): at the hub it
		// would be a subject every consumer's filter misreads.
		f.reject(l.name, seq, m.Subject(), "the subject has a wildcard token (* or >): publish readings on literal subjects")
		s.complete(&entry{lane: l, seq: seq})
		return nil
	}
	if s.hdr == nil || len(s.hubSubjects) >= maxSubjectCache {
		s.hdr, s.hubSubjects = nats.Header{}, map[string]string{}
	}
	hubSubject, ok := s.hubSubjects[m.Subject()]
	if !ok {
		hubSubject = f.HubSubject(m.Subject())
		s.hubSubjects[m.Subject()] = hubSubject
	}
	out := &s.out
	var hdr nats.Header
	hdr, s.hdrBuf = f.fillHubHeaders(s.hdr, &s.vals, s.hdrBuf, &s.times, m, seq, time.Unix(0, it.ts), l.name)
	*out = nats.Msg{Subject: hubSubject, Header: hdr, Data: m.Data()}
	size := msgSize(out) + len(out.Subject)
	if int64(size) > s.maxPayload {
		f.reject(l.name, seq, m.Subject(), fmt.Sprintf("%d bytes exceed the hub's max_payload of %d (uplink.hub_max_payload)", size, s.maxPayload))
		s.complete(&entry{lane: l, seq: seq})
		return nil
	}
	if f.pacer != nil {
		if err := f.pacer.wait(ctx, size); err != nil {
			return err
		}
	}
	e := s.newEntry()
	*e = entry{lane: l, seq: seq, size: size, sent: time.Now(), subject: out.Subject, fresh: seq >= l.freshFrom && seq > f.sentTo[l.name]}
	f.sentTo[l.name] = max(f.sentTo[l.name], seq)
	s.mu.Lock()
	e.id = s.nextID
	s.nextID++
	s.sent[e.id%uint64(len(s.sent))] = e
	s.inFlight++
	s.bytes += size
	l.fifo = append(l.fifo, e)
	batch := s.batch
	s.mu.Unlock()
	if batch {
		out.Reply = s.batchReplyFor(e, !s.moreQueued())
	} else {
		s.reply = strconv.AppendUint(append(append(s.reply[:0], s.inbox...), '.'), e.id, 10)
		out.Reply = string(s.reply)
	}
	if err := f.nc.PublishMsg(out); err != nil {
		return fmt.Errorf("publish %s: %w", out.Subject, err)
	}
	return nil
}

// maxSubjectCache bounds send's cache of hub subjects: a site with more
// distinct local subjects than this starts the cache over.
const maxSubjectCache = 1024

// newEntry hands out entries from blocks: one allocation per 256 sends.
func (s *session) newEntry() *entry {
	if len(s.slab) == 0 {
		s.slab = make([]entry, 256)
	}
	e := &s.slab[0]
	s.slab = s.slab[1:]
	return e
}

// checkGap returns nil when the messages between l.next and seq, which the
// reader jumped over, are really gone from the local stream (evicted by
// the buffer limits or deleted), so the cursor may move past them. A
// reader that skipped a stored message (a lost delivery, a consumer reset)
// ends the session instead: the next one resends from the cursor, and the
// skipped message is never counted as evicted. One request, whatever the
// gap: the first stored message at or after l.next.
func (l *lane) checkGap(ctx context.Context, seq uint64) error {
	m, err := l.str.GetMsg(ctx, l.next, jetstream.WithGetMsgSubject(">"))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil // nothing stored from l.next on: seq itself went meanwhile
	case err != nil:
		return fmt.Errorf("stream %s: check whether seq %d..%d are still stored: %w", l.name, l.next, seq-1, err)
	case m.Sequence < seq:
		return fmt.Errorf("stream %s: reader skipped seq %d, which is still stored (jumped from %d to %d); resending from the cursor", l.name, m.Sequence, l.next-1, seq)
	}
	return nil
}

// onAck handles the hub stream's reply to one forwarded message, or to a
// batch (onBatchReply).
func (s *session) onAck(m *nats.Msg) {
	rest := m.Subject[len(s.inbox)+1:]
	if strings.HasSuffix(rest, batchSuffix) {
		s.onBatchReply(rest, m.Data, m.Header.Get("Status"))
		return
	}
	id, err := strconv.ParseUint(rest, 10, 64)
	if err != nil {
		return
	}
	pa, ok := parseAck(m.Data) // before the lock: the window needs it
	s.ackOne(id, pa, ok, m.Data, m.Header.Get("Status"))
}

// takeLocked removes entry id from the window and returns it; nil when it
// is no longer there (answered already). s.mu is held.
func (s *session) takeLocked(id uint64) *entry {
	slot := &s.sent[id%uint64(len(s.sent))]
	e := *slot
	if e == nil || e.id != id {
		return nil
	}
	*slot = nil
	s.inFlight--
	s.bytes -= e.size
	return e
}

// ackOne handles the hub stream's ack of the message sent as entry id.
func (s *session) ackOne(id uint64, pa pubAck, ok bool, data []byte, status string) {
	f := s.f
	now := time.Now()
	s.mu.Lock()
	e := s.takeLocked(id)
	if e == nil {
		s.mu.Unlock()
		return
	}
	s.lastAck = now
	halve := false
	switch {
	case ok && pa.Error == nil:
		s.cc.acked()
	case ok && pa.Error.busy() && !s.busy:
		// Once per session: the rest of the window meets the same
		// full queue, and the session ends on this 429 anyway.
		halve, s.busy = true, true
		s.cc.busy()
	}
	s.mu.Unlock()
	if halve {
		f.mu.Lock()
		f.status.HubBusy++
		f.mu.Unlock()
	}
	select {
	case s.freed <- struct{}{}:
	default:
	}
	if len(data) == 0 && status == "503" {
		s.fail(errNoResponders)
		return
	}
	if !ok {
		s.fail(fmt.Errorf("hub reply to %s seq %d is not a stream ack: %q", e.lane.name, e.seq, data))
		return
	}
	if pa.Error != nil {
		if !pa.Error.permanent() {
			s.fail(pa.Error)
			return
		}
		f.reject(e.lane.name, e.seq, e.subject, "hub stream refused it: "+pa.Error.Error())
	} else if pa.Duplicate && e.fresh {
		f.droppedDuplicate(e)
	} else {
		f.mu.Lock()
		f.acked++
		f.status.Forwarded[e.lane.name]++
		f.status.LastAck = now
		// Compared before assigned: converting the bytes only when they
		// differ keeps the per-ack path free of allocations.
		if string(pa.Stream) != f.status.HubStream {
			f.status.HubStream = string(pa.Stream)
		}
		if string(pa.Domain) != f.status.HubDomain {
			f.status.HubDomain = string(pa.Domain)
		}
		// A reason this forwarder gave the link (hub stream missing,
		// permission) ends with the first ack; tell the link too.
		cured := f.status.ReasonClass == ReasonHubStream || f.status.ReasonClass == ReasonPermission
		f.status.ReasonClass, f.status.LastError = "", ""
		f.progress(f.status.LastAck)
		f.mu.Unlock()
		if cured && f.o.link != nil {
			f.o.link.SetDegraded("", "")
		}
	}
	s.complete(e)
}

// pubAck is the part of the hub stream's reply the forwarder reads.
type pubAck struct {
	Stream    []byte
	Domain    []byte
	Error     *ackError
	Duplicate bool
	// Batch and Count close a fast batch: its id and how many of its
	// messages the stream stored.
	Batch string
	Count uint64
}

// parseAck reads the hub's reply to one publish: one per forwarded
// reading, so the usual success ack ({"stream":"EDGE","seq":7,
// "domain":"hub"}, from nats-server's PubAck) is read by scanning for its
// two string fields instead of by reflection. Anything else (an error, a
// duplicate, an escaped string, an unexpected shape) goes through
// encoding/json. ok is false when the reply is no stream ack at all.
func parseAck(data []byte) (pa pubAck, ok bool) {
	if !bytes.Contains(data, []byte(`"error"`)) && !bytes.Contains(data, []byte(`"duplicate"`)) && !bytes.Contains(data, []byte(`"batch"`)) && bytes.IndexByte(data, '\\') < 0 {
		pa.Stream, pa.Domain = jsonString(data, `"stream":"`), jsonString(data, `"domain":"`)
		if len(pa.Stream) > 0 {
			return pa, true
		}
	}
	var full struct {
		Stream    string    `json:"stream"`
		Domain    string    `json:"domain"`
		Error     *ackError `json:"error"`
		Duplicate bool      `json:"duplicate"`
		Batch     string    `json:"batch"`
		Count     uint64    `json:"count"`
	}
	if err := json.Unmarshal(data, &full); err != nil || (full.Stream == "" && full.Error == nil) {
		return pubAck{}, false
	}
	return pubAck{Stream: []byte(full.Stream), Domain: []byte(full.Domain), Error: full.Error, Duplicate: full.Duplicate, Batch: full.Batch, Count: full.Count}, true
}

// jsonString returns the value of the string field that starts right after
// key (`"name":"`), or nil.
func jsonString(data []byte, key string) []byte {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return nil
	}
	v := data[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil
	}
	return v[:j]
}

// complete marks e done and moves the cursor (and a replay) past every
// done message at the head of its lane.
func (s *session) complete(e *entry) { s.completeAll([]*entry{e}) }

// completeAll marks done entries, all of one batch ack, and moves each
// lane's cursor once.
func (s *session) completeAll(done []*entry) {
	s.mu.Lock()
	for _, e := range done {
		e.done = true
	}
	s.mu.Unlock()
	for _, l := range s.lanes {
		s.advance(l)
	}
}

// advance moves l's cursor (and a replay) past every done message at the
// head of its fifo.
func (s *session) advance(l *lane) {
	s.mu.Lock()
	var to, evicted uint64
	for len(l.fifo) > 0 && l.fifo[0].done {
		h := l.fifo[0]
		l.fifo[0] = nil
		l.fifo = l.fifo[1:]
		to, evicted = h.seq, evicted+h.gap
	}
	// The rest runs unlocked: Status takes the forwarder's lock, then this one.
	s.mu.Unlock()
	if to == 0 {
		return
	}
	s.f.replayed(l.name, to)
	if evicted > 0 {
		s.f.st.AddEvicted(l.name, evicted)
		s.f.log.Warn("forwarder: readings were evicted by the buffer limits before they reached the hub (raise buffer.max_bytes/max_age if this repeats)",
			"stream", l.name, "evicted", evicted, "before_seq", to+1)
	}
	s.f.st.SetCursor(l.name, to)
}

// checkTimeouts ends the session when the link dropped (what was in
// flight is lost: resend it as soon as the link is back, not after the ack
// timeout) or came back as another connection since the session started
// (a drop between two looks: the next session starts on the new one and
// probes the hub's publishing mode again), or when the oldest
// unacknowledged message waited longer than the ack timeout and no ack at
// all came meanwhile: on a slow link acks trail the sends, but they keep
// coming.
func (s *session) checkTimeouts() error {
	if !s.f.linkUp() || s.f.connection() != s.conn {
		return errLinkDown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.lastAck) < s.f.o.ackTimeout {
		return nil
	}
	for _, l := range s.lanes {
		for _, e := range l.fifo {
			if e.done {
				continue
			}
			if waited := time.Since(e.sent); waited > s.f.o.ackTimeout {
				s.cc.timedOut()
				return fmt.Errorf("%w: %s seq %d waited %s", errAckTimeout, l.name, e.seq, waited.Round(time.Millisecond))
			}
			break
		}
	}
	return nil
}

func (f *Forwarder) reject(stream string, seq uint64, subject, why string) {
	f.mu.Lock()
	f.status.Rejected++
	f.status.LastRejected = fmt.Sprintf("%s seq %d on %s: %s", stream, seq, subject, why)
	f.mu.Unlock()
	f.log.Error("forwarder: message cannot be forwarded; skipped (it stays in the local stream)", "stream", stream, "seq", seq, "subject", subject, "reason", why)
}

// droppedDuplicate reports a reading the hub took for a duplicate although
// its id was never sent before: another message holds that id at the hub
// (a second device with this site's name and store, or a bug), so the
// reading is not there. It is not counted as forwarded; the cursor moves
// on, as resending would meet the same id.
func (f *Forwarder) droppedDuplicate(e *entry) {
	f.mu.Lock()
	f.status.DroppedDuplicate++
	f.status.LastDuplicate = fmt.Sprintf("%s seq %d on %s", e.lane.name, e.seq, e.subject)
	f.progress(time.Now()) // an ack all the same: the link works
	f.mu.Unlock()
	f.log.Error("forwarder: the hub dropped a new reading as a duplicate of another message with the same id; it is not at the hub (it stays in the local stream)",
		"stream", e.lane.name, "seq", e.seq, "subject", e.subject, "msg_id", f.MsgID(e.lane.name, e.seq))
}
