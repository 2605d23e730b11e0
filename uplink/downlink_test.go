package uplink

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

func TestDownlink(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	e.leafUp()
	e.publish("telemetry.x", 30, []byte("x"))
	f := e.start(nil)
	startDownlink(t, f, func(ctx context.Context) any { return map[string]any{"site": "s1", "version": "test"} })
	for _, s := range []string{"edge.s1.agent.ping", "edge.s1.agent.status", "edge.s1.agent.replay", "edge.s1.cmd.x"} {
		testkit.WaitFor(t, 10*time.Second, func() error {
			if !e.hub.GlobalAccount().SubscriptionInterest(s) {
				return fmt.Errorf("still waiting for hub sees interest in %s", s)
			}
			return nil
		})
	}
	e.waitCursor("TELEMETRY", 30, 30*time.Second, "forwarded")
	request := func(subject, body string, into any) {
		t.Helper()
		m, err := e.hubNC.Request(subject, []byte(body), 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if err := json.Unmarshal(m.Data, into); err != nil {
			t.Fatalf("%s answered %s: %v", subject, m.Data, err)
		}
	}

	t.Run("ping and status", func(t *testing.T) {
		var pong struct {
			Site string    `json:"site"`
			Time time.Time `json:"time"`
		}
		request("edge.s1.agent.ping", "", &pong)
		if pong.Site != "s1" || pong.Time.IsZero() {
			t.Fatalf("ping = %+v", pong)
		}
		var st map[string]any
		request("edge.s1.agent.status", "", &st)
		if st["version"] != "test" {
			t.Fatalf("status = %v", st)
		}
	})

	t.Run("replay from a sequence", func(t *testing.T) {
		e.recreateHubStream()
		var plans []ReplayPlan
		request("edge.s1.agent.replay", `{"stream":"TELEMETRY","from_seq":21}`, &plans)
		if len(plans) != 1 || plans[0] != (ReplayPlan{Stream: "TELEMETRY", FromSeq: 21, LastSeq: 30, Messages: 10}) {
			t.Fatalf("plan = %+v", plans)
		}
		e.waitHub(10, 30*time.Second, "replayed readings at the hub")
		e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 21, 30)
	})

	t.Run("replay from a time, all streams", func(t *testing.T) {
		cut := time.Now()
		e.publish("telemetry.x", 5, []byte("late"))
		e.waitCursor("TELEMETRY", 35, 30*time.Second, "forwarded")
		var plans []ReplayPlan
		request("edge.s1.agent.replay", `{"from_time":"`+cut.UTC().Format(time.RFC3339Nano)+`"}`, &plans)
		if len(plans) != 2 || plans[0].Stream != "ALERTS" || plans[0].Messages != 0 || plans[1] != (ReplayPlan{Stream: "TELEMETRY", FromSeq: 31, LastSeq: 35, Messages: 5}) {
			t.Fatalf("plans = %+v", plans)
		}
	})

	t.Run("bad replay requests say why", func(t *testing.T) {
		for body, want := range map[string]string{
			`{}`:                             "from_seq",
			`{"stream":"NOPE","from_seq":1}`: "unknown stream",
			`not json`:                       "from_seq",
		} {
			var r replyError
			request("edge.s1.agent.replay", body, &r)
			if !strings.Contains(r.Error, want) {
				t.Errorf("%s: error %q lacks %q", body, r.Error, want)
			}
		}
	})

	t.Run("hub commands reach local apps as cmd.>", func(t *testing.T) {
		app, err := e.leafNC.Subscribe("cmd.>", func(m *nats.Msg) { _ = m.Respond([]byte("done " + m.Subject)) })
		if err != nil {
			t.Fatal(err)
		}
		defer app.Unsubscribe()
		e.leafNC.Flush()
		m, err := e.hubNC.Request("edge.s1.cmd.light.on", nil, 10*time.Second)
		if err != nil || string(m.Data) != "done cmd.light.on" {
			t.Fatalf("reply %v, %v", m, err)
		}
	})
}
