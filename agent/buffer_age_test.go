package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/sensors"
)

// The agent's streams carry no JetStream max_age (a stream an older agent
// made with one is changed at the next start, logged), and buffer.max_age
// is the ager's: it runs, checkpoints into state.db, and shows in status.
func TestAgentAgeLimitIsTheAgers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t, "buffer: {max_age: 48h}\n")
	ta := runAgent(t, cfg)
	js := jsConnect(t, ta.ClientURL())
	for _, name := range buffer.Lanes {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxAge; got != 0 {
			t.Fatalf("%s has JetStream MaxAge %s, want 0", name, got)
		}
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		age := ta.Status(ctx).Store.Age
		if !(age != nil && age.Checkpoints >= 1 && age.MaxAge == 48*time.Hour) {
			return errors.New("still waiting for the ager's first checkpoint in status")
		}
		return nil
	})

	// What an agent from before this change left behind.
	s, err := js.Stream(ctx, buffer.StreamTelemetry)
	if err != nil {
		t.Fatal(err)
	}
	old := s.CachedInfo().Config
	old.MaxAge = 720 * time.Hour
	// Through the agent's own connection: local apps may not reconfigure
	// the agent's streams.
	admin, err := jetstream.New(ta.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UpdateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := ta.stop(); err != nil {
		t.Fatal(err)
	}
	st, err := buffer.OpenStateReadOnly(filepath.Join(cfg.StateDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	ta = runAgent(t, cfg)
	js = jsConnect(t, ta.ClientURL())
	if s, err = js.Stream(ctx, buffer.StreamTelemetry); err != nil || s.CachedInfo().Config.MaxAge != 0 {
		t.Fatalf("TELEMETRY after the restart: %v, MaxAge %v", err, s.CachedInfo().Config.MaxAge)
	}
	if !strings.Contains(ta.logs.String(), "stream max_age set to 0") {
		t.Fatalf("no log line for the migrated max_age:\n%s", ta.logs)
	}
	// The stop checkpoint and the start one, at least: the agent time
	// went on from where the first run left it.
	testkit.WaitFor(t, 30*time.Second, func() error {
		age := ta.Status(ctx).Store.Age
		if !(age != nil && age.Checkpoints >= 3) {
			return errors.New("still waiting for checkpoints across the restart")
		}
		return nil
	})
}

// Under the test clock a running agent's wall clock jumps: readings are
// stamped with it (unsynchronised, for the hub to re-base), status warns,
// the jump is seen and logged, and nothing is expired by it.
func TestAgentTestClockJump(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clockFile := filepath.Join(t.TempDir(), "clock")
	if err := os.WriteFile(clockFile, []byte("1970-01-01T00:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(TestClockEnv, clockFile)
	ta := startAgent(t, "buffer: {max_age: 10m}\nsensors:\n  - {name: room, driver: sim, interval: 50ms}\n")
	if !strings.Contains(ta.logs.String(), "TEST CLOCK in effect") {
		t.Fatalf("startup does not log the test clock:\n%s", ta.logs)
	}
	js := jsConnect(t, ta.ClientURL())
	cons, err := js.OrderedConsumer(ctx, buffer.StreamTelemetry, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"telemetry.room"}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var r sensors.Reading
	if err := json.Unmarshal(msg.Data(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Time.Year() != 1970 || r.ClockSynced || r.Mono <= 0 {
		t.Fatalf("reading under a 1970 test clock: ts %s, clock_synced %v, mono_ns %d (want 1970, false, the kernel's)", r.Time, r.ClockSynced, r.Mono)
	}
	hasWarning := func(s Status, text string) bool {
		for _, w := range s.Warnings {
			if strings.Contains(w.Message, text) {
				return true
			}
		}
		return false
	}
	if s := ta.Status(ctx); !hasWarning(s, "TEST CLOCK in effect") || !strings.Contains(s.Clock.TestClock, clockFile) {
		t.Fatalf("status does not warn about the test clock: %+v", s.Clock)
	}
	before := telemetryState(ctx, t, js)
	if err := os.WriteFile(clockFile, []byte("+720h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		s := ta.Status(ctx)
		if !(s.Clock.Jump != nil && s.Clock.Jump.Size > 50*365*24*time.Hour && hasWarning(s, "wall clock jumped by +")) {
			return errors.New("still waiting for the jump in status")
		}
		return nil
	})
	if !strings.Contains(ta.logs.String(), "wall clock jumped") {
		t.Fatalf("the jump was not logged:\n%s", ta.logs)
	}
	if got := telemetryState(ctx, t, js); got.FirstSeq != 1 || got.Msgs <= before.Msgs {
		t.Fatalf("TELEMETRY went from %d messages (first seq %d) to %d (first seq %d) across a +56 years jump", before.Msgs, before.FirstSeq, got.Msgs, got.FirstSeq)
	}
	if age := ta.Status(ctx).Store.Age; age == nil || len(age.Expired) != 0 {
		t.Fatalf("age status after the jump: %+v (nothing may expire)", age)
	}
}

func telemetryState(ctx context.Context, t *testing.T, js jetstream.JetStream) jetstream.StreamState {
	t.Helper()
	s, err := js.Stream(ctx, buffer.StreamTelemetry)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State
}
