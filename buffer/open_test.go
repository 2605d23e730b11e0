package buffer

import (
	"context"
	"path/filepath"
	"testing"
	"time"
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
