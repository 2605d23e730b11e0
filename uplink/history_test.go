package uplink

import (
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit/teststate"
)

// The history keeps its last historySize events across flushes and a
// reopen of state.db.
func TestHistoryRing(t *testing.T) {
	st, path := teststate.Open(t)
	h := NewHistory(st)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 250 {
		h.AddLinkEvent(LinkEvent{Time: t0.Add(time.Duration(i) * time.Second), Kind: EventConnect})
		if i%70 == 0 {
			if err := st.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(st HistoryStore) {
		t.Helper()
		evs, err := LinkEvents(st)
		if err != nil || len(evs) != 100 || !evs[0].Time.Equal(t0.Add(150*time.Second)) || !evs[99].Time.Equal(t0.Add(249*time.Second)) {
			t.Fatalf("ring: %d events (%v), first %v last %v", len(evs), err, evs[0].Time, evs[len(evs)-1].Time)
		}
	}
	check(st)
	ro := teststate.ReopenReadOnly(t, st, path)
	check(ro)
}
