package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit"
)

// Without local_auth, an anonymous loopback client cannot delete, purge,
// reconfigure or delete messages from the agent's streams (plainly or
// through the site's JetStream domain), nor write the cursor backup; it
// can still publish readings, read them with its own consumer, keep its
// own streams and use KV.
func TestLocalAppCannotChangeAgentStreams(t *testing.T) {
	a := startAgent(t, "")
	var mu sync.Mutex
	var violations []string
	nc := connect(t, a.ClientURL(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		violations = append(violations, err.Error())
		mu.Unlock()
	}))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publishReadings(ctx, t, js, "telemetry.t", 10)
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 300*time.Millisecond) }
	// nats-server answers a denied publish with a permissions violation
	// (the request itself then times out): both are checked.
	refused := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: allowed to an anonymous local client", what)
		}
		testkit.WaitFor(t, 5*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			for i, v := range violations {
				if strings.Contains(v, "Permissions Violation for Publish") {
					violations = slices.Delete(violations, i, i+1)
					return nil
				}
			}
			return fmt.Errorf("still waiting for %s", "the permissions violation for "+what)
		})
	}
	for _, name := range []string{buffer.StreamTelemetry, buffer.StreamAlerts, buffer.StateStream} {
		c, cc := short()
		refused("delete "+name, js.DeleteStream(c, name))
		cc()
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		c, cc = short()
		refused("purge "+name, s.Purge(c))
		cc()
		cfg := s.CachedInfo().Config
		cfg.MaxBytes = 1 << 20
		c, cc = short()
		_, err = js.UpdateStream(c, cfg)
		cc()
		refused("update "+name, err)
	}
	s, _ := js.Stream(ctx, buffer.StreamTelemetry)
	c, cc := short()
	refused("delete a message", s.DeleteMsg(c, 3))
	cc()
	for _, subj := range []string{"$JS.s1.API.STREAM.DELETE.TELEMETRY", "$JS.s1.API.STREAM.PURGE.TELEMETRY", "$JS.API.ACCOUNT.PURGE.$G"} {
		_, err := nc.Request(subj, nil, 300*time.Millisecond)
		refused("request "+subj, err)
	}
	c, cc = short()
	_, err = js.Publish(c, "edge-agent.cursor.TELEMETRY", []byte(`{"cursor":5,"stream_id":"x"}`))
	cc()
	refused("write the cursor backup", err)
	if err := nc.Publish("edge-agent.config.site.s1", []byte("log_level: debug\n")); err != nil {
		t.Fatal(err)
	}
	refused("feed the remote config copy a fragment", errors.New("(a plain publish has no reply)"))
	if err := nc.Publish("$JS.EVENT.ADVISORY.STREAM.DELETED.TELEMETRY", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	refused("forge a stream-deleted advisory", errors.New("(a plain publish has no reply)"))

	if s, err = js.Stream(ctx, buffer.StreamTelemetry); err != nil || s.CachedInfo().State.Msgs != 10 || s.CachedInfo().Config.MaxBytes == 1<<20 {
		t.Fatalf("TELEMETRY changed: %+v %v", s.CachedInfo(), err)
	}
	// What local apps do keeps working.
	if got := testkit.StreamSeqs(t, js, buffer.StreamTelemetry); len(got) != 10 {
		t.Fatalf("read %d readings with a consumer, want 10", len(got))
	}
	app, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.>"}})
	if err != nil {
		t.Fatalf("create an own stream: %v", err)
	}
	if _, err := js.Publish(ctx, "app.x", nil); err != nil {
		t.Fatal(err)
	}
	if err := app.Purge(ctx); err != nil {
		t.Fatalf("purge an own stream: %v", err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "cfg"})
	if err != nil {
		t.Fatalf("create KV: %v", err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("KV put: %v", err)
	}
	if err := js.DeleteStream(ctx, "APP"); err != nil {
		t.Fatalf("delete an own stream: %v", err)
	}
	if h := a.BufferHealth(); len(h.Missing) > 0 {
		t.Fatalf("missing streams: %v", h.Missing)
	}
	// The local users' passwords are the agent's business: no warning a
	// technician cannot act on.
	if strings.Contains(a.logs.String(), `level=WARN msg="Plaintext passwords`) {
		t.Fatalf("plaintext password warning logged:\n%s", a.logs)
	}
}

// The local admin (local_auth) may delete an agent stream; the agent
// recreates it at once (on the stream-deleted advisory, not at the next
// watch round), records the unforwarded readings the delete took as a
// loss, and while the stream is missing status says down.
func TestDeletedStreamRecreated(t *testing.T) {
	a := startAgent(t, "local_auth: {user: admin, password: pw}\n")
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(a.logs.String())
		}
	})
	js := jsConnect(t, a.ClientURL(), nats.UserInfo("admin", "pw"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publishReadings(ctx, t, js, "telemetry.t", 10)
	a.buf.watcher.Check(ctx) // the extent the loss is measured against

	start := time.Now()
	if err := js.DeleteStream(ctx, buffer.StreamTelemetry); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		_, err := js.Stream(ctx, buffer.StreamTelemetry)
		if err != nil {
			return errors.New("still waiting for TELEMETRY to be recreated")
		}
		return nil
	})
	t.Logf("recreated %s after the delete (watch interval %s)", time.Since(start).Round(time.Millisecond), buffer.WatchInterval)
	if d := time.Since(start); d >= buffer.WatchInterval {
		t.Errorf("recreated after %s: not on the advisory but at a watch round", d)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.Publish(c, "telemetry.t", []byte("after"))
		if err != nil {
			return errors.New("still waiting for a publish to be acknowledged after the recreation")
		}
		return nil
	})
	testkit.WaitFor(t, 10*time.Second, func() error {
		if a.BufferHealth().Recreated < 1 {
			return errors.New("still waiting for the recreation in health")
		}
		return nil
	})
	s := a.Status(ctx)
	var m strings.Builder
	writeMetrics(&m, s, 0)
	if s.Store.RecreatedStreams < 1 || !strings.Contains(m.String(), "edge_agent_streams_recreated_total 1\n") {
		t.Fatalf("recreation not counted in status (%d) or metrics:\n%s", s.Store.RecreatedStreams, m.String())
	}
	if len(s.Store.Losses) != 1 || s.Store.Losses[0].Count != 10 || s.Store.Losses[0].From != 1 || s.Store.Losses[0].To != 10 {
		t.Fatalf("the 10 unforwarded readings the delete took are not recorded as lost: %+v", s.Store.Losses)
	}
	if !strings.Contains(a.logs.String(), "recreated it") {
		t.Fatalf("recreation not logged:\n%s", a.logs)
	}
	if _, err := AckLoss(ctx, a.Config().ControlSocket); err != nil {
		t.Fatal(err)
	}

	if err := js.DeleteStream(ctx, buffer.StateStream); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		// A short call: a request lost in a JetStream restart must not
		// hold the wait past its deadline.
		c, cc := context.WithTimeout(ctx, time.Second)
		defer cc()
		_, err := js.Stream(c, buffer.StateStream)
		if err != nil {
			return errors.New("still waiting for the cursor backup stream to be recreated")
		}
		return nil
	})

	// While an agent stream is missing (the recreation failing: see
	// buffer's TestWatcherRecreatesDeletedStream) status says down.
	missing := Status{Running: true, Store: StoreStatus{MissingStreams: []string{buffer.StreamTelemetry}}}
	if code, w := missing.Health(); code != ExitDown || !strings.Contains(w[0].Message, "TELEMETRY is missing") {
		t.Fatalf("health with TELEMETRY missing: %d %+v", code, w)
	}
	// Likewise while a stream created anew is not checked yet (buffer's
	// TestWatcherRetriesAFailedRecreateCheck): the forwarder holds it.
	unchecked := Status{Running: true, Store: StoreStatus{UncheckedStreams: []string{buffer.StreamTelemetry}}}
	if code, w := unchecked.Health(); code != ExitDown || !strings.Contains(w[0].Message, "TELEMETRY was created anew") {
		t.Fatalf("health with TELEMETRY unchecked: %d %+v", code, w)
	}
}
