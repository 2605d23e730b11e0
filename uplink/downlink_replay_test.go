package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// startDownlink serves the downlink for f, answering status requests with
// status, until the test ends.
func startDownlink(t *testing.T, f *runningFw, status func(context.Context) any) {
	t.Helper()
	d, err := NewDownlink(f.Forwarder, status, f.log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// runDownlink serves the downlink for f until the test ends, once the hub
// sees interest in edge.s1.agent.<cmd>.
func runDownlink(t *testing.T, e *fwEnv, f *runningFw, cmd string) {
	t.Helper()
	startDownlink(t, f, func(context.Context) any { return nil })
	testkit.WaitFor(t, 10*time.Second, func() error {
		if !e.hub.GlobalAccount().SubscriptionInterest("edge.s1.agent." + cmd) {
			return fmt.Errorf("still waiting for hub sees edge.s1.agent.%s", cmd)
		}
		return nil
	})
}

// hubReplay asks the site for a replay as a hub client does and returns
// the plans, or the error the site answered.
func hubReplay(t *testing.T, e *fwEnv, body string) ([]ReplayPlan, string) {
	t.Helper()
	m, err := e.hubNC.Request("edge.s1.agent.replay", []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("replay %s: %v", body, err)
	}
	var r replyError
	if json.Unmarshal(m.Data, &r) == nil && r.Error != "" {
		return nil, r.Error
	}
	var plans []ReplayPlan
	if err := json.Unmarshal(m.Data, &plans); err != nil {
		t.Fatalf("replay %s answered %s", body, m.Data)
	}
	return plans, ""
}

// A replay whose start lies past what the store holds (a from_time in the
// future, a from_seq past the last) is refused with what the store holds,
// and nothing moves. A replay inside it resends the range under the
// original ids without moving the cursor back, while new readings go on.
// Before, a from_time in the future resent the whole store and reset the
// cursor to 0.
func TestReplayRange(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	e.leafUp()
	e.publish("telemetry.x", 10, []byte("x"))
	f := e.start(nil)
	runDownlink(t, e, f, "replay")
	e.waitCursor("TELEMETRY", 10, 30*time.Second, "forwarded")

	future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	for body, want := range map[string]string{
		`{"stream":"TELEMETRY","from_time":"` + future + `"}`:       "replay TELEMETRY from_time " + future + ": outside the store, which holds seq 1..10 stored ",
		`{"from_time":"` + future + `"}`:                            "outside the store, which holds seq 1..10",
		`{"stream":"TELEMETRY","from_seq":11}`:                      "replay TELEMETRY from_seq 11: outside the store, which holds seq 1..10",
		`{"stream":"TELEMETRY","from_time":"9999-12-31T00:00:00Z"}`: "outside the store, which holds seq 1..10",
		`{"stream":"ALERTS","from_seq":1}`:                          "replay ALERTS from_seq 1: the stream holds no readings",
	} {
		plans, msg := hubReplay(t, e, body)
		if !strings.Contains(msg, want) {
			t.Errorf("%s: plans %+v, error %q: want it refused with %q", body, plans, msg, want)
		}
	}
	if c, n := e.st.Cursor("TELEMETRY"), e.hubCount(); c != 10 || n != 10 {
		t.Fatalf("after refused replays: cursor %d, hub holds %d: want 10 and 10 (nothing moved, nothing resent)", c, n)
	}

	e.recreateHubStream()
	plans, msg := hubReplay(t, e, `{"stream":"TELEMETRY","from_seq":4}`)
	if msg != "" || len(plans) != 1 || plans[0] != (ReplayPlan{Stream: "TELEMETRY", FromSeq: 4, LastSeq: 10, Messages: 7}) {
		t.Fatalf("plan %+v, error %q", plans, msg)
	}
	if c := e.st.Cursor("TELEMETRY"); c != 10 {
		t.Fatalf("cursor %d after the replay request, want 10: a replay never moves it back", c)
	}
	e.publish("telemetry.x", 5, []byte("x"))
	e.waitHub(12, 30*time.Second, "replayed and new readings at the hub")
	e.waitCursor("TELEMETRY", 15, 10*time.Second, "cursor at 15")
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 4, 15)
	if st := f.Status(); st.DroppedDuplicate != 0 {
		t.Fatalf("replayed readings reported as dropped duplicates: %d", st.DroppedDuplicate)
	}
}

// Who may replay is the hub's to say, in nats-server permissions: a hub
// user denied publish on edge.*.agent.replay cannot ask, and a site whose
// leaf user is denied subscribe on its replay subject never hears anyone
// ask (the other agent subjects still work).
func TestReplayHubPermissions(t *testing.T) {
	e := siteUserEnv(t, &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"edge.s1.>", "_INBOX.>", "$JSC.R.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"edge.s1.>", "_INBOX.>", "$JS.s1.API.>", "$JS.FC.>"}, Deny: []string{"edge.s1.agent.replay"}},
	}, &server.User{Username: "viewer", Password: "pw", Permissions: &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"edge.*.agent.replay"}},
	}})
	e.publish("telemetry.x", 5, []byte("x"))
	f := e.start(nil)
	runDownlink(t, e, f, "ping")
	e.waitCursor("TELEMETRY", 5, 30*time.Second, "forwarded")
	if _, err := e.hubNC.Request("edge.s1.agent.ping", nil, 5*time.Second); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if _, err := e.hubNC.Request("edge.s1.agent.replay", []byte(`{"from_seq":1}`), 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("replay with the site's subscribe denied: %v, want no responders", err)
	}
	perm := make(chan error, 1)
	viewer, err := nats.Connect(e.hub.ClientURL(), nats.UserInfo("viewer", "pw"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case perm <- err:
		default:
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()
	if _, err := viewer.Request("edge.s1.agent.replay", []byte(`{"from_seq":1}`), time.Second); err == nil {
		t.Fatal("a hub user denied publish on edge.*.agent.replay got an answer")
	}
	select {
	case err := <-perm:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("viewer error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no permissions violation reported to the viewer")
	}
	if c := e.st.Cursor("TELEMETRY"); c != 5 || e.hubCount() != 5 {
		t.Fatalf("cursor %d, hub %d: nothing may have been replayed", c, e.hubCount())
	}
}

// A replay cut short (a drop, a stall) goes on in the next session from
// where its acks got to, never before the oldest stored reading nor past
// the cursor, and ends once its range is done.
func TestReplayResumes(t *testing.T) {
	f := &Forwarder{replays: map[string]replayRange{"T": {next: 5, to: 10}}}
	if got := f.replayStart("T", 10, 1); got != 5 {
		t.Fatalf("start %d, want 5", got)
	}
	f.replayed("T", 3) // an ack below the replay (an older session's)
	f.replayed("T", 7)
	if got := f.replayStart("T", 10, 1); got != 8 {
		t.Fatalf("after acks up to 7: start %d, want 8", got)
	}
	if got := f.replayStart("T", 10, 9); got != 9 {
		t.Fatalf("oldest stored 9: start %d, want 9", got)
	}
	f.replayed("T", 10)
	if got := f.replayStart("T", 10, 1); got != 11 || len(f.replays) != 0 {
		t.Fatalf("replay done: start %d (want the cursor + 1), pending %v", got, f.replays)
	}
	f.replays["T"] = replayRange{next: 5, to: 10}
	if got := f.replayStart("T", 0, 1); got != 1 || len(f.replays) != 0 {
		t.Fatalf("cursor reset (stream recreated): start %d, pending %v", got, f.replays)
	}
}
