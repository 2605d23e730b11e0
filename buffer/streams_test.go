package buffer

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
			got.Replicas != 1 || got.MaxBytes != want.MaxBytes || got.MaxAge != c.MaxAge || got.PersistMode != jetstream.DefaultPersistMode {
			t.Fatalf("%s created as %+v", want.Name, got)
		}
	}
	publishN(t, js, "telemetry.t", 100, 128)
	publishN(t, js, "alerts.a", 10, 128)

	// Raising limits and shortening the age applies in place, data kept.
	c.MaxBytes, c.MaxAge = 128<<20, 48*time.Hour
	mustOK(t, EnsureStreams(ctx, js, c), "update limits")
	st := streamState(t, js, StreamTelemetry)
	s, _ := js.Stream(ctx, StreamTelemetry)
	if st.Msgs != 100 || s.CachedInfo().Config.MaxAge != 48*time.Hour || s.CachedInfo().Config.MaxBytes != StreamConfigs(c)[1].MaxBytes {
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
	c := testConfig("always", 1<<20) // TELEMETRY gets 1MiB - 1MiB/10... at least 1MiB for ALERTS
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
	// the cursor count as evicted before forwarding.
	publishN(t, js, "telemetry.t", 5000, 1000)
	w.Check(ctx)
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

// A stream whose sequence went backwards (wiped, reset, a power cut with an
// interval sync) is reported, its cursor pulled back and the store id
// rotated, so new messages cannot reuse ids the hub has already seen.
func TestCheckStreamsDetectsReset(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := testConfig("always", 16<<20)
	st := openTestState(t, filepath.Join(t.TempDir(), "state.db"))
	{
		_, js := jsServer(t, dir, c)
		mustOK(t, EnsureStreams(ctx, js, c))
		publishN(t, js, "telemetry.t", 50, 10)
		found, err := CheckStreams(ctx, js, st, slog.New(slog.DiscardHandler))
		if err != nil || len(found) != 0 {
			t.Fatalf("healthy streams reported: %v %v", found, err)
		}
		st.SetCursor(StreamTelemetry, 50)
	}
	id := st.StoreID()
	_, js := jsServer(t, t.TempDir(), c) // a wiped store
	mustOK(t, EnsureStreams(ctx, js, c))
	publishN(t, js, "telemetry.t", 3, 10)
	found, err := CheckStreams(ctx, js, st, slog.New(slog.DiscardHandler))
	mustOK(t, err)
	if len(found) != 1 || !strings.Contains(found[0], "from 50 to 3") || !strings.Contains(found[0], "TELEMETRY") {
		t.Fatalf("reset not reported: %v", found)
	}
	if st.StoreID() == id || st.Cursor(StreamTelemetry) != 3 {
		t.Fatalf("after reset: store id %s (old %s), cursor %d", st.StoreID(), id, st.Cursor(StreamTelemetry))
	}
	if evs := st.Events(); len(evs) != 1 || evs[0].Kind != EventStreamDamaged {
		t.Fatalf("events: %+v", evs)
	}
	found, _ = CheckStreams(ctx, js, st, slog.New(slog.DiscardHandler))
	if len(found) != 0 {
		t.Fatalf("reported twice: %v", found)
	}
}
