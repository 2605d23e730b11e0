package uplink

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHubShutdownReason: a hub that shuts down stops its JetStream first,
// which withdraws the stream's interest over the leaf connection a moment
// before the connection closes. A publish in that moment gets "no
// responders"; the first warning must not send the technician to create
// the hub stream (`hub init`): the hub never said it has none. Every reason
// the link and the forwarder show, and every event written to state.db,
// is collected from the shutdown until the link has failed a retry and
// the no-stream confirmation has had time to conclude.
func TestHubShutdownReason(t *testing.T) {
	w := newWANEnv(t, "store-21")
	fw := w.forwarder()
	stop := w.flow("telemetry.flow", 5*time.Millisecond)
	defer stop()
	w.waitHubPast(50, 30*time.Second, "flow reaching the hub")

	var seen []string
	note := func(s string) {
		if !slices.Contains(seen, s) {
			seen = append(seen, s)
		}
	}
	w.hub.Shutdown()
	end := time.Now().Add(noStreamConfirm + 2*time.Second)
	for time.Now().Before(end) || w.link.Status().Attempts == 0 {
		l, f := w.link.Status(), fw.Status()
		note("link: " + l.Reason)
		note("forwarder: " + f.LastError)
		time.Sleep(5 * time.Millisecond) // sampling what status would show
	}
	evs, err := LinkEvents(w.st)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		note("event: " + e.Reason)
	}
	for _, s := range seen {
		if strings.Contains(s, "hub init") || strings.Contains(s, string(ReasonHubStream)) {
			t.Errorf("a hub that shut down was reported as a missing hub stream: %q (all: %q)", s, seen)
		}
	}
	if fw.Status().ReasonClass == ReasonHubStream || w.link.Status().ReasonClass == ReasonHubStream {
		t.Errorf("reason class hub_stream after a hub shutdown")
	}
}
