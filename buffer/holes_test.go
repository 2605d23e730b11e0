package buffer

import (
	"context"
	"log/slog"
	"testing"
)

// Messages that vanish from inside a stream while the agent runs (what
// nats-server does with the damaged records of an older block it reads,
// simulated here by deleting them by sequence, as a local admin could)
// are a loss: each missing sequence after the cursor is recorded exactly
// once, across rounds, an acknowledgement and a restart; those the hub
// already has are not.
func TestWatcherRecordsInteriorHoles(t *testing.T) {
	ctx := context.Background()
	e := newWatched(t)
	e.backlog(t)
	js, st, w := e.js, e.st, e.w
	s, err := js.Stream(ctx, StreamTelemetry)
	mustOK(t, err)
	for _, q := range []uint64{5, 15, 16, 20} {
		mustOK(t, s.DeleteMsg(ctx, q), "delete", q)
	}

	w.Check(ctx)
	want := []Loss{{From: 15, To: 16, Count: 2}, {From: 20, To: 20, Count: 1}}
	assertLosses(t, st, want)
	w.Check(ctx)
	assertLosses(t, st, want)

	_, err = st.AckLosses()
	mustOK(t, err)
	w.Check(ctx)
	assertLosses(t, st, nil)

	// A restart: the holes seen are in state.db, not in the watcher.
	mustOK(t, st.Close())
	st = openTestState(t, e.path)
	w, err = NewWatcher(e.srv, js, st, e.c, slog.New(slog.DiscardHandler))
	mustOK(t, err)
	w.Check(ctx)
	assertLosses(t, st, nil)
	mustOK(t, s.DeleteMsg(ctx, 25), "delete 25")
	w.Check(ctx)
	assertLosses(t, st, []Loss{{From: 25, To: 25, Count: 1}})
	if got := st.LostTotal(StreamTelemetry); got != 4 {
		t.Fatalf("lost total %d, want 4", got)
	}
}

func assertLosses(t *testing.T, st *State, want []Loss) {
	t.Helper()
	got := st.Losses()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g := got[i]
		ok = g.Stream == StreamTelemetry && g.From == want[i].From && g.To == want[i].To && g.Count == want[i].Count && g.Cause == causeMissing
	}
	if !ok {
		t.Fatalf("losses %+v, want %+v", got, want)
	}
}
