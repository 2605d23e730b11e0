package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink"
	"github.com/edge-agent/edge-agent/uplink/hubops"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// heartbeats collects the heartbeats the hub receives on subject.
func heartbeats(t *testing.T, nc *nats.Conn, subject string) func() []wire.Heartbeat {
	t.Helper()
	ch := make(chan *nats.Msg, 1024)
	if _, err := nc.ChanSubscribe(subject, ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []wire.Heartbeat
	return func() []wire.Heartbeat {
		for {
			select {
			case m := <-ch:
				var hb wire.Heartbeat
				if err := json.Unmarshal(m.Data, &hb); err != nil {
					t.Fatalf("heartbeat on %s is not JSON: %v: %s", m.Subject, err, m.Data)
				}
				if len(m.Data) >= 1024 {
					t.Fatalf("heartbeat is %d bytes, want well under 1 KiB: %s", len(m.Data), m.Data)
				}
				got = append(got, hb)
			default:
				return got
			}
		}
	}
}

func TestHeartbeat(t *testing.T) {
	hub, _ := startHub(t, nil, statusStream)
	heard := heartbeats(t, connect(t, hub.ClientURL()), "edge.store-0042.status")
	// A realistic site: ten sensors with long names, two of them failing.
	var sb strings.Builder
	for i := range 10 {
		fail := ""
		if i >= 8 {
			fail = ", fail_every: 1"
		}
		fmt.Fprintf(&sb, "  - {name: coldroom-temperature-%02d, driver: sim, interval: 200ms%s}\n", i, fail)
	}
	a := startAgent(t, fmt.Sprintf("site: store-0042\nuplink:\n  hub_urls: [%s]\n  heartbeat: 1s\nsensors:\n%s", leafURL(t, hub, "nats"), sb.String()))

	var last wire.Heartbeat
	testkit.WaitFor(t, 20*time.Second, func() error {
		hbs := heard()
		if len(hbs) == 0 {
			return errors.New("still waiting for a heartbeat showing 8 sensors ok and 2 failing")
		}
		last = hbs[len(hbs)-1]
		if !(last.SensorsOK == 8 && len(last.Failing) == 2) {
			return errors.New("still waiting for a heartbeat showing 8 sensors ok and 2 failing")
		}
		return nil
	})
	if last.Schema != wire.HeartbeatSchema || last.Site != "store-0042" || last.Version != Version || last.Interval != 1 {
		t.Errorf("heartbeat header = %+v", last)
	}
	if !regexp.MustCompile(`^store-0042-[0-9a-f]{8}$`).MatchString(last.Server) || last.Server != a.Server().Name() {
		t.Errorf("server name %q, want <site>-<8 hex> and the embedded server's name %q", last.Server, a.Server().Name())
	}
	if last.Instance == "" || last.Link != uplink.StateConnected || last.Clock == "" || last.DiskUsed == 0 || last.Dup {
		t.Errorf("heartbeat body = %+v", last)
	}
	if _, ok := last.Backlog["TELEMETRY"]; !ok {
		t.Errorf("heartbeat has no TELEMETRY backlog: %+v", last.Backlog)
	}
	if !slices.Equal(last.Failing, []string{"coldroom-temperature-08", "coldroom-temperature-09"}) {
		t.Errorf("failing sensors = %v", last.Failing)
	}
	// Every interval while connected, not only on connect; one instance.
	testkit.WaitFor(t, 20*time.Second, func() error {
		if len(heard()) < 3 {
			return errors.New("still waiting for three heartbeats")
		}
		return nil
	})
	for _, hb := range heard() {
		if hb.Instance != last.Instance {
			t.Fatalf("instance id changed within one run: %q then %q", last.Instance, hb.Instance)
		}
	}
	if _, dup := a.DuplicateSite(); dup {
		t.Error("a lone site reports a duplicate")
	}
}

func TestHeartbeatOnEveryConnect(t *testing.T) {
	hub, js := startHub(t, nil, statusStream)
	// Default 30 s interval: anything heard within the test is a connect beat.
	a := startAgent(t, fmt.Sprintf("uplink:\n  hub_urls: [%s]\n  reconnect: {min: 100ms, max: 500ms}\n", leafURL(t, hub, "nats")))
	leafUp(t, hub, a)
	stream, _ := js.Stream(context.Background(), hubops.StatusStream)
	lastSeq := func() uint64 {
		info, err := stream.Info(context.Background())
		if err != nil {
			return 0
		}
		return info.State.LastSeq
	}
	testkit.WaitFor(t, 15*time.Second, func() error {
		if lastSeq() != 1 {
			return errors.New("still waiting for the connect heartbeat in EDGE_STATUS")
		}
		return nil
	})
	// Kick the leaf from the hub side; the agent reconnects and says so.
	lz, _ := hub.Leafz(nil)
	if len(lz.Leafs) != 1 {
		t.Fatalf("leafz: %+v", lz)
	}
	hub.DisconnectClientByID(lz.Leafs[0].ID)
	testkit.WaitFor(t, 20*time.Second, func() error {
		if lastSeq() != 2 {
			return errors.New("still waiting for a second connect heartbeat after the reconnect")
		}
		return nil
	})
}
