package sensors

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit/teststate"
)

// Records reach state.db batched and are there for a read-only open (what
// `edge-agent status` does while the daemon is down).
func TestRecordsSurviveReopen(t *testing.T) {
	st, path := teststate.Open(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if err := SaveRecord(st, "temp", Record{Values: json.RawMessage(`{"c":21.5}`), LastRead: t0, LastError: "timeout", Errors: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ro := teststate.ReopenReadOnly(t, st, path)
	recs, err := LoadRecords(ro)
	if r := recs["temp"]; err != nil || len(recs) != 1 || r.Errors != 2 || !r.LastRead.Equal(t0) || string(r.Values) != `{"c":21.5}` || r.LastError != "timeout" {
		t.Fatalf("records after reopen: %+v, %v", recs, err)
	}
}
