package uplink

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/confkit"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

func TestForwarderSteadyFlow(t *testing.T) {
	e := newFwEnv(t, "store-0042", fwEnvOpts{})
	e.leafUp()
	const nTele, nAlerts = 3000, 40
	e.publish("telemetry.ambient", nTele, []byte(`{"t":21.5}`))
	e.publish("alerts.door", nAlerts, []byte(`{"open":true}`))
	f := e.start(nil, WithWindow(64))
	e.waitHub(nTele+nAlerts, 60*time.Second, "all readings at the hub")
	// Live readings keep flowing after the backlog.
	e.publish("telemetry.ambient", 10, []byte(`{"t":21.6}`))
	e.waitHub(nTele+nAlerts+10, 30*time.Second, "live readings at the hub")
	msgs := e.hubMsgs()
	e.checkExactlyOnce(msgs, "TELEMETRY", "telemetry.ambient", 1, nTele+10)
	e.checkExactlyOnce(msgs, "ALERTS", "alerts.door", 1, nAlerts)
	// Edge-Time is when the local stream stored the reading.
	local, err := e.leafJS.Stream(context.Background(), "TELEMETRY")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs[len(msgs)-3:] {
		seq, _ := strconv.ParseUint(m.Headers().Get(HdrSeq), 10, 64)
		stored, err := local.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := m.Headers().Get(HdrTime), stored.Time.UTC().Format(time.RFC3339Nano); got != want {
			t.Fatalf("TELEMETRY seq %d: Edge-Time %s, stored at %s", seq, got, want)
		}
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if !(e.st.Cursor("TELEMETRY") == nTele+10 && e.st.Cursor("ALERTS") == nAlerts) {
			return errors.New("still waiting for cursors at the end")
		}
		return nil
	})
	st := f.Status()
	if st.HubStream != "EDGE" || st.HubDomain != "hub" {
		t.Fatalf("acks came from stream %q domain %q, want the hub's EDGE in domain hub", st.HubStream, st.HubDomain)
	}
	if st.Forwarded["TELEMETRY"] != nTele+10 || st.Forwarded["ALERTS"] != nAlerts || st.Rejected != 0 || st.LastAck.IsZero() {
		t.Fatalf("status = %+v", st)
	}
	// Alerts drain first: with the backlog already stored, every alert is
	// at the hub before the telemetry backlog ends.
	lastAlert, lastTele := 0, 0
	for i, m := range msgs {
		switch m.Headers().Get(HdrStream) {
		case "ALERTS":
			lastAlert = i
		case "TELEMETRY":
			lastTele = i
		}
	}
	if lastAlert > lastTele {
		t.Fatalf("last alert at hub position %d after the last telemetry at %d", lastAlert, lastTele)
	}
}

// Stopping the forwarder mid-window and losing the last cursor batch (as a
// crash before state.db committed it would) resends from the older cursor:
// the hub's duplicate window drops the resends, nothing is lost.
func TestForwarderCrashResume(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	e.leafUp()
	const n = 5000
	e.publish("telemetry.x", n, make([]byte, 128))
	f := e.start(nil, WithWindow(256))
	e.waitHubPast(999, 60*time.Second, "forwarding under way")
	f.stop()
	at := e.st.Cursor("TELEMETRY")
	if at == 0 {
		t.Fatal("cursor never moved")
	}
	// The crash lost up to 700 cursor advances that were not committed yet.
	if err := e.st.ResetCursor("TELEMETRY", at-min(at, 700)); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	e.openState()
	e.start(nil, WithWindow(256))
	e.waitCursor("TELEMETRY", n, 60*time.Second, "cursor at the end")
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 1, n)
}

// With a long telemetry backlog draining through a metered link, a new
// alert overtakes it; the bandwidth cap holds meanwhile.
func TestForwarderAlertOvertakesBacklog(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	const rate = 100_000 // bytes/s: the 20k backlog needs more than a minute
	e.cfg.Bandwidth = rate
	e.leafUp()
	const backlog = 20000
	e.publish("telemetry.x", backlog, make([]byte, 128))
	start := time.Now()
	f := e.start(nil)
	e.waitHubPast(0, 30*time.Second, "backlog draining")
	e.publish("alerts.fire", 1, []byte(`{"zone":3}`))
	testkit.WaitFor(t, 30*time.Second, func() error {
		if f.Status().Forwarded["ALERTS"] != 1 {
			return errors.New("still waiting for alert at the hub")
		}
		return nil
	})
	elapsed := time.Since(start)
	tele := f.Status().Forwarded["TELEMETRY"]
	if tele >= backlog {
		t.Fatalf("alert arrived only after the whole backlog")
	}
	// Every forwarded telemetry message is over 200 bytes with its headers:
	// the pacer allows rate*elapsed plus one second of burst.
	if got, limit := float64(tele)*200, rate*(elapsed.Seconds()+1); got > limit {
		t.Fatalf("%d messages (>%0.f bytes) in %s exceed the %d B/s cap", tele, got, elapsed, rate)
	}
}

// Readings the buffer limits evicted before they were forwarded move the
// cursor past them and are counted, once.
func TestForwarderEvicted(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	s := e.capTelemetry(100)
	e.publish("telemetry.x", 300, []byte("x"))            // 1..200 evicted
	if err := s.DeleteMsg(t.Context(), 250); err != nil { // one gap inside
		t.Fatal(err)
	}
	logs := &fwLog{}
	e.leafUp()
	e.start(logs.logger())
	e.waitCursor("TELEMETRY", 300, 30*time.Second, "cursor at the end")
	if got := e.st.Evicted("TELEMETRY"); got != 201 {
		t.Fatalf("evicted = %d, want 200 before the first and 1 inside", got)
	}
	msgs := e.hubMsgs()
	if len(msgs) != 99 || msgs[0].Headers().Get(HdrSeq) != "201" {
		t.Fatalf("hub has %d messages", len(msgs))
	}
	if n := strings.Count(logs.String(), "evicted by the buffer limits"); n != 2 {
		t.Fatalf("logged %d eviction lines, want 2:\n%s", n, logs)
	}
}

// A hub that lost data asks for a replay: the readings are sent again, and
// the cursor stays where it was.
func TestForwarderReplay(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	e.leafUp()
	e.publish("telemetry.x", 50, []byte("x"))
	f := e.start(nil)
	e.waitCursor("TELEMETRY", 50, 30*time.Second, "forwarded")
	ctx := t.Context()
	if err := e.hubJS.DeleteStream(ctx, "EDGE"); err != nil {
		t.Fatal(err)
	}
	if _, err := hubops.EnsureHubStream(ctx, e.hubJS, hubops.HubStreamConfig("EDGE", "edge", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := f.Replay(ctx, "TELEMETRY", 21); err != nil {
		t.Fatal(err)
	}
	if c := e.st.Cursor("TELEMETRY"); c != 50 {
		t.Fatalf("cursor %d after the replay request, want 50: a replay never moves it back", c)
	}
	e.waitHub(30, 30*time.Second, "replayed readings")
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 21, 50)
	if err := f.Replay(ctx, "NOPE", 0); err == nil || !strings.Contains(err.Error(), "unknown stream") {
		t.Fatalf("replay of an unknown stream: %v", err)
	}
}

func TestForwarderConfigKeys(t *testing.T) {
	d := DefaultConfig()
	if d.StallTimeout != time.Minute || d.HubMaxPayload != 1<<20 || d.AllowRemoteAdmin || !d.IgnoreDiscoveredURLs {
		t.Fatalf("defaults: stall_timeout %s, hub_max_payload %s, allow_remote_admin %v, ignore_discovered_urls %v", d.StallTimeout, d.HubMaxPayload, d.AllowRemoteAdmin, d.IgnoreDiscoveredURLs)
	}
	for key, mod := range map[string]func(*Config){
		"uplink.stall_timeout":   func(c *Config) { c.StallTimeout = 10 * time.Millisecond },
		"uplink.hub_max_payload": func(c *Config) { c.HubMaxPayload = 100 },
	} {
		c := DefaultConfig()
		c.HubURLs = []string{"nats://hub:7422"}
		mod(&c)
		var fe *confkit.FieldError
		if err := c.Validate(); !errors.As(err, &fe) || fe.Key != key {
			t.Errorf("%s: Validate() = %v", key, err)
		}
	}
}

// After waiting through a down link the forwarder holds its telemetry for
// a random delay in [0, jitter] (the drain ramp of a fleet back from a hub
// outage), while alerts go at once; while the link stays up, or when it is
// back from the site's own WAN outage, nothing is delayed.
func TestForwarderStartJitter(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	e.leafUp()
	e.publish("telemetry.x", 10, []byte("x"))
	e.publish("alerts.door", 2, []byte("open"))
	const jitter = 3 * time.Second
	var mu sync.Mutex
	var draws []int64
	longest := func(o *options) {
		o.rnd = func(n int64) int64 {
			mu.Lock()
			defer mu.Unlock()
			draws = append(draws, n)
			return n - 1
		}
	}
	link := newFakeLink(false)
	f := e.start(nil, WithLink(link), WithStartJitter(jitter), longest)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if f.Status().LastError != errLinkDown.Error() {
			return errors.New("still waiting for forwarder waiting for the link")
		}
		return nil
	})
	if n := e.hubCount(); n != 0 {
		t.Fatalf("%d readings forwarded while the link was down", n)
	}
	upAt := time.Now()
	link.set(true)
	// The status says how long telemetry is held.
	testkit.WaitFor(t, 10*time.Second, func() error {
		if f.Status().HeldUntil.IsZero() {
			return errors.New("still waiting for hold in the status")
		}
		return nil
	})
	if held := f.Status().HeldUntil.Sub(upAt); held < jitter || held > jitter+5*time.Second {
		t.Fatalf("status: telemetry held until %s after the link came up, want the drawn %s", held, jitter)
	}
	e.waitHub(12, 30*time.Second, "backlog at the hub")
	if h := f.Status().HeldUntil; !h.IsZero() {
		t.Fatalf("status: telemetry held until %s after the delay passed", h)
	}
	msgs := e.hubMsgs()
	stored := func(stream string) (first, last time.Time) {
		for _, m := range msgs {
			if m.Headers().Get(HdrStream) != stream {
				continue
			}
			meta, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if first.IsZero() {
				first = meta.Timestamp
			}
			last = meta.Timestamp
		}
		return first, last
	}
	_, lastAlert := stored("ALERTS")
	firstReading, _ := stored("TELEMETRY")
	// Lower bounds only for the held lane: a busy machine can make it
	// later, never earlier. The alerts had the whole delay to arrive.
	if after := firstReading.Sub(upAt); after < jitter {
		t.Fatalf("first reading stored %s after the link came up, before the drawn delay of %s", after, jitter)
	}
	if after := lastAlert.Sub(upAt); after >= jitter {
		t.Fatalf("alerts stored %s after the link came up: held with the telemetry for the drawn delay of %s", after, jitter)
	}
	e.checkExactlyOnce(msgs, "ALERTS", "alerts.door", 1, 2)
	e.publish("telemetry.x", 5, []byte("x"))
	e.waitHub(17, 30*time.Second, "live readings at the hub")

	// Back from the site's own WAN outage (the link's restore watch): no
	// fleet is returning with it, so no delay is drawn.
	link.set(false)
	e.publish("telemetry.x", 5, []byte("x"))
	testkit.WaitFor(t, 10*time.Second, func() error {
		if f.Status().LastError != errLinkDown.Error() {
			return errors.New("still waiting for forwarder waiting for the link again")
		}
		return nil
	})
	link.wan.Store(true)
	link.set(true)
	e.waitHub(22, 30*time.Second, "backlog of the WAN outage at the hub")
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 1, 20)

	// A hub outage again, and the link drops during the delay: while it is
	// down the status shows no hold; its return draws a new delay.
	link.set(false)
	link.wan.Store(false)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if f.Status().LastError != errLinkDown.Error() {
			return errors.New("still waiting for forwarder waiting for the link, third outage")
		}
		return nil
	})
	e.publish("telemetry.x", 1, []byte("x"))
	link.set(true)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if f.Status().HeldUntil.IsZero() {
			return errors.New("still waiting for hold in the status, third outage")
		}
		return nil
	})
	link.set(false)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if f.Status().LastError != errLinkDown.Error() {
			return errors.New("still waiting for forwarder waiting for the link, during the delay")
		}
		return nil
	})
	if h := f.Status().HeldUntil; !h.IsZero() {
		t.Fatalf("status: telemetry held until %s while the link is down", h)
	}
	link.set(true)
	e.waitHub(23, 30*time.Second, "backlog of the third outage at the hub")
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 1, 21)
	mu.Lock()
	defer mu.Unlock()
	n := int64(jitter) + 1
	if want := []int64{n, n, n}; !slices.Equal(draws, want) {
		t.Fatalf("delay draws %v, want a uniform draw in [0, %s] (n = %d) each time the link came back from a hub outage, and none after the WAN outage", draws, jitter, n)
	}
}

func TestForwarderOptionsInvalid(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	if _, err := NewForwarder(e.cfg, e.site, e.leafNC, e.st, nil, WithStartJitter(-time.Second)); err == nil || !strings.Contains(err.Error(), "start jitter -1s") {
		t.Fatalf("negative start jitter: %v", err)
	}
}

// The hub's replies as nats-server words them: the success ack is read
// without reflection, everything else as JSON, and a reply that is no
// stream ack is refused.
func TestForwarderParseAck(t *testing.T) {
	for _, tc := range []struct {
		data           string
		ok             bool
		stream, domain string
		errCode        int
	}{
		{`{"stream":"EDGE","seq":7,"domain":"hub"}`, true, "EDGE", "hub", 0},
		{`{"stream":"EDGE","seq":7,"duplicate":true}`, true, "EDGE", "", 0},
		{`{"stream":"ED\"GE","seq":7}`, true, `ED"GE`, "", 0},
		{`{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"},"stream":"EDGE","seq":0}`, true, "EDGE", "", 10054},
		{`{"error":{"code":503,"err_code":10039,"description":"jetstream not enabled"}}`, true, "", "", 10039},
		{`{"seq":7}`, false, "", "", 0},
		{`+OK`, false, "", "", 0},
		{``, false, "", "", 0},
	} {
		pa, ok := parseAck([]byte(tc.data))
		code := 0
		if pa.Error != nil {
			code = pa.Error.ErrCode
		}
		if ok != tc.ok || string(pa.Stream) != tc.stream || string(pa.Domain) != tc.domain || code != tc.errCode {
			t.Errorf("parseAck(%s) = stream %q domain %q err_code %d ok %v; want %q %q %d %v", tc.data, pa.Stream, pa.Domain, code, ok, tc.stream, tc.domain, tc.errCode, tc.ok)
		}
	}
}
