package buffer

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A start that creates the agent's streams draws a new epoch at its first
// check like any start (chaos powercut-1s sent readings twice when the
// creation epoch was kept: a power cut soon after the creation can leave
// a meta.inf from another write than the blocks), and commits every
// stream's identity to its metadata and state.db. The next process draws
// another: it cannot tell a restored copy from the store it copied.
func TestOpenStreamsDrawsAnEpochAtEveryStart(t *testing.T) {
	ctx := context.Background()
	c := testConfig("always", 16<<20)
	dir, path := t.TempDir(), filepath.Join(t.TempDir(), "state.db")
	st := openTestState(t, path)
	srv, js := jsServer(t, dir, c)
	found, err := OpenStreams(ctx, js, st, c, time.Time{}, nil)
	if err != nil || len(found) != 0 {
		t.Fatalf("a first start: %v %v", found, err)
	}
	if _, err := js.Stream(ctx, StateStream); err != nil {
		t.Fatalf("cursor backup stream: %v", err)
	}
	first := map[string]string{}
	for _, name := range Lanes {
		s, err := js.Stream(ctx, name)
		mustOK(t, err)
		md := s.CachedInfo().Config.Metadata
		eps := st.Epochs(name)
		if len(eps) != 1 || eps[0].ID == md[mdStreamID] || md[mdGen] != "1" || md[mdStoreID] != st.StoreID() {
			t.Fatalf("%s: epochs %+v, metadata %v: want one epoch drawn after the creation's (gen 1, store id %s)", name, eps, md, st.StoreID())
		}
		first[name] = eps[0].ID
	}
	publishN(t, js, "telemetry.t", 3, 10)
	mustOK(t, st.Close())

	js = restartServer(t, srv, dir, c, nil)
	st = openTestState(t, path)
	_, err = OpenStreams(ctx, js, st, c, time.Time{}, nil)
	mustOK(t, err)
	eps := st.Epochs(StreamTelemetry)
	if len(eps) != 2 || eps[0].ID != first[StreamTelemetry] || eps[1].From != 4 || eps[1].ID == first[StreamTelemetry] {
		t.Fatalf("second start: epochs %+v: want the first start's epoch for 1..3 and a new one from 4", eps)
	}
	if eps := st.Epochs(StreamAlerts); len(eps) != 1 || eps[0].ID == first[StreamAlerts] {
		t.Fatalf("second start, empty ALERTS: epochs %+v: want one new epoch", eps)
	}
}

// CreateStreams creates the streams state.db has never seen without
// looking them up first (a first start: one request less before READY),
// looks up the ones it knows, and falls back to the lookup when a stream
// it does not know exists (state.db lost): that stream is kept as it is,
// readings and identity, and its check restores from it.
func TestCreateStreamsLooksUpOnlyKnownStreams(t *testing.T) {
	ctx := context.Background()
	c := testConfig("always", 16<<20)
	dir := t.TempDir()
	srv, js := jsServer(t, dir, c)
	nc, _ := testkit.Connect(t, "", nats.InProcessServer(srv))
	requests := func(t *testing.T, do func()) (lookups, creates int) {
		t.Helper()
		for subj, k := range testkit.Publishes(t, nc, "$JS.API.STREAM.>", do) {
			switch {
			case strings.HasPrefix(subj, "$JS.API.STREAM.INFO."):
				lookups += k
			case strings.HasPrefix(subj, "$JS.API.STREAM.CREATE."):
				creates += k
			}
		}
		return lookups, creates
	}
	open := func(st *State) *Opening {
		o, err := CreateStreams(ctx, js, st, c, nil)
		mustOK(t, err, "CreateStreams")
		return o
	}

	st := openTestState(t, filepath.Join(t.TempDir(), "state.db"))
	var o *Opening
	if l, cr := requests(t, func() { o = open(st) }); l != 0 || cr != len(Lanes) {
		t.Fatalf("first start: %d lookups, %d creates; want 0 and %d", l, cr, len(Lanes))
	}
	_, err := o.Check(ctx, time.Time{})
	mustOK(t, err)
	publishN(t, js, "telemetry.t", 5, 10)
	ids := map[string]string{}
	for _, name := range Lanes {
		ids[name] = st.laneIDs(name).StreamID
	}

	if l, cr := requests(t, func() { open(st) }); l != len(Lanes) || cr != 0 {
		t.Fatalf("known streams: %d lookups, %d creates; want %d and 0", l, cr, len(Lanes))
	}

	lost := openTestState(t, filepath.Join(t.TempDir(), "state.db"))
	if l, cr := requests(t, func() { o = open(lost) }); l != len(Lanes) || cr != len(Lanes) {
		t.Fatalf("state.db lost: %d lookups, %d creates; want %d refused creates, then %d lookups", l, cr, len(Lanes), len(Lanes))
	}
	_, err = o.Check(ctx, time.Time{})
	mustOK(t, err)
	for _, name := range Lanes {
		if got := lost.laneIDs(name).StreamID; got != ids[name] {
			t.Errorf("%s: stream id %s after state.db was lost, want the stream's own %s", name, got, ids[name])
		}
	}
	s, err := js.Stream(ctx, StreamTelemetry)
	mustOK(t, err)
	if n := s.CachedInfo().State.Msgs; n != 5 {
		t.Fatalf("TELEMETRY holds %d readings after the refused create, want 5", n)
	}
}

// A check after the first in a process (JetStream restarted, a stream
// recreated) runs while the forwarder sends past the stream's end, so it
// leaves no pending end: should it fail, a later check that measured from
// that end would pull the cursor back over readings the hub has and send
// them again under a new epoch, and report damage there is none of.
func TestRecheckLeavesNoPendingEnd(t *testing.T) {
	ctx := context.Background()
	c := testConfig("always", 16<<20)
	path := filepath.Join(t.TempDir(), "state.db")
	st := openTestState(t, path)
	_, js := firstStart(t, t.TempDir(), c, st)
	forward := func(st *State, to uint64) {
		for seq := uint64(1); seq <= to; seq++ {
			st.MsgIDPrefix(StreamTelemetry, seq)
		}
		st.SetCursor(StreamTelemetry, to)
	}
	publishN(t, js, "telemetry.t", 10, 10)
	forward(st, 10)
	// A re-check whose check never runs (it failed).
	_, err := CreateStreams(ctx, js, st, c, nil)
	mustOK(t, err)
	publishN(t, js, "telemetry.t", 10, 10)
	forward(st, 20)
	epochs := st.Epochs(StreamTelemetry)

	check := func(what string, st *State, cursor uint64, epochs []Epoch) {
		t.Helper()
		if got := st.Cursor(StreamTelemetry); got != cursor {
			t.Errorf("%s: cursor %d, want %d: readings the hub has would be sent again", what, got, cursor)
		}
		if got := st.Epochs(StreamTelemetry); len(got) != len(epochs) || got[len(got)-1].From != epochs[len(epochs)-1].From {
			t.Errorf("%s: epochs %+v, want the last to start at %d as in %+v", what, got, epochs[len(epochs)-1].From, epochs)
		}
		for _, e := range st.Events() {
			if e.Kind == EventStreamDamaged {
				t.Errorf("%s: damage reported: %s", what, e.Detail)
			}
		}
	}
	_, err = OpenStreams(ctx, js, st, c, time.Now(), nil)
	mustOK(t, err)
	check("the next check in the process", st, 20, epochs)

	// The next start draws its own epoch after the end, and nothing else.
	mustOK(t, st.Close())
	next := openTestState(t, path)
	_, err = OpenStreams(ctx, js, next, c, time.Now(), nil)
	mustOK(t, err)
	check("the next start", next, 20, append(epochs, Epoch{From: 21}))
}

// A stream state.db has never seen is created without a lookup first; an
// existing one can be refused for storage rather than for its name
// (nats-server counts the storage a new stream would reserve before it
// looks at the name), and is then looked up like any other: a lost
// state.db beside a local app's stream that reserves storage too still
// starts, on the streams it has.
func TestCreateStreamsFallsBackWhenRefusedForStorage(t *testing.T) {
	ctx := context.Background()
	c := testConfig("always", 8<<20)
	st := openTestState(t, filepath.Join(t.TempDir(), "state.db"))
	_, js := firstStart(t, t.TempDir(), c, st)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.>"}, Storage: jetstream.FileStorage, MaxBytes: 1 << 20})
	mustOK(t, err, "the local app's stream")

	lost := openTestState(t, filepath.Join(t.TempDir(), "state.db"))
	_, err = OpenStreams(ctx, js, lost, c, time.Now(), nil)
	mustOK(t, err, "a start with state.db lost")
	for _, name := range Lanes {
		if got, want := lost.laneIDs(name).StreamID, st.laneIDs(name).StreamID; got != want {
			t.Errorf("%s: stream id %s, want the stream's own %s", name, got, want)
		}
	}
}
