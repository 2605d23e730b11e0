package buffer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names and subjects: part of the subject contract (docs/SUBJECTS.md).
const (
	StreamTelemetry = "TELEMETRY"
	StreamAlerts    = "ALERTS"
)

// Lanes lists the agent's streams in forwarding priority order: alarms first.
var Lanes = []string{StreamAlerts, StreamTelemetry}

// StreamConfigs is what the agent's streams must look like for this config.
// MaxAge is always 0: nats-server expires by the wall clock against each
// message's wall-clock store time, so a clock stepped forward (a bad RTC, a
// gateway booting at 1970 and NTP stepping it to today) would empty the
// buffer of readings the hub never had. buffer.max_age is enforced by the
// Ager instead, on time that cannot jump (see age.go).
func StreamConfigs(c Config) []jetstream.StreamConfig {
	alertBytes := max(int64(c.MaxBytes)/10, MinStreamBytes)
	base := func(name, subj string, bytes int64) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: "edge-agent local buffer for " + subj + " (limits retention: kept after forwarding for local replay)",
			Subjects:    []string{subj},
			Storage:     jetstream.FileStorage,
			Replicas:    1,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxBytes:    bytes,
			MaxAge:      0,
			// Never AsyncPersistMode: it silently turns the server's
			// sync_always off for the stream (nats-server stream.go).
			PersistMode: jetstream.DefaultPersistMode,
			// The forwarder's message id makes resends idempotent at the hub; a
			// local window catches local apps that retry a publish.
			Duplicates: 2 * time.Minute,
		}
	}
	return []jetstream.StreamConfig{
		base(StreamAlerts, "alerts.>", alertBytes),
		base(StreamTelemetry, "telemetry.>", int64(c.MaxBytes)-alertBytes),
	}
}

// EnsureStreams is ReconcileStreams without a log.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c Config) error {
	return ReconcileStreams(ctx, js, c, nil)
}

// ReconcileStreams creates the agent's streams or reconciles their limits
// in place (max_bytes, max_age, discard, subjects, description: nats-server
// applies these to the existing files, data kept; shrinking max_bytes
// evicts the oldest messages, which is what the operator asked for). A
// stream created by an older agent with a JetStream max_age gets 0, logged:
// the age limit is the Ager's from now on. A difference that would need a
// new stream (storage, retention, replicas, persist mode) is refused with
// the reason and the commands to resolve it, never applied by deleting
// data.
func ReconcileStreams(ctx context.Context, js jetstream.JetStream, c Config, log *slog.Logger) error {
	_, err := reconcileStreams(ctx, js, c, "", nil, log)
	return err
}

// seenLane is what reconciling a stream saw of it, for its check.
type seenLane struct {
	// id is the stream id in its metadata ("" for a stream from before
	// id epochs); created is whether the reconcile created it.
	id      string
	created bool
	// end is its last sequence then, and at when: later sequences are
	// new messages, and every one up to end was stored before at.
	end uint64
	at  time.Time
}

// reconcileStreams is ReconcileStreams with the streams side by side (each
// create or update is a request that writes and syncs the stream's files):
// it returns what it saw of each stream; the metadata of a stream it
// created carries storeID when that is set. Streams unknown lists are
// likely not to exist (state.db has never seen them: a first start), so
// they are created without being looked up first, one request less
// before the start is ready; when that create fails they are looked up
// as the others are. The failure need not say the stream exists:
// nats-server checks the storage a new stream would reserve before the
// name, so an existing stream can be refused for storage.
func reconcileStreams(ctx context.Context, js jetstream.JetStream, c Config, storeID string, unknown []string, log *slog.Logger) (map[string]seenLane, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wants := StreamConfigs(c)
	seen, errs := make([]seenLane, len(wants)), make([]error, len(wants))
	var wg sync.WaitGroup
	for i, want := range wants {
		wg.Go(func() {
			if slices.Contains(unknown, want.Name) {
				if seen[i], errs[i] = createStream(ctx, js, want, storeID); errs[i] == nil {
					return
				}
			}
			seen[i], errs[i] = reconcileStream(ctx, js, want, c, storeID, log)
		})
	}
	wg.Wait()
	out := map[string]seenLane{}
	for i, want := range wants {
		if errs[i] != nil {
			return nil, errs[i]
		}
		out[want.Name] = seen[i]
	}
	return out, nil
}

// reconcileStream creates or reconciles one stream.
func reconcileStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, c Config, storeID string, log *slog.Logger) (seenLane, error) {
	s, err := js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return createStream(ctx, js, want, storeID)
	case err != nil:
		return seenLane{}, fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	seen := seenLane{id: have.Metadata[mdStreamID], end: s.CachedInfo().State.LastSeq, at: time.Now()}
	if why := notInPlace(have, want); why != "" {
		return seenLane{}, fmt.Errorf("stream %s %s; this cannot be changed in place and the agent never deletes buffered data: back it up (`nats stream backup %s /tmp/%s.bak`), remove it (`nats stream rm %s`) and restart the agent to recreate it", want.Name, why, want.Name, want.Name, want.Name)
	}
	if !inPlaceDiffers(have, want) {
		return seen, nil
	}
	upd := have
	upd.MaxBytes, upd.MaxAge, upd.Discard, upd.Subjects, upd.Description = want.MaxBytes, want.MaxAge, want.Discard, want.Subjects, want.Description
	if _, err := js.UpdateStream(ctx, upd); err != nil {
		return seenLane{}, fmt.Errorf("update stream %s limits in place (max_bytes %d, max_age %s): %w", want.Name, want.MaxBytes, want.MaxAge, err)
	}
	if have.MaxAge != want.MaxAge {
		log.Info("stream max_age set to 0 in JetStream: buffer.max_age is now enforced by the agent on time that does not jump with the wall clock (stored readings start ageing from now)",
			"stream", want.Name, "jetstream_max_age_was", have.MaxAge.String(), "buffer.max_age", c.MaxAge.String())
	}
	return seen, nil
}

// createStream creates the stream want. A new stream is a new sequence
// space: its own id, so its messages never share ids with a stream it
// replaces.
func createStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, storeID string) (seenLane, error) {
	id := newStoreID()
	want.Metadata = idMetadata(nil, storeID, laneIDs{StreamID: id, Epochs: []Epoch{{From: 1, ID: id}}})
	_, err := js.CreateStream(ctx, want)
	switch {
	case err == nil:
		return seenLane{id: id, created: true, at: time.Now()}, nil
	case strings.Contains(err.Error(), "overlap"):
		return seenLane{}, fmt.Errorf("create stream %s: %w: another local stream already captures %s; the agent owns that subject space (see the subject contract): move that stream to other subjects", want.Name, err, want.Subjects[0])
	}
	return seenLane{}, fmt.Errorf("create stream %s: %w", want.Name, err)
}

func notInPlace(have, want jetstream.StreamConfig) string {
	switch {
	case have.Storage != want.Storage:
		return fmt.Sprintf("uses %s storage but the agent needs file storage", have.Storage)
	case have.Retention != want.Retention:
		return fmt.Sprintf("has %s retention but the agent needs limits retention (data stays after forwarding for local replay)", have.Retention)
	case have.Replicas > 1:
		return fmt.Sprintf("has %d replicas but a gateway has one server", have.Replicas)
	case have.PersistMode == jetstream.AsyncPersistMode:
		return "has persist_mode async, which acknowledges writes before they are on disk and overrides buffer.sync"
	}
	return ""
}

func inPlaceDiffers(have, want jetstream.StreamConfig) bool {
	return have.MaxBytes != want.MaxBytes || have.MaxAge != want.MaxAge || have.Discard != want.Discard ||
		!slices.Equal(have.Subjects, want.Subjects) || have.Description != want.Description
}

// AsyncStreams lists local streams with persist_mode async: their acks do
// not mean "on disk" whatever buffer.sync says, and a technician must know.
func AsyncStreams(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	var out []string
	l := js.ListStreams(ctx)
	for si := range l.Info() {
		if si.Config.PersistMode == jetstream.AsyncPersistMode {
			out = append(out, si.Config.Name)
		}
	}
	if err := l.Err(); err != nil {
		return out, fmt.Errorf("list streams: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// laneMark is the last known extent of a stream, kept in state.db so that a
// start can tell what damage or a power cut took.
type laneMark struct {
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	Msgs     uint64    `json:"msgs"`
	Time     time.Time `json:"time"`
}

func markKey(stream string) string { return "lane." + stream }

// Identity in the JetStream store, which is the source of truth (state.db
// is a cache of it): the agent streams' metadata keeps the store id, the
// stream id and the message-id epochs, and StateStream keeps the cursors.
const (
	mdStoreID  = "edge-agent.store-id"
	mdStreamID = "edge-agent.stream-id"
	mdEpochs   = "edge-agent.id-epochs"
	mdGen      = "edge-agent.id-gen"

	// StateStream holds the last cursor of each agent stream, one message
	// per subject, so a lost state.db does not mean resending everything.
	StateStream   = "EDGE_AGENT_STATE"
	cursorSubject = "edge-agent.cursor."
	backupTimeout = 5 * time.Second
)

func idMetadata(md map[string]string, storeID string, l laneIDs) map[string]string {
	out := maps.Clone(md)
	if out == nil {
		out = map[string]string{}
	}
	if storeID != "" {
		out[mdStoreID] = storeID
	}
	ep, _ := json.Marshal(l.Epochs)
	out[mdStreamID], out[mdEpochs], out[mdGen] = l.StreamID, string(ep), strconv.FormatUint(l.Gen, 10)
	return out
}

func idsFromMetadata(md map[string]string) (laneIDs, bool) {
	l := laneIDs{StreamID: md[mdStreamID]}
	if l.StreamID == "" || json.Unmarshal([]byte(md[mdEpochs]), &l.Epochs) != nil || len(l.Epochs) == 0 {
		return laneIDs{}, false
	}
	l.Gen, _ = strconv.ParseUint(md[mdGen], 10, 64)
	return l, true
}

// cursorRecord is one cursor in StateStream; StreamID ties it to the
// sequence space it counts in.
type cursorRecord struct {
	Cursor   uint64 `json:"cursor"`
	StreamID string `json:"stream_id"`
}

// ensureStateStream creates StateStream if it is missing: file storage,
// the last record per subject, outside telemetry.> and alerts.>.
func ensureStateStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.Stream(ctx, StateStream)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:              StateStream,
		Description:       "edge-agent forwarder cursors (a backup of state.db: restored when state.db is lost)",
		Subjects:          []string{cursorSubject + ">"},
		Storage:           jetstream.FileStorage,
		Replicas:          1,
		MaxMsgsPerSubject: 1,
		MaxBytes:          1 << 20,
		Discard:           jetstream.DiscardOld,
	})
	return err
}

// restoreCursor reads stream's backed-up cursor; 0 when there is none or
// it belongs to another sequence space.
func restoreCursor(ctx context.Context, js jetstream.JetStream, stream, streamID string) (uint64, error) {
	s, err := js.Stream(ctx, StateStream)
	if err != nil {
		return 0, err
	}
	m, err := s.GetLastMsgForSubject(ctx, cursorSubject+stream)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var r cursorRecord
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return 0, fmt.Errorf("cursor record %s: %w", m.Subject, err)
	}
	if r.StreamID != streamID {
		return 0, nil
	}
	return r.Cursor, nil
}

// backupCursors writes the cursors that moved since the last backup to
// StateStream (a JetStream publish with ack each: one small fsynced write
// per stream and flush interval while forwarding). A failure is logged
// once and retried at the next flush.
func (s *State) backupCursors(ctx context.Context) {
	s.mu.Lock()
	js := s.backup
	todo := map[string]cursorRecord{}
	for stream, l := range s.ids {
		if r := (cursorRecord{Cursor: s.cursors[stream], StreamID: l.StreamID}); js != nil && s.backedUp[stream] != r {
			todo[stream] = r
		}
	}
	s.mu.Unlock()
	for stream, r := range todo {
		data, _ := json.Marshal(r)
		pctx, cancel := context.WithTimeout(ctx, backupTimeout)
		_, err := js.Publish(pctx, cursorSubject+stream, data)
		cancel()
		s.mu.Lock()
		if err == nil {
			s.backedUp[stream] = r
		} else if !s.backErr {
			s.log.Warn("cannot back up the forwarder cursor to the JetStream store; retrying at the next flush (until then a lost state.db means resending more)", "stream", stream, "to", StateStream, "err", err)
		}
		s.backErr = err != nil
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// checkStreams reconciles state.db with the JetStream store and records
// what was lost; Opening.Check runs it once the streams are up to the
// config. Per agent stream:
//
//   - identity: the stream's metadata (stream id, message-id epochs, store
//     id) is the truth; a state.db that does not know the stream yet (it
//     was just created: first start, or the old one was corrupt or
//     deleted) takes it, and the cursor from StateStream.
//     A stream with another stream id than state.db knew was recreated: a
//     new sequence space, forwarded from its start under its own ids.
//   - damage: messages the server reports lost (damaged block file), a
//     tail that went missing (truncation, a power cut with buffer.sync set
//     to an interval), holes inside the range.
//   - reuse of sequences: sequences after the end get a new epoch at the
//     first check of every process, and at a later one when the stream
//     ends below a sequence whose id this process may have sent: new
//     messages there cannot take ids the hub has seen (it would drop them
//     as duplicates), and the messages that survived keep theirs. At a
//     start nothing in the store can say which ids past its end were sent:
//     a restored copy of state_dir (a backup, an old SD card) is
//     indistinguishable from the store it copied, whose later run sent
//     them. When the stream ends below the cursor or the last known
//     extent, the cursor is pulled back to the end, never further: what
//     the hub has is not resent.
//
// opened is when the store was opened (the server or JetStream started):
// nats-server takes client publishes before this check runs, so messages
// stored since then are new ones after the end, not the surviving tail.
// Zero means nothing was appended since. seen is what reconciling each
// stream saw of it (created, and its end: messages after it were stored
// since), backupErr what creating StateStream returned.
//
// Afterwards the state flusher mirrors cursors to StateStream. It returns
// the damage found, one line per stream.
func checkStreams(ctx context.Context, js jetstream.JetStream, st *State, opened time.Time, seen map[string]seenLane, backupErr error, log *slog.Logger) ([]string, error) {
	if backupErr != nil {
		// Not fatal: identity still lives in the stream metadata.
		log.Error("cannot create the cursor backup stream; forwarding on, but a lost state.db will mean resending the buffer", "stream", StateStream, "err", backupErr)
	}
	var found []string
	checks := make([]laneCheck, 0, len(Lanes))
	storeID := ""
	for _, name := range Lanes {
		c, d, err := checkLane(ctx, js, st, name, opened, seen[name], backupErr == nil, log)
		if err != nil {
			return found, err
		}
		if d != "" {
			found = append(found, d)
		}
		if storeID == "" {
			storeID = c.storeID
		}
		checks = append(checks, c)
	}
	if storeID == "" {
		storeID = st.StoreID()
	}
	for i, c := range checks {
		if md := idMetadata(c.cfg.Metadata, storeID, c.ids); !maps.Equal(md, c.cfg.Metadata) {
			cfg := c.cfg
			cfg.Metadata = md
			checks[i].update = &cfg
		}
	}
	if err := commitLanes(ctx, js, st, storeID, checks, log); err != nil {
		return found, err
	}
	if backupErr == nil {
		st.mu.Lock()
		st.backup = js
		st.mu.Unlock()
	}
	return found, nil
}

// laneCheck is what checkLane decided for one stream: commitLanes writes
// it. Nothing is written before every stream is checked, so a check that
// fails and is retried records no loss or event twice.
type laneCheck struct {
	name string
	// cfg is the stream's config as checked; update is it with new
	// identity metadata, nil when the metadata already holds it.
	cfg    jetstream.StreamConfig
	update *jetstream.StreamConfig
	// storeID is the store id the stream's metadata restores to a fresh
	// state.db; empty when there is nothing to restore.
	storeID   string
	events    []StateEvent
	losses    []Loss
	ids       laneIDs
	cursor    uint64
	setCursor bool
	issued    uint64
	ageLimit  uint64
	state     jetstream.StreamState
}

// commitLanes records the streams' identities: the JetStream store first,
// as it is what a lost state.db restores from (each stream's metadata
// update is a request that rewrites and syncs its meta file, so the
// updates go side by side), then state.db, every stream and the store id
// in one transaction: one sync, not one per stream. A metadata update that
// fails (disk full) must not keep the agent down: state.db has the newer
// generation, and the next check writes it again. The events and losses
// the checks found are recorded only once the identities are committed:
// before, a retried check would find and count them again.
func commitLanes(ctx context.Context, js jetstream.JetStream, st *State, storeID string, checks []laneCheck, log *slog.Logger) error {
	var wg sync.WaitGroup
	for _, c := range checks {
		if c.update == nil {
			continue
		}
		wg.Go(func() {
			if _, err := js.UpdateStream(ctx, *c.update); err != nil {
				log.Error("cannot record message-id epochs in the stream metadata; kept in state.db, retried at the next start", "stream", c.name, "err", err)
			}
		})
	}
	wg.Wait()
	if err := adoptWithLosses(st, storeID, checks); err != nil {
		return err
	}
	for _, c := range checks {
		for _, ev := range c.events {
			st.AddEvent(ev.Kind, ev.Detail)
		}
		// Age checkpoints name sequences; ones past the end now (or in
		// the sequence space of a replaced stream) would name new
		// messages.
		st.clampAge(c.name, c.ageLimit)
		if err := markLane(st, c.name, c.state); err != nil {
			return err
		}
	}
	return nil
}

// adoptWithLosses commits the checks with the losses they found in one
// transaction: a crash cannot keep the new ids (so the next check finds
// nothing) without the loss they replaced.
func adoptWithLosses(st *State, storeID string, checks []laneCheck) error {
	var ls []Loss
	for _, c := range checks {
		ls = append(ls, c.losses...)
	}
	st.lossMu.Lock()
	defer st.lossMu.Unlock()
	u, err := st.newLosses(ls)
	if err != nil {
		return err
	}
	if err := st.adoptIDs(storeID, checks, u); err != nil {
		return err
	}
	st.logLosses(u.added)
	return nil
}

// checkLane checks one stream, seen as its reconcile saw it.
func checkLane(ctx context.Context, js jetstream.JetStream, st *State, name string, opened time.Time, seen seenLane, backupOK bool, log *slog.Logger) (laneCheck, string, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return laneCheck{}, "", fmt.Errorf("check stream %s: %w", name, err)
	}
	info := s.CachedInfo()
	state := info.State
	var before laneMark
	known, err := st.GetJSON(markKey(name), &before)
	if err != nil {
		return laneCheck{}, "", err
	}
	st.mu.Lock()
	have := st.laneIDs(name)
	st.mu.Unlock()
	// The first check of a process draws a new epoch whatever the store
	// says: it may be a restored copy (a backup, an old SD card) whose
	// ids past its end were sent after the copy was made, and nothing in
	// the copy can tell. Later checks (a JetStream restart) know what this
	// process sent. A stream this process has just created is no
	// exception: with sync other than always, a power cut soon after its
	// creation can leave nats-server a meta.inf from another write than
	// its blocks (it warns "checksums do not match"), and keeping the
	// creation epoch then sent stored readings twice (chaos powercut-1s).
	first := st.firstCheck(name)
	cursor0, issued := st.Cursor(name), st.issuedBound(name)
	cursor := cursor0
	meta, metaOK := idsFromMetadata(info.Config.Metadata)
	fresh := metaOK && seen.created && meta.StreamID == seen.id
	ids := meta
	c := laneCheck{name: name, cfg: info.Config}
	var why []string
	replaced := false
	switch {
	case !metaOK:
		// A stream from before id epochs: state.db has the ids it was
		// forwarded with.
		ids = have
		if ids.StreamID == "" {
			ids.StreamID = newStoreID()
		}
	case have.StreamID == "":
		// Keyed on the stream id rather than on state.db being new, so a
		// crash between creating state.db and this check changes nothing.
		// A stream this call created carries the fresh state.db's id, not
		// the store's: another stream restores that.
		if !fresh {
			c.storeID = info.Config.Metadata[mdStoreID]
		}
		if backupOK {
			if cursor, err = restoreCursor(ctx, js, name, meta.StreamID); err != nil {
				log.Error("cannot read the cursor backup; forwarding the stream from its start (the hub drops what it has within its duplicate window)", "stream", name, "err", err)
			}
		}
		if state.LastSeq > 0 || cursor > 0 { // not just a first start
			sid := cmp.Or(c.storeID, st.StoreID())
			d := fmt.Sprintf("stream %s: state.db was fresh; restored store id %s, %d id epochs and cursor %d from the JetStream store", name, sid, len(meta.Epochs), cursor)
			log.Warn("restored forwarding state from the JetStream store", "stream", name, "store_id", sid, "epochs", len(meta.Epochs), "cursor", cursor)
			c.event(EventStateRestored, d)
		}
	case meta.StreamID == have.StreamID && have.Gen > meta.Gen:
		// The last metadata write failed (disk full?): state.db is newer.
		ids = have
	case meta.StreamID != have.StreamID:
		replaced, cursor, issued = true, 0, 0
		if before.LastSeq == 0 && cursor0 == 0 {
			break // the old one held nothing: nothing to tell
		}
		d := fmt.Sprintf("stream %s was recreated (stream id %s; state.db knew %q at seq %d..%d, forwarded up to %d): forwarding it from its start under its own message ids", name, meta.StreamID, have.StreamID, before.FirstSeq, before.LastSeq, cursor0)
		log.Warn("local stream recreated; forwarding it from the start", "stream", name, "detail", d)
		c.event(EventStreamRecreated, d)
		if known && before.LastSeq > cursor0 {
			from := max(cursor0+1, before.FirstSeq)
			c.losses = append(c.losses, Loss{Stream: name, From: from, To: before.LastSeq, Count: min(before.Msgs, before.LastSeq-from+1), Cause: causeDeleted})
		}
	}
	last, err := restoredEnd(ctx, s, state, seen.end, opened, seen.at)
	if err != nil {
		return laneCheck{}, "", err
	}
	if lost := state.Lost; lost != nil && len(lost.Msgs) > 0 {
		why = append(why, fmt.Sprintf("server reports %d messages (%d bytes) lost to file damage, sequences %s", len(lost.Msgs), lost.Bytes, seqRange(lost.Msgs)))
		c.losses = append(c.losses, unacked(before, cursor0, lostRuns(name, causeServerLost, lost.Msgs))...)
	}
	// The hub acknowledged up to the cursor, the stream held up to the
	// mark: either beyond the end now means the tail is gone.
	end := cursor
	if known && !replaced {
		end = max(end, before.LastSeq)
	}
	if end > last {
		why = append(why, fmt.Sprintf("last sequence went back from %d to %d: %d acknowledged messages are gone", end, last, end-last))
		if known && !replaced {
			c.losses = append(c.losses, unacked(before, cursor0, []Loss{{Stream: name, From: last + 1, Cause: causeTailGone}})...)
		}
	} else if missing := missingMsgs(before, state); known && !replaced && missing > 0 {
		// Holes inside the range: nats-server rebuilt a damaged block
		// without them (or a local app deleted messages).
		why = append(why, fmt.Sprintf("%d messages are missing from inside the sequence range (damaged block file, or deleted by a local app)", missing))
	}
	var d string
	if len(why) > 0 {
		d = fmt.Sprintf("stream %s: %s (before: seq %d..%d, %d msgs at %s; now: seq %d..%d, %d msgs)", name, strings.Join(why, "; "),
			before.FirstSeq, before.LastSeq, before.Msgs, before.Time.Format(time.RFC3339), state.FirstSeq, state.LastSeq, state.Msgs)
		log.Error("local stream damaged; keeping what is left and serving on", "stream", name, "detail", d)
		c.event(EventStreamDamaged, d)
	}
	if cut := max(end, issued) > last; first || cut {
		cursor, issued = min(cursor, last), last
		ids.Epochs, ids.Gen = foldEpochs(addEpoch(ids.Epochs, last+1, state.FirstSeq), cursor), ids.Gen+1
		level := slog.LevelDebug
		if cut {
			level = slog.LevelInfo
		}
		log.Log(ctx, level, "new message-id epoch: sequences after the stream's end may have been sent with the old id (the stream was cut short, or this is a restored copy), so new messages there get a new one", "stream", name, "from_seq", last+1, "id", ids.Epochs[len(ids.Epochs)-1].ID, "appended_since_start", state.LastSeq-last)
	}
	c.ids, c.cursor, c.setCursor, c.issued, c.ageLimit, c.state = ids, cursor, cursor != cursor0, issued, last, state
	if replaced {
		c.ageLimit = 0
	}
	return c, d, nil
}

// event notes a recovery for commitLanes to record.
func (c *laneCheck) event(kind EventKind, detail string) {
	c.events = append(c.events, StateEvent{Kind: kind, Detail: detail})
}

// restoredEnd is the last sequence the stream held when the store was
// opened: the highest one stored before opened. Those after seenEnd, the
// stream's end when its reconcile saw it, were stored since. Messages a
// client appended between opened and that reconcile are walked back over
// (a handful: the time between the server's start and the reconcile; a
// burst local apps publish at READY, before the check, is all after
// seenEnd). now is when the reconcile saw seenEnd, so a clock stepped
// since (NTP on a gateway without RTC) changes nothing: a store time after
// it cannot be one of those, the wall clock went back since it was stored
// (such a gateway booting at 1970), so the message is restored, and the
// walk never runs down a whole stream of them.
func restoredEnd(ctx context.Context, s jetstream.Stream, state jetstream.StreamState, seenEnd uint64, opened, now time.Time) (uint64, error) {
	restored := func(t time.Time) bool { return t.Before(opened) || t.After(now) }
	if opened.IsZero() {
		return state.LastSeq, nil
	}
	top := min(state.LastSeq, seenEnd)
	if top == 0 || top == state.LastSeq && restored(state.LastTime) {
		return top, nil
	}
	for seq := top; seq >= state.FirstSeq && seq > 0; seq-- {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("check stream %s: read seq %d to find where the restored messages end: %w", s.CachedInfo().Config.Name, seq, err)
		}
		if restored(m.Time) {
			return seq, nil
		}
	}
	return state.FirstSeq - min(state.FirstSeq, 1), nil
}

// addEpoch starts a new epoch at from. Epochs starting at or after from
// are dropped (their sequences are gone and get reused), and so are epochs
// whose whole range lies before the stream's first sequence (no message of
// theirs can be sent again), so the list stays short. The first epoch
// covers every sequence before the second.
func addEpoch(eps []Epoch, from, firstSeq uint64) []Epoch {
	var out []Epoch
	for i, e := range eps {
		if e.From >= from {
			break
		}
		next := from
		if i+1 < len(eps) {
			next = min(next, eps[i+1].From)
		}
		if next > firstSeq {
			out = append(out, e)
		}
	}
	return append(out, Epoch{From: from, ID: newStoreID()})
}

// maxEpochs bounds a stream's epoch list. Every start that finds readings
// stored since the previous one adds an epoch, so an agent in a restart
// loop would otherwise grow it past nats-server's limit on stream metadata.
const maxEpochs = 256

// foldEpochs keeps the list at most maxEpochs long (when it can) by folding
// the oldest epochs whose sequences are all at or below the cursor into the
// newest of them. The forwarder never sends those again, except in a
// replay, and the folded epoch's id was never used for sequences before
// its start, so a replay sends ids the hub has not seen: never a loss, at
// worst a second copy of a reading the hub still holds. Epochs with
// sequences past the cursor keep their ids: resends of them must match.
func foldEpochs(eps []Epoch, cursor uint64) []Epoch {
	fold := len(eps) - maxEpochs // eps[:fold+1] become one
	for fold > 0 && eps[fold+1].From-1 > cursor {
		fold--
	}
	if fold <= 0 {
		return eps
	}
	return append([]Epoch{{From: eps[0].From, ID: eps[fold].ID}}, eps[fold+1:]...)
}

// missingMsgs is how many messages the stream should hold given what it
// held before, what limits removed from the front since, and what was
// appended since, minus what it holds.
func missingMsgs(before laneMark, now jetstream.StreamState) uint64 {
	want := before.Msgs
	if now.FirstSeq > before.FirstSeq {
		want -= min(want, now.FirstSeq-before.FirstSeq)
	}
	if now.LastSeq > before.LastSeq {
		want += now.LastSeq - before.LastSeq
	}
	if now.Msgs >= want {
		return 0
	}
	return want - now.Msgs
}

func markLane(st *State, name string, s jetstream.StreamState) error {
	return st.PutJSON(markKey(name), laneMark{FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, Msgs: s.Msgs, Time: time.Now().UTC()})
}

// seqRange prints a list of sequences compactly for a log line.
func seqRange(seqs []uint64) string {
	if len(seqs) == 0 {
		return ""
	}
	s := slices.Clone(seqs)
	slices.Sort(s)
	if len(s) == 1 {
		return fmt.Sprint(s[0])
	}
	return fmt.Sprintf("%d..%d", s[0], s[len(s)-1])
}
