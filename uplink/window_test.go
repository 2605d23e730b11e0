package uplink

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

func TestCongestionWindow(t *testing.T) {
	c := newCongestion(8192)
	if c.limit() != initialWindow {
		t.Fatalf("starts at %d, want %d", c.limit(), initialWindow)
	}
	// Slow start: one more per ack, so a window of acks doubles it.
	for range initialWindow {
		c.acked()
	}
	if c.limit() != 2*initialWindow {
		t.Fatalf("after one window of acks: %d, want %d", c.limit(), 2*initialWindow)
	}
	for range 100_000 {
		c.acked()
	}
	if c.limit() != 8192 {
		t.Fatalf("grows to %d, want the maximum 8192", c.limit())
	}
	c.busy()
	if c.limit() != 4096 {
		t.Fatalf("a 429 leaves %d, want half of 8192", c.limit())
	}
	// Above the level the hub choked at, growth is about one per window
	// of acks.
	for range 4100 {
		c.acked()
	}
	if c.limit() != 4097 {
		t.Fatalf("after 4100 acks above the threshold: %d, want 4097", c.limit())
	}
	for range 20 {
		c.busy()
	}
	if c.limit() != minWindow {
		t.Fatalf("a hub busy for long leaves %d, want the floor %d", c.limit(), minWindow)
	}
	c.idle()
	if c.limit() != initialWindow || c.ssthresh != 8192 {
		t.Fatalf("idle: window %d threshold %v, want %d and the maximum", c.limit(), c.ssthresh, initialWindow)
	}
	// An ack timeout restarts from the initial window, and the level that
	// timed out halves; a small window shrinks to half, down to the floor.
	for range 100_000 {
		c.acked()
	}
	c.timedOut()
	if c.limit() != initialWindow || c.ssthresh != 4096 {
		t.Fatalf("ack timeout at 8192: window %d threshold %v, want %d and 4096", c.limit(), c.ssthresh, initialWindow)
	}
	c.timedOut()
	if c.limit() != initialWindow/2 {
		t.Fatalf("second ack timeout: window %d, want %d", c.limit(), initialWindow/2)
	}
	for range 10 {
		c.timedOut()
	}
	if c.limit() != minWindow {
		t.Fatalf("ack timeouts in a row: window %d, want the floor %d", c.limit(), minWindow)
	}
	c.idle()
	// A configured window below the defaults is never exceeded.
	small := newCongestion(4)
	small.busy()
	for range 100 {
		small.acked()
	}
	if small.limit() != 4 {
		t.Fatalf("window 4: %d", small.limit())
	}
}

// A hub stream whose ingest queue overflows answers 429 "too many
// requests" to part of a window. The forwarder halves its window, resends
// from the cursor, and every reading arrives once; the status says the hub
// is busy, not that its stream is missing.
func TestForwarderHubBusy(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{hub: func(o *server.Options) { o.StreamMaxBufferedMsgs = 50 }})
	e.leafUp()
	const n = 30_000
	e.publish("telemetry.x", n, make([]byte, 128))
	var log fwLog
	f := e.start(log.logger())
	sawSmall := false
	testkit.WaitFor(t, 120*time.Second, func() error {
		st := f.Status()
		sawSmall = sawSmall || st.HubBusy > 0 && st.Window < 8192/2
		if got := e.hubCount(); got != n {
			return fmt.Errorf("still waiting for all readings at the hub: %d on the hub", got)
		}
		return nil
	})
	e.waitCursor("TELEMETRY", n, 10*time.Second, "cursor at the end")
	st := f.Status()
	t.Logf("hub busy %d times; window now %d; log:\n%.2000s", st.HubBusy, st.Window, log.String())
	if st.HubBusy == 0 {
		t.Fatal("the hub never answered 429: the test proves nothing (lower StreamMaxBufferedMsgs)")
	}
	if !sawSmall {
		t.Fatal("the window never shrank below half the maximum after a 429")
	}
	if !strings.Contains(log.String(), "reason_class="+string(ReasonHubBusy)) {
		t.Fatalf("no hub_busy reason logged:\n%s", log.String())
	}
	e.checkOnce(e.hubMsgs(), "TELEMETRY", n)
}
