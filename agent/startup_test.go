package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// waitListening says no for a server that is not started within its bound
// and yes once the server accepts clients.
func TestWaitListening(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	if waitListening(srv, 20*time.Millisecond) {
		t.Fatal("ready before Start")
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !waitListening(srv, 10*time.Second) {
		t.Fatal("not ready in 10s")
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("ready, but a client cannot connect: %v", err)
	}
	nc.Close()
}

// The agent is ready before the start's check of its streams against
// state.db: local publishes are stored and status says the check is still
// running, but nothing is forwarded until it is done. A reading sent
// before would be sent again under the message-id epoch the check draws
// (the check pulls the cursor back to what the store held at the start),
// and the hub would store it twice.
func TestReadyBeforeStreamCheck(t *testing.T) {
	hub, hjs := startHub(t, nil, edgeStream)
	hold, release := checkHold(t)
	cfg := configIn(t, t.TempDir(), fmt.Sprintf("buffer: {sync: always}\nuplink:\n  hub_urls: [%s]\n", leafURL(t, hub, "nats")))
	a, err := launchHolding(t, cfg, hold)
	if err != nil {
		t.Fatalf("agent failed to start: %v\n%s", err, a.logs)
	}
	leafUp(t, hub, a)
	const n = 100
	publishAsync(t, a, "telemetry.t", 0, n, func(i int) []byte { return fmt.Appendf(nil, `{"id":"p-%d"}`, i) })
	if last := streamLast(t, a); last != n {
		t.Fatalf("TELEMETRY holds up to seq %d during the check, want %d", last, n)
	}
	st := a.Status(context.Background())
	code, warnings := st.Health()
	if !st.Store.Checking || code != ExitDegraded || !slices.ContainsFunc(warnings, func(w Warning) bool { return strings.Contains(w.Message, "check of the local streams") }) {
		t.Fatalf("status during the check: checking %v, code %d, warnings %+v", st.Store.Checking, code, warnings)
	}
	// Losses the check may still record are not acknowledged unseen.
	if r, err := AckLoss(context.Background(), cfg.ControlSocket); err == nil {
		t.Fatalf("ack-loss during the check: %+v, want it refused", r)
	}
	// The hub's requests other than replays are answered meanwhile.
	interest(t, hub, "edge.s1.agent.ping")
	if _, err := connect(t, hub.ClientURL()).Request("edge.s1.agent.ping", nil, 5*time.Second); err != nil {
		t.Fatalf("agent.ping from the hub during the check: %v", err)
	}
	// Time for a forwarder that did not wait to send the backlog.
	deadline := time.Now().Add(2 * time.Second)
	for fwdHubCount(hjs) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := fwdHubCount(hjs); got != 0 {
		t.Errorf("hub holds %d readings forwarded before the stream check", got)
	}
	release()
	waitChecked(t, a)
	testkit.WaitFor(t, time.Minute, func() error {
		if a.State().Cursor(buffer.StreamTelemetry) != n {
			return errors.New("still waiting for the hub to acknowledge the backlog")
		}
		return nil
	})
	checkHubOnce(t, hjs, n)
	if a.Status(context.Background()).Store.Checking {
		t.Fatal("status still says the stream check is running after it is done")
	}
}

// A burst local apps publish at READY, before the start's check, is new
// after the end the check measures damage from, and the check does not
// read it message by message to find that out: it bounds the walk back
// with the end its reconcile saw.
func TestStreamCheckAfterReadyBurst(t *testing.T) {
	dir := t.TempDir()
	a := agentOn(t, dir, "buffer: {sync: always}\n")
	publishAsync(t, a, "telemetry.t", 0, 10, zeros128)
	cfg := a.Config()
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	hold, release := checkHold(t)
	b, err := launchHolding(t, cfg, hold)
	if err != nil {
		t.Fatalf("agent failed to start: %v\n%s", err, b.logs)
	}
	const n = 2000
	publishAsync(t, b, "telemetry.t", 10, 10+n, zeros128)
	// Each message the check reads is a request the agent publishes.
	reads := 0
	for _, k := range testkit.Publishes(t, connect(t, b.ClientURL()), "$JS.API.STREAM.MSG.GET.>", func() {
		release()
		waitChecked(t, b)
	}) {
		reads += k
	}
	if reads > n/10 {
		t.Errorf("the check read %d messages for %d readings published before it", reads, n)
	}
	if from := b.State().Epochs(buffer.StreamTelemetry); from[len(from)-1].From != 11 {
		t.Fatalf("the start's epoch begins at seq %d, want 11 (the store held 10): epochs %+v", from[len(from)-1].From, from)
	}
}

// waitChecked waits for the start's stream check of a launchHolding agent
// whose hold was released.
func waitChecked(t *testing.T, a *testAgent) {
	t.Helper()
	select {
	case <-a.Checked():
	case <-time.After(30 * time.Second):
		t.Fatalf("the start's stream check not done in 30s\n%s", a.logs)
	}
}
