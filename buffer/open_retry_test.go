package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/nats-io/nats.go/jetstream"
)

// failNthLookup fails the nth look-up of one stream, as a request timing
// out under load does.
type failNthLookup struct {
	jetstream.JetStream
	stream string
	nth, n int
}

func (f *failNthLookup) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if name == f.stream {
		if f.n++; f.n == f.nth {
			return nil, errors.New("injected: request timed out")
		}
	}
	return f.JetStream.Stream(ctx, name)
}

// deleteStream deletes an agent stream and waits until nats-server has
// removed its directory, as the watcher does before recreating it.
func deleteStream(t *testing.T, js jetstream.JetStream, dir, name string) {
	t.Helper()
	mustOK(t, js.DeleteStream(context.Background(), name), "delete ", name)
	testkit.WaitFor(t, 5*time.Second, func() error {
		if m, _ := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", name)); len(m) > 0 {
			return fmt.Errorf("%s still on disk", m[0])
		}
		return nil
	})
}

// A start whose check fails after an earlier stream's check found a loss
// (here TELEMETRY's look-up times out after ALERTS was found recreated)
// commits nothing; the retry records the loss and the event once.
func TestOpenStreamsRetryRecordsLossOnce(t *testing.T) {
	ctx := context.Background()
	e := newSiteStore(t, 4<<20)
	publishN(t, e.js, "alerts.a", 10, 10)
	e.st.SetCursor(StreamAlerts, 2)
	_, err := OpenStreams(ctx, e.js, e.st, e.c, time.Now(), nil) // marks seq 1..10
	mustOK(t, err, "check with the backlog")
	deleteStream(t, e.js, e.dir, StreamAlerts)

	// The second look-up of TELEMETRY is its check's.
	_, err = OpenStreams(ctx, &failNthLookup{JetStream: e.js, stream: StreamTelemetry, nth: 2}, e.st, e.c, time.Now(), nil)
	if err == nil {
		t.Fatal("the check with a failing look-up succeeded")
	}
	if n := e.st.LostTotal(StreamAlerts); n != 0 {
		t.Errorf("a failed check recorded %d lost messages; want nothing before the check commits", n)
	}
	_, err = OpenStreams(ctx, e.js, e.st, e.c, time.Now(), nil)
	mustOK(t, err, "retry")
	if n := e.st.LostTotal(StreamAlerts); n != 8 {
		t.Errorf("lost ALERTS messages after the retry: %d, want the 8 unforwarded ones", n)
	}
	var recreated int
	for _, ev := range e.st.Events() {
		if ev.Kind == EventStreamRecreated {
			recreated++
		}
	}
	if recreated != 1 {
		t.Errorf("%d %s events, want 1: %+v", recreated, EventStreamRecreated, e.st.Events())
	}
	e.st.mu.Lock()
	again := e.st.dirtyRecs[string(bMisc)][keyLosses]
	e.st.mu.Unlock()
	if again {
		t.Error("the loss records the check committed are queued for the next flush again")
	}
}

// state.db lost and TELEMETRY deleted while the agent was down: the store
// id comes back from ALERTS' metadata, and the TELEMETRY this start
// creates gets it too, not the fresh state.db's.
func TestOpenStreamsKeepsStoreIDWhenStateLostAndStreamMissing(t *testing.T) {
	ctx := context.Background()
	e := newSiteStore(t, 4<<20)
	publishN(t, e.js, "alerts.a", 3, 10)
	publishN(t, e.js, "telemetry.t", 3, 10)
	want := e.st.StoreID()
	mustOK(t, e.st.Close(), "close state.db")
	mustOK(t, os.Remove(e.path), "lose state.db")
	deleteStream(t, e.js, e.dir, StreamTelemetry)

	st := openTestState(t, e.path)
	if st.StoreID() == want {
		t.Fatal("a fresh state.db has the old store id")
	}
	_, err := OpenStreams(ctx, e.js, st, e.c, time.Now(), nil)
	mustOK(t, err, "start")
	if got := st.StoreID(); got != want {
		t.Errorf("store id %s after the start, want the store's %s", got, want)
	}
	for _, name := range Lanes {
		s, err := e.js.Stream(ctx, name)
		mustOK(t, err, name)
		if got := s.CachedInfo().Config.Metadata[mdStoreID]; got != want {
			t.Errorf("stream %s metadata store id %s, want %s", name, got, want)
		}
	}
	again := openTestState(t, filepath.Join(t.TempDir(), "state.db"))
	_, err = OpenStreams(ctx, e.js, again, e.c, time.Now(), nil)
	mustOK(t, err, "start with another lost state.db")
	if got := again.StoreID(); got != want {
		t.Errorf("store id %s restored at the next lost state.db, want %s", got, want)
	}
}

// failFound fails look-ups of a stream that exists while failing is set:
// the check of a stream just created times out, its creation did not.
type failFound struct {
	jetstream.JetStream
	stream  string
	failing bool
}

func (f *failFound) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := f.JetStream.Stream(ctx, name)
	if err == nil && name == f.stream && f.failing {
		return nil, errors.New("injected: request timed out")
	}
	return s, err
}

// A watcher round that recreates a deleted stream but fails to check it
// leaves a stream state.db does not know, which the forwarder holds: the
// next round finds it Unchecked and checks it again, so forwarding
// resumes. Without that, the stream was found and never checked again.
func TestWatcherRetriesAFailedRecreateCheck(t *testing.T) {
	ctx := context.Background()
	e := newSiteStore(t, 4<<20)
	fj := &failFound{JetStream: e.js, stream: StreamTelemetry}
	w, err := NewWatcher(e.srv, fj, e.st, e.c, slog.New(slog.DiscardHandler))
	mustOK(t, err)
	publishN(t, e.js, "telemetry.t", 10, 10)
	e.st.SetCursor(StreamTelemetry, 2)
	w.Check(ctx) // marks seq 1..10
	deleteStream(t, e.js, e.dir, StreamTelemetry)

	fj.failing = true
	w.Check(ctx)
	fj.failing = false
	s, err := e.js.Stream(ctx, StreamTelemetry)
	mustOK(t, err, "the round recreated TELEMETRY")
	if e.st.SameStream(StreamTelemetry, s.CachedInfo().Config.Metadata) {
		t.Fatal("the failed check adopted the new stream's ids")
	}
	if h := w.Check(ctx); len(h.Unchecked) != 0 || len(h.Missing) != 0 {
		t.Fatalf("after the retry round: unchecked %v, missing %v", h.Unchecked, h.Missing)
	}
	s, err = e.js.Stream(ctx, StreamTelemetry)
	mustOK(t, err)
	if !e.st.SameStream(StreamTelemetry, s.CachedInfo().Config.Metadata) {
		t.Fatal("the next round did not check the recreated stream: the forwarder holds it for good")
	}
	if n := e.st.LostTotal(StreamTelemetry); n != 8 {
		t.Errorf("lost TELEMETRY readings: %d, want the 8 the deleted stream held unforwarded", n)
	}
}
