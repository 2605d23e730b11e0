package uplink

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// siteUserEnv is a hub whose leaf user for site s1 ("site") has the given
// permissions (leaf perspective: publish = what the site may send up),
// the test's client user "admin" all, and more users others; every
// password is "pw".
func siteUserEnv(t *testing.T, perms *server.Permissions, others ...*server.User) *fwEnv {
	t.Helper()
	e := newFwEnv(t, "s1", fwEnvOpts{
		hub: func(o *server.Options) {
			o.Users = append([]*server.User{{Username: "admin", Password: "pw"}, {Username: "site", Password: "pw", Permissions: perms}}, others...)
		},
		leafUser: "site", leafPassword: "pw",
		hubUser: "admin", hubPassword: "pw",
	})
	e.leafUp()
	return e
}

// startDegraded starts a forwarder on e with a fake link and waits until
// it reports the reason class with an error naming want, and has told the
// link.
func startDegraded(t *testing.T, e *fwEnv, class ReasonClass, want string) (*runningFw, *fakeLink) {
	t.Helper()
	link := newFakeLink(true)
	f := e.start(nil, WithLink(link))
	testkit.WaitFor(t, 20*time.Second, func() error {
		st := f.Status()
		if !(st.ReasonClass == class && strings.Contains(st.LastError, want)) {
			return fmt.Errorf("still waiting for the %s reason naming %q: %s %q", class, want, st.ReasonClass, st.LastError)
		}
		return nil
	})
	if c, _ := link.degraded.Load().([2]string); c[0] != string(class) {
		t.Fatalf("link told %v, want the %s reason", c, class)
	}
	return f, link
}

func TestForwarderPermissionDenied(t *testing.T) {
	e := siteUserEnv(t, &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"edge.other.>", "_INBOX.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{">"}},
	})
	e.cfg.StallTimeout = time.Second
	e.publish("telemetry.x", 5, []byte("x"))
	f, _ := startDegraded(t, e, ReasonPermission, "edge.s1.>")
	// No spin: over an observation window the retries stay a handful of
	// sessions (backoff), where a hot loop would publish thousands.
	before := e.leafInMsgs()
	time.Sleep(2 * time.Second)
	if n := e.leafInMsgs() - before; n > 500 {
		t.Fatalf("forwarder spins: %d publishes in 2s while the hub refuses them", n)
	}
	if st := f.Status(); st.Stalls != 0 || !st.LastAck.IsZero() {
		t.Fatalf("a known cause must not count as a stall: %+v", st)
	}
	if n := e.hubCount(); n != 0 {
		t.Fatalf("hub has %d messages", n)
	}
}

// Acks that never come back (the site user may not receive _INBOX replies)
// look like a half-open link: the forwarder shrinks its window and resends
// from the cursor, the hub drops the duplicates, the watchdog counts stalls
// and finally asks the link to bounce.
func TestForwarderStallWatchdog(t *testing.T) {
	e := siteUserEnv(t, &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{">"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"edge.s1.>"}},
	})
	e.cfg.StallTimeout = time.Second
	e.publish("telemetry.x", 5, []byte("x"))
	link := newFakeLink(true)
	f := e.start(nil, WithAckTimeout(200*time.Millisecond), WithLink(link))
	testkit.WaitFor(t, 30*time.Second, func() error {
		if !(f.Status().Stalls >= 2 && link.bounces.Load() >= 1) {
			return errors.New("still waiting for two stalls and a bounce")
		}
		return nil
	})
	// The reason is the last session's end: an ack timeout, or the stall
	// reset itself when the watchdog caught a session in flight.
	st := f.Status()
	if st.ReasonClass != ReasonOther || !strings.Contains(st.LastError, "ack timed out") && !strings.Contains(st.LastError, "stalled: no hub ack") {
		t.Fatalf("status %+v", st)
	}
	// Each ack timeout halved the window (64, 32, then the floor).
	testkit.WaitFor(t, 10*time.Second, func() error {
		if f.Status().Window >= initialWindow {
			return errors.New("still waiting for window shrunk by ack timeouts")
		}
		return nil
	})
	e.waitHub(5, 10*time.Second, "resends at the hub")
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 1, 5)
	if e.st.Cursor("TELEMETRY") != 0 {
		t.Fatalf("cursor moved without an ack: %d", e.st.Cursor("TELEMETRY"))
	}
}

func TestForwarderHubStreamMissing(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{noStream: true})
	e.leafUp()
	e.publish("telemetry.x", 20, []byte("x"))
	f, link := startDegraded(t, e, ReasonHubStream, "edge-agent hub init")
	// Creating the stream cures it without a restart.
	ctx := t.Context()
	if _, err := hubops.EnsureHubStream(ctx, e.hubJS, hubops.HubStreamConfig("EDGE", "edge", time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.waitHub(20, 30*time.Second, "readings at the new hub stream")
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 1, 20)
	testkit.WaitFor(t, 5*time.Second, func() error {
		if f.Status().ReasonClass != "" {
			return errors.New("still waiting for reason cleared")
		}
		return nil
	})
	testkit.WaitFor(t, 5*time.Second, func() error {
		c, _ := link.degraded.Load().([2]string)
		if c != [2]string{} {
			return errors.New("still waiting for link told the reason is gone")
		}
		return nil
	})
}

// A message the hub can never take is skipped with a reason instead of
// blocking everything behind it: larger than the hub's max_payload (caught
// locally, or the hub would drop the leaf connection) or than the hub
// stream's max_msg_size (refused in the ack).
func TestForwarderOversize(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{hub: func(o *server.Options) { o.MaxPayload = 16 << 10 }})
	e.cfg.HubMaxPayload = 16 << 10
	updateStream(t, e.hubJS, "EDGE", func(c *jetstream.StreamConfig) { c.MaxMsgSize = 4 << 10 })
	e.leafUp()
	e.publish("telemetry.x", 1, []byte("small 1"))
	e.publish("telemetry.x", 1, make([]byte, 32<<10)) // > max_payload
	e.publish("telemetry.x", 1, make([]byte, 8<<10))  // > stream max_msg_size
	e.publish("telemetry.x", 1, []byte("small 4"))
	logs := &fwLog{}
	f := e.start(logs.logger())
	e.waitCursor("TELEMETRY", 4, 20*time.Second, "cursor past the oversize messages")
	msgs := e.hubMsgs()
	if len(msgs) != 2 || string(msgs[0].Data()) != "small 1" || string(msgs[1].Data()) != "small 4" {
		t.Fatalf("hub has %d messages", len(msgs))
	}
	if st := f.Status(); st.Rejected != 2 {
		t.Fatalf("rejected = %d, want 2", st.Rejected)
	}
	for _, want := range []string{"exceed the hub's max_payload", "message size exceeds maximum"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if e.hub.NumLeafNodes() != 1 {
		t.Fatal("leaf connection dropped")
	}
}
