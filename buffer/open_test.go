package buffer

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// A start that creates the agent's streams keeps the epoch each was
// created with (no process can have sent an id in it), so the stream's
// metadata is written once, at creation, with its whole identity. The next
// process still draws a new epoch at its first check: it cannot tell a
// restored copy from the store it copied.
func TestOpenStreamsKeepsTheCreationEpoch(t *testing.T) {
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
		if len(eps) != 1 || eps[0].ID != md[mdStreamID] || md[mdGen] != "0" || md[mdStoreID] != st.StoreID() {
			t.Fatalf("%s: epochs %+v, metadata %v: want the creation epoch only (gen 0, store id %s)", name, eps, md, st.StoreID())
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
		t.Fatalf("second start: epochs %+v: want the creation epoch for 1..3 and a new one from 4", eps)
	}
	if eps := st.Epochs(StreamAlerts); len(eps) != 1 || eps[0].ID == first[StreamAlerts] {
		t.Fatalf("second start, empty ALERTS: epochs %+v: want one new epoch", eps)
	}
}
