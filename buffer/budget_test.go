package buffer

import (
	"context"
	"testing"
)

// TestMinimumBudgetEvictsOldest: at the smallest buffer.max_bytes the
// config accepts, both streams get a limit, and a full TELEMETRY evicts its
// oldest readings and keeps taking the newest. With the old 1MiB minimum
// ALERTS took the whole budget and TELEMETRY had no limit of its own: once
// the store budget filled, the newest readings were refused.
func TestMinimumBudgetEvictsOldest(t *testing.T) {
	c := testConfig("always", MinMaxBytes)
	mustOK(t, c.Validate(), "the minimum is valid")
	for _, sc := range StreamConfigs(c) {
		if sc.MaxBytes < MinStreamBytes {
			t.Fatalf("%s gets %d bytes of a %s budget", sc.Name, sc.MaxBytes, c.MaxBytes)
		}
	}
	ctx := context.Background()
	_, js := jsServer(t, t.TempDir(), c)
	mustOK(t, EnsureStreams(ctx, js, c))
	// Three budgets' worth: publishN fails on the first refused publish.
	publishN(t, js, "telemetry.t", 3*int(c.MaxBytes)/1000, 1000)
	st := streamState(t, js, StreamTelemetry)
	if st.FirstSeq <= 1 || st.Bytes > uint64(c.MaxBytes) {
		t.Fatalf("TELEMETRY did not evict its oldest within the budget: %+v", st)
	}
}
