package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/confkit"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

func TestEnsureStreamsCreateAndReconcile(t *testing.T) {
	ctx := context.Background()
	_, js := jsServer(t, t.TempDir(), testConfig("always", 64<<20))
	c := testConfig("always", 64<<20)
	mustOK(t, EnsureStreams(ctx, js, c), "create")
	mustOK(t, EnsureStreams(ctx, js, c), "idempotent")
	for _, want := range StreamConfigs(c) {
		s, err := js.Stream(ctx, want.Name)
		mustOK(t, err, want.Name)
		got := s.CachedInfo().Config
		if got.Storage != jetstream.FileStorage || got.Retention != jetstream.LimitsPolicy || got.Discard != jetstream.DiscardOld ||
			got.Replicas != 1 || got.MaxBytes != want.MaxBytes || got.MaxAge != 0 || got.PersistMode != jetstream.DefaultPersistMode {
			t.Fatalf("%s created as %+v", want.Name, got)
		}
	}
	publishN(t, js, "telemetry.t", 100, 128)
	publishN(t, js, "alerts.a", 10, 128)

	// Raising limits applies in place, data kept; the age limit never
	// reaches JetStream (the Ager enforces it).
	c.MaxBytes, c.MaxAge = 128<<20, 48*time.Hour
	mustOK(t, EnsureStreams(ctx, js, c), "update limits")
	st := streamState(t, js, StreamTelemetry)
	s, _ := js.Stream(ctx, StreamTelemetry)
	if st.Msgs != 100 || s.CachedInfo().Config.MaxAge != 0 || s.CachedInfo().Config.MaxBytes != StreamConfigs(c)[1].MaxBytes {
		t.Fatalf("after limit change: %d msgs, config %+v", st.Msgs, s.CachedInfo().Config)
	}
	if a := streamState(t, js, StreamAlerts); a.Msgs != 10 {
		t.Fatalf("ALERTS lost data on update: %d", a.Msgs)
	}
}

func TestEnsureStreamsRefusesWhatNeedsARecreate(t *testing.T) {
	ctx := context.Background()
	c := testConfig("always", 64<<20)
	cases := []struct {
		name   string
		mutate func(*jetstream.StreamConfig)
		want   string
	}{
		{"memory storage", func(s *jetstream.StreamConfig) { s.Storage = jetstream.MemoryStorage }, "Memory storage"},
		{"work queue", func(s *jetstream.StreamConfig) { s.Retention = jetstream.WorkQueuePolicy }, "retention"},
		{"async persist", func(s *jetstream.StreamConfig) { s.PersistMode = jetstream.AsyncPersistMode }, "persist_mode async"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, js := jsServer(t, t.TempDir(), c)
			sc := StreamConfigs(c)[1]
			tc.mutate(&sc)
			_, err := js.CreateStream(ctx, sc)
			mustOK(t, err, "precreate")
			publishN(t, js, "telemetry.x", 5, 10)
			err = EnsureStreams(ctx, js, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nats stream backup TELEMETRY") {
				t.Fatalf("want a refusal naming %q and the way out, got %v", tc.want, err)
			}
			if st := streamState(t, js, StreamTelemetry); st.Msgs != 5 {
				t.Fatalf("refusal touched data: %d msgs", st.Msgs)
			}
		})
	}
	t.Run("subjects taken by a local app", func(t *testing.T) {
		_, js := jsServer(t, t.TempDir(), c)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "APP", Subjects: []string{"telemetry.>"}, Storage: jetstream.FileStorage})
		mustOK(t, err, "app stream")
		if err := EnsureStreams(ctx, js, c); err == nil || !strings.Contains(err.Error(), "another local stream already captures telemetry.>") {
			t.Fatalf("overlap: %v", err)
		}
	})
}

func TestAsyncStreamsReported(t *testing.T) {
	ctx := context.Background()
	c := testConfig("always", 64<<20)
	_, js := jsServer(t, t.TempDir(), c)
	mustOK(t, EnsureStreams(ctx, js, c))
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "POS", Subjects: []string{"pos.>"}, Storage: jetstream.FileStorage, PersistMode: jetstream.AsyncPersistMode})
	mustOK(t, err, "async app stream")
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "PLC", Subjects: []string{"plc.>"}, Storage: jetstream.FileStorage})
	mustOK(t, err, "sync app stream")
	got, err := AsyncStreams(ctx, js)
	if err != nil || len(got) != 1 || got[0] != "POS" {
		t.Fatalf("AsyncStreams = %v, %v", got, err)
	}
}

func TestStatsBacklogAndEvictions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := testConfig("always", MinMaxBytes)
	c.MaxBytes = 4 << 20
	srv, js := jsServer(t, dir, c)
	mustOK(t, EnsureStreams(ctx, js, c))
	st := openTestState(t, filepath.Join(dir, "state.db"))
	w, err := NewWatcher(srv, js, st, c, slog.New(slog.DiscardHandler))
	mustOK(t, err)
	publishN(t, js, "telemetry.t", 100, 1000)
	st.SetCursor(StreamTelemetry, 40)
	w.Check(ctx)
	ls, err := Stats(ctx, js, st)
	mustOK(t, err)
	if len(ls) != 2 || ls[0].Stream != StreamAlerts || ls[1].Stream != StreamTelemetry {
		t.Fatalf("lanes: %+v", ls)
	}
	tl := ls[1]
	if tl.Messages != 100 || tl.FirstSeq != 1 || tl.LastSeq != 100 || tl.Cursor != 40 || tl.Backlog != 60 || tl.Oldest.IsZero() || tl.BacklogBytes == 0 || tl.Evicted != 0 {
		t.Fatalf("TELEMETRY stats: %+v", tl)
	}
	if ls[0].Messages != 0 || ls[0].Backlog != 0 || !ls[0].Oldest.IsZero() {
		t.Fatalf("empty ALERTS stats: %+v", ls[0])
	}
	// Overflow the ~3.6MiB TELEMETRY budget: the oldest go, and those above
	// the cursor count as evicted before forwarding, once, even when rounds
	// are asked for at the same time (the agent's loop and a direct caller).
	publishN(t, js, "telemetry.t", 5000, 1000)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { w.Check(ctx) })
	}
	wg.Wait()
	ls, err = Stats(ctx, js, st)
	mustOK(t, err)
	tl = ls[1]
	if tl.FirstSeq <= 41 {
		t.Fatalf("expected evictions past the cursor: %+v", tl)
	}
	if want := tl.FirstSeq - 41; tl.Evicted != want {
		t.Fatalf("evicted unforwarded = %d, want %d (first seq %d, cursor 40)", tl.Evicted, want, tl.FirstSeq)
	}
	if tl.Backlog != tl.Messages {
		t.Fatalf("everything left is backlog: %+v", tl)
	}
	h := w.Health()
	if h.DiskFull || h.JetStreamDisabled || h.SyncMode != "always" || h.StoreLimit != c.MaxFileStore() || h.StoreBytes == 0 || h.FSSize == 0 {
		t.Fatalf("health: %+v", h)
	}
}

// idsOf is the message-id prefix of each of stream's sequences from..to.
func idsOf(st *State, stream string, from, to uint64) []string {
	var out []string
	for seq := from; seq <= to; seq++ {
		out = append(out, st.MsgIDPrefix(stream, seq))
	}
	return out
}

// firstStart serves a JetStream store in dir with the agent streams,
// checked once against st, as at an agent's first start.
func firstStart(t *testing.T, dir string, c Config, st *State) (*server.Server, jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	srv, js := jsServer(t, dir, c)
	_, err := OpenStreams(ctx, js, st, c, time.Time{}, nil)
	mustOK(t, err)
	return srv, js
}

// siteStore is the agent streams in a JetStream store (sync always) and
// a fresh state.db beside it, after firstStart.
type siteStore struct {
	dir  string // the JetStream store
	path string // state.db
	c    Config
	st   *State
	srv  *server.Server
	js   jetstream.JetStream
}

func newSiteStore(t *testing.T, maxBytes confkit.Size) *siteStore {
	t.Helper()
	e := &siteStore{dir: t.TempDir(), path: filepath.Join(t.TempDir(), "state.db"), c: testConfig("always", maxBytes)}
	e.st = openTestState(t, e.path)
	e.srv, e.js = firstStart(t, e.dir, e.c, e.st)
	return e
}

// restartServer stops a jsServer and starts another on the same store, as
// a reboot of the gateway does; damage (if any) is applied in between.
func restartServer(t *testing.T, s *server.Server, dir string, c Config, damage func()) jetstream.JetStream {
	t.Helper()
	s.Shutdown()
	s.WaitForShutdown()
	if damage != nil {
		damage()
	}
	_, js := jsServer(t, dir, c)
	return js
}

// truncateBlock cuts the TELEMETRY block file to frac of its size, as a
// failing SD card or a bad fsck might, and removes the stream's index as a
// crash leaves it stale: nats-server then rebuilds the stream from the
// block and the last sequence goes back. (With the index intact it keeps
// the end and the lost tail becomes deleted sequences: no reuse.)
func truncateBlock(t *testing.T, dir string, frac float64) {
	t.Helper()
	msgs := filepath.Join(dir, "jetstream", "$G", "streams", StreamTelemetry, "msgs")
	blks, _ := filepath.Glob(filepath.Join(msgs, "*.blk"))
	if len(blks) != 1 {
		t.Fatalf("want one TELEMETRY block, have %v", blks)
	}
	fi, err := os.Stat(blks[0])
	mustOK(t, err)
	mustOK(t, os.Truncate(blks[0], int64(float64(fi.Size())*frac)))
	if err := os.Remove(filepath.Join(msgs, "index.db")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// A wiped JetStream store (a new TELEMETRY stream) is a new sequence space:
// reported as recreated, forwarded from its start (cursor 0), under ids of
// its own, so its messages never collide with the old stream's at the hub.
func TestOpenStreamsRecreatedStream(t *testing.T) {
	ctx := context.Background()
	c := testConfig("always", 16<<20)
	st := openTestState(t, filepath.Join(t.TempDir(), "state.db"))
	var old []string
	{
		_, js := jsServer(t, t.TempDir(), c)
		found, err := OpenStreams(ctx, js, st, c, time.Time{}, nil)
		if err != nil || len(found) != 0 || len(st.Events()) != 0 {
			t.Fatalf("a first start reported: %v %v %+v", found, err, st.Events())
		}
		publishN(t, js, "telemetry.t", 50, 10)
		old = idsOf(st, StreamTelemetry, 1, 3)
		st.SetCursor(StreamTelemetry, 50)
	}
	_, js := jsServer(t, t.TempDir(), c) // a wiped store
	found, err := OpenStreams(ctx, js, st, c, time.Time{}, nil)
	mustOK(t, err)
	if len(found) != 0 {
		t.Fatalf("a new stream is not damage: %v", found)
	}
	publishN(t, js, "telemetry.t", 3, 10)
	if got := idsOf(st, StreamTelemetry, 1, 3); slices.ContainsFunc(got, func(id string) bool { return slices.Contains(old, id) }) {
		t.Fatalf("new stream reuses ids: %v, old %v", got, old)
	}
	if st.Cursor(StreamTelemetry) != 0 {
		t.Fatalf("cursor %d: the new stream's messages would not be forwarded", st.Cursor(StreamTelemetry))
	}
	if evs := st.Events(); len(evs) != 1 || evs[0].Kind != EventStreamRecreated || !strings.Contains(evs[0].Detail, "TELEMETRY") {
		t.Fatalf("events: %+v", evs)
	}
	found, _ = OpenStreams(ctx, js, st, c, time.Time{}, nil)
	if len(found) != 0 || len(st.Events()) != 1 {
		t.Fatalf("reported twice: %v %+v", found, st.Events())
	}
}

// A truncated block takes the stream's tail: the sequences after the new
// end are reused by new messages, so they get a new id epoch, while the
// surviving messages keep the ids they were forwarded with and the cursor
// does not move back past what the hub has. The detection must not depend
// on the last known extent in state.db, which lags (here it was never
// recorded past 0, as when the agent dies within the flush interval): the
// ids the forwarder issued are what counts. This is the chaos run's stuck
// forwarder: new messages went out under the ids of lost ones and the hub
// dropped them as duplicates.
func TestOpenStreamsTruncatedTail(t *testing.T) {
	ctx := context.Background()
	e := newSiteStore(t, 16<<20)
	dir, c, st, srv, js := e.dir, e.c, e.st, e.srv, e.js
	publishN(t, js, "telemetry.t", 100, 100)
	sent := idsOf(st, StreamTelemetry, 1, 100) // forwarded, acks trailing
	st.SetCursor(StreamTelemetry, 20)
	js = restartServer(t, srv, dir, c, func() { truncateBlock(t, dir, 0.5) })
	last := streamState(t, js, StreamTelemetry).LastSeq
	if last <= 20 || last >= 100 {
		t.Fatalf("truncation left last seq %d, want inside 21..99", last)
	}
	found, err := OpenStreams(ctx, js, st, c, time.Time{}, nil)
	mustOK(t, err)
	if len(found) != 0 {
		// The cursor (20) and the mark (0) are below the end: nothing the
		// agent knows to be acknowledged is gone.
		t.Fatalf("reported as damage: %v", found)
	}
	if got := idsOf(st, StreamTelemetry, 1, last); !slices.Equal(got, sent[:last]) {
		t.Fatal("surviving messages changed ids: a resend would duplicate at the hub")
	}
	if id := st.MsgIDPrefix(StreamTelemetry, last+1); slices.Contains(sent, id) {
		t.Fatalf("seq %d reuses id %s the hub has seen", last+1, id)
	}
	if c := st.Cursor(StreamTelemetry); c != 20 {
		t.Fatalf("cursor %d, want 20", c)
	}
	s, err := js.Stream(ctx, StreamTelemetry)
	mustOK(t, err)
	meta, ok := idsFromMetadata(s.CachedInfo().Config.Metadata)
	if !ok || !slices.Equal(meta.Epochs, st.Epochs(StreamTelemetry)) {
		t.Fatalf("stream metadata %v, state %v: the epoch must live in the JetStream store", s.CachedInfo().Config.Metadata, st.Epochs(StreamTelemetry))
	}

	// Now with the cursor past the new end: acknowledged messages are gone
	// (reported), the cursor comes back to the end, not to 0.
	publishN(t, js, "telemetry.t", 100, 100)
	top := streamState(t, js, StreamTelemetry).LastSeq
	st.SetCursor(StreamTelemetry, top)
	before := idsOf(st, StreamTelemetry, 1, top)
	// A check while running (the watcher restarted JetStream) must not
	// take the ids reserved ahead of the sent ones: no epoch without a reset.
	epochs := st.Epochs(StreamTelemetry)
	_, err = OpenStreams(ctx, js, st, c, time.Time{}, nil)
	mustOK(t, err)
	if eps := st.Epochs(StreamTelemetry); !slices.Equal(eps, epochs) {
		t.Fatalf("epoch without a reset: %v, was %v", eps, epochs)
	}
	js = restartServer(t, srv, dir, c, func() { truncateBlock(t, dir, 0.5) })
	last = streamState(t, js, StreamTelemetry).LastSeq
	found, err = OpenStreams(ctx, js, st, c, time.Time{}, nil)
	mustOK(t, err)
	if len(found) != 1 || !strings.Contains(found[0], fmt.Sprintf("from %d to %d", top, last)) {
		t.Fatalf("damage not reported: %v", found)
	}
	if c := st.Cursor(StreamTelemetry); c != last {
		t.Fatalf("cursor %d, want %d (the new end: what the hub has is not resent)", c, last)
	}
	if got := idsOf(st, StreamTelemetry, 1, last); !slices.Equal(got, before[:last]) {
		t.Fatal("surviving messages changed ids")
	}
	if id := st.MsgIDPrefix(StreamTelemetry, last+1); slices.Contains(before, id) || slices.Contains(sent, id) {
		t.Fatalf("seq %d reuses an id the hub has seen", last+1)
	}
	if evs := st.Events(); len(evs) != 1 || evs[0].Kind != EventStreamDamaged {
		t.Fatalf("events: %+v", evs)
	}
}

// nats-server listens for clients before the agent checks its streams, so
// after a truncation a local app can append to the stream in between. Those
// messages are new: they must not be taken for the surviving tail (cursor
// clamped past them: never forwarded) nor keep the old epoch's ids (the hub
// has seen them: dropped as duplicates). This is the chaos run's truncated
// block cycle where two acked readings never reached the hub.
func TestOpenStreamsAppendedBeforeCheck(t *testing.T) {
	ctx := context.Background()
	e := newSiteStore(t, 16<<20)
	dir, c, st, srv, js := e.dir, e.c, e.st, e.srv, e.js
	publishN(t, js, "telemetry.t", 100, 100)
	sent := idsOf(st, StreamTelemetry, 1, 100)
	st.SetCursor(StreamTelemetry, 100) // all forwarded
	opened := time.Now()
	js = restartServer(t, srv, dir, c, func() { truncateBlock(t, dir, 0.5) })
	last := streamState(t, js, StreamTelemetry).LastSeq
	if last >= 100 {
		t.Fatalf("truncation left last seq %d", last)
	}
	publishN(t, js, "telemetry.t", 2, 100) // a client, before the check
	found, err := OpenStreams(ctx, js, st, c, opened, nil)
	mustOK(t, err)
	if len(found) != 1 || !strings.Contains(found[0], fmt.Sprintf("from 100 to %d", last)) {
		t.Fatalf("damage %v, want the tail from 100 to %d", found, last)
	}
	if c := st.Cursor(StreamTelemetry); c != last {
		t.Fatalf("cursor %d, want %d: seqs %d..%d were appended after the start and never forwarded", c, last, last+1, last+2)
	}
	for seq := last + 1; seq <= last+2; seq++ {
		if id := st.MsgIDPrefix(StreamTelemetry, seq); slices.Contains(sent, id) {
			t.Fatalf("new message at seq %d reuses id %s the hub has seen", seq, id)
		}
	}
	if got := idsOf(st, StreamTelemetry, 1, last); !slices.Equal(got, sent[:last]) {
		t.Fatal("surviving messages changed ids: a resend would duplicate at the hub")
	}
}

// A gateway without RTC boots with its clock behind the store times of
// what it held (1970 until NTP): every stored message looks "after the
// start". Those are restored messages, not ones appended since: the end
// stays the stream's last sequence, found without reading the stream back.
func TestRestoredEndClockBehindStore(t *testing.T) {
	ctx := context.Background()
	c := testConfig("always", 16<<20)
	st := openTestState(t, filepath.Join(t.TempDir(), "state.db"))
	_, js := firstStart(t, t.TempDir(), c, st)
	publishN(t, js, "telemetry.t", 50, 100)
	s, err := js.Stream(ctx, StreamTelemetry)
	mustOK(t, err)
	state := s.CachedInfo().State
	boot := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	end, err := restoredEnd(ctx, s, state, state.LastSeq, boot, boot.Add(time.Second))
	mustOK(t, err)
	if end != state.LastSeq {
		t.Fatalf("end %d, want the last sequence %d: stored messages taken for new ones", end, state.LastSeq)
	}
	// With the clock right, messages stored after the start are walked back over.
	end, err = restoredEnd(ctx, s, state, state.LastSeq, state.FirstTime.Add(-time.Hour), time.Now())
	mustOK(t, err)
	if end != state.FirstSeq-1 {
		t.Fatalf("end %d, want %d: every message was stored after the start", end, state.FirstSeq-1)
	}
	// Messages after the end the stream's reconcile saw were stored since,
	// whatever their store time says.
	end, err = restoredEnd(ctx, s, state, state.LastSeq-10, boot, boot.Add(time.Second))
	mustOK(t, err)
	if end != state.LastSeq-10 {
		t.Fatalf("end %d, want %d: messages stored after the reconcile taken for restored ones", end, state.LastSeq-10)
	}
}

// state.db lost (corrupt, deleted): the store id, the id epochs and the
// cursors come back from the JetStream store, so the forwarder resends at
// most what moved since the last backup, under the same ids.
func TestOpenStreamsRestoresFromJetStream(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := testConfig("always", 16<<20)
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := OpenState(path, nil)
	mustOK(t, err)
	srv, js := firstStart(t, dir, c, st)
	publishN(t, js, "telemetry.t", 60, 100)
	publishN(t, js, "alerts.a", 5, 100)
	ids := idsOf(st, StreamTelemetry, 1, 60)
	st.SetCursor(StreamTelemetry, 60)
	st.SetCursor(StreamAlerts, 5)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- st.Run(runCtx) }()
	stop() // a clean stop backs the cursors up
	mustOK(t, <-done)
	storeID := st.StoreID()
	mustOK(t, st.Close())
	mustOK(t, os.WriteFile(path, []byte("not a bbolt file at all"), 0o640))

	js = restartServer(t, srv, dir, c, nil)
	st, err = OpenState(path, nil)
	mustOK(t, err)
	if st.StoreID() == storeID {
		t.Fatal("expected a fresh state.db")
	}
	// The agent dies before the check: the next start must still restore.
	mustOK(t, st.Close())
	st = openTestState(t, path)
	found, err := OpenStreams(ctx, js, st, c, time.Time{}, nil)
	mustOK(t, err)
	if len(found) != 0 {
		t.Fatalf("reported as damage: %v", found)
	}
	if st.StoreID() != storeID {
		t.Fatalf("store id %s, want %s back", st.StoreID(), storeID)
	}
	if a, b := st.Cursor(StreamTelemetry), st.Cursor(StreamAlerts); a != 60 || b != 5 {
		t.Fatalf("cursors %d/%d, want 60/5", a, b)
	}
	if got := idsOf(st, StreamTelemetry, 1, 60); !slices.Equal(got, ids) {
		t.Fatal("ids changed: resends would not be dropped by the hub")
	}
	if id := st.MsgIDPrefix(StreamTelemetry, 61); slices.Contains(ids, id) {
		t.Fatal("what the old state.db issued past the end is unknown: seq 61 must get a new epoch")
	}
	kinds := []EventKind{}
	for _, e := range st.Events() {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Contains(kinds, EventStateRestored) {
		t.Fatalf("events: %v", kinds)
	}
}

// A stream from before id epochs (no metadata) keeps the store id its
// messages were forwarded with, and gets its identity written.
func TestOpenStreamsUpgrade(t *testing.T) {
	ctx := context.Background()
	c := testConfig("always", 16<<20)
	st := openTestState(t, filepath.Join(t.TempDir(), "state.db"))
	_, js := jsServer(t, t.TempDir(), c)
	for _, sc := range StreamConfigs(c) {
		_, err := js.CreateStream(ctx, sc)
		mustOK(t, err)
	}
	publishN(t, js, "telemetry.t", 5, 10)
	st.SetCursor(StreamTelemetry, 5)
	_, err := OpenStreams(ctx, js, st, c, time.Time{}, nil)
	mustOK(t, err)
	if id := st.MsgIDPrefix(StreamTelemetry, 3); id != st.StoreID() || st.Cursor(StreamTelemetry) != 5 {
		t.Fatalf("id %s (store id %s), cursor %d", id, st.StoreID(), st.Cursor(StreamTelemetry))
	}
	s, err := js.Stream(ctx, StreamTelemetry)
	mustOK(t, err)
	if md := s.CachedInfo().Config.Metadata; md[mdStoreID] != st.StoreID() || md[mdStreamID] == "" {
		t.Fatalf("metadata %v", md)
	}
}

func TestAddEpoch(t *testing.T) {
	eps := []Epoch{{1, "a"}, {100, "b"}, {200, "c"}}
	got := addEpoch(eps, 150, 1)
	if len(got) != 3 || got[0] != eps[0] || got[1] != eps[1] || got[2].From != 150 {
		t.Fatalf("superseded epoch kept or history lost: %v", got)
	}
	got = addEpoch(eps, 300, 250) // only c still has messages
	if len(got) != 2 || got[0] != eps[2] || got[1].From != 300 {
		t.Fatalf("pruning: %v", got)
	}
	l := laneIDs{Epochs: got}
	if l.idFor(260) != "c" || l.idFor(300) != got[1].ID || l.idFor(1) != "c" {
		t.Fatalf("idFor over %v", got)
	}
}

// A restart loop adds an epoch per start; the list stays bounded by
// folding only epochs the cursor has passed, into the newest of them.
func TestFoldEpochs(t *testing.T) {
	var eps []Epoch
	for i := range maxEpochs + 10 {
		eps = append(eps, Epoch{From: uint64(1 + 10*i), ID: fmt.Sprint("e", i)})
	}
	if got := foldEpochs(eps[:maxEpochs], 1<<40); len(got) != maxEpochs {
		t.Fatalf("folded a list within the bound: %d epochs", len(got))
	}
	got := foldEpochs(slices.Clone(eps), 1<<40)
	l := laneIDs{Epochs: got}
	if len(got) != maxEpochs || l.idFor(1) != "e10" || l.idFor(101) != "e10" || l.idFor(111) != "e11" || l.idFor(10*(maxEpochs+9)+1) != fmt.Sprint("e", maxEpochs+9) {
		t.Fatalf("folded to %d epochs: %v", len(got), got[:3])
	}
	// Epoch 3 holds sequences past the cursor: it and later ones keep their ids.
	got = foldEpochs(slices.Clone(eps), 30)
	l = laneIDs{Epochs: got}
	if len(got) != maxEpochs+8 || l.idFor(1) != "e2" || l.idFor(31) != "e3" {
		t.Fatalf("cursor 30: %d epochs, %v", len(got), got[:3])
	}
	if got := foldEpochs(slices.Clone(eps), 5); len(got) != len(eps) {
		t.Fatalf("cursor inside the first epoch: folded to %d", len(got))
	}
}

// A deleted agent stream is recreated by the next check and the
// unforwarded messages the delete took are recorded as a loss; while it
// cannot be recreated (another stream took its subjects) it is reported
// missing, which status shows as down.
func TestWatcherRecreatesDeletedStream(t *testing.T) {
	ctx := context.Background()
	e := newWatched(t)
	e.backlog(t)
	js, st, w := e.js, e.st, e.w

	mustOK(t, js.DeleteStream(ctx, StreamTelemetry), "delete")
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "THIEF", Subjects: []string{"telemetry.>"}})
	mustOK(t, err, "another stream on telemetry.>")
	h := w.Check(ctx)
	if len(h.Missing) != 1 || h.Missing[0] != StreamTelemetry || !h.Degraded() || len(h.WriteErrors) != 0 || h.Recreated != 0 {
		t.Fatalf("health while TELEMETRY cannot be recreated: %+v", h)
	}
	mustOK(t, js.DeleteStream(ctx, "THIEF"), "delete THIEF")
	h = w.Check(ctx)
	if len(h.Missing) != 0 || h.Recreated != 1 {
		t.Fatalf("health after the recreation: %+v", h)
	}
	if _, err := js.Publish(ctx, "telemetry.t", nil); err != nil {
		t.Fatalf("publish after the recreation: %v", err)
	}
	ls := st.Losses()
	if len(ls) != 1 || ls[0].Stream != StreamTelemetry || ls[0].From != 11 || ls[0].To != 30 || ls[0].Count != 20 {
		t.Fatalf("losses: %+v", ls)
	}
	if st.Cursor(StreamTelemetry) != 0 {
		t.Fatalf("cursor %d after the recreation, want 0 (a new sequence space)", st.Cursor(StreamTelemetry))
	}
}

// nats-server deletes a stream by renaming its directory to ".NAME" and
// removing that in the background; health's stream checks list it
// meanwhile as a stream that "could not be recovered". That is the delete
// still under way, not a write error: the watcher recreates the stream and
// does not restart JetStream over it.
func TestWatcherIgnoresDeletedStreamDirBeingRemoved(t *testing.T) {
	ctx := context.Background()
	e := newWatched(t)
	js, w := e.js, e.w
	w.Check(ctx)

	mustOK(t, js.DeleteStream(ctx, StateStream), "delete")
	// What the background removal has not finished yet.
	mustOK(t, os.MkdirAll(filepath.Join(e.dir, "jetstream", "$G", "streams", "."+StateStream), 0o755))
	h := w.Check(ctx)
	if len(h.WriteErrors) != 0 || h.Recoveries != 0 || h.Recreated != 1 {
		t.Fatalf("health after the cursor backup stream was deleted: %+v", h)
	}
	if _, err := js.Stream(ctx, StateStream); err != nil {
		t.Fatalf("cursor backup stream after the check: %v", err)
	}
}
