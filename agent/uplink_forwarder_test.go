package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink"
)

// zeros128 is a 128-byte reading.
func zeros128(int) []byte { return make([]byte, 128) }

func fwdHubCount(js jetstream.JetStream) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "EDGE")
	if err != nil {
		return 0
	}
	return s.CachedInfo().State.Msgs
}

// fwdCheckOnce reads the whole hub stream and fails on any loss, duplicate
// or reorder of stream's sequences 1..n from site.
func fwdCheckOnce(t *testing.T, js jetstream.JetStream, site, stream string, n uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, "EDGE", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"edge." + site + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := c.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	ids := map[string]bool{}
	var next uint64 = 1
	for next <= n {
		m, err := it.Next()
		if err != nil {
			t.Fatalf("hub stream ended at %s seq %d of %d: %v", stream, next-1, n, err)
		}
		h := m.Headers()
		if h.Get(uplink.HdrStream) != stream {
			continue
		}
		id := h.Get(nats.MsgIdHdr)
		if ids[id] || h.Get(uplink.HdrSeq) != fmt.Sprint(next) {
			t.Fatalf("hub has %s Edge-Seq %s (id %s, seen before: %v) where %d was expected", stream, h.Get(uplink.HdrSeq), id, ids[id], next)
		}
		ids[id] = true
		next++
	}
	if total := fwdHubCount(js); total != n {
		t.Fatalf("hub stream holds %d messages, want %d", total, n)
	}
}

func TestUplinkForwarderRestart(t *testing.T) {
	hub, hjs := startHub(t, nil, edgeStream)
	a := startAgent(t, fmt.Sprintf("site: store-0042\nbuffer: {sync: 1s}\nuplink:\n  hub_urls: [%s]\n", leafURL(t, hub, "nats")))
	leafUp(t, hub, a)
	const n = 10000
	publishAsync(t, a, "telemetry.ambient", 0, n, zeros128)
	testkit.WaitFor(t, time.Minute, func() error {
		if fwdHubCount(hjs) < 2000 {
			return errors.New("still waiting for forwarding under way")
		}
		return nil
	})
	cfg := a.Config()
	if err := a.stop(); err != nil { // mid-window
		t.Fatal(err)
	}
	b := runAgent(t, cfg)
	leafUp(t, hub, b)
	testkit.WaitFor(t, 2*time.Minute, func() error {
		if b.State().Cursor("TELEMETRY") != n {
			return errors.New("still waiting for backlog forwarded after the restart")
		}
		return nil
	})
	fwdCheckOnce(t, hjs, "store-0042", "TELEMETRY", n)
	st := b.ForwarderStatus()
	if st == nil || st.HubStream != "EDGE" || st.HubDomain != "hub" || st.ReasonClass != "" {
		t.Fatalf("forwarder status after restart: %+v", st)
	}
}

// A telemetry backlog built while the leaf was down drains through a
// metered link; an alert raised meanwhile overtakes it.
func TestUplinkAlertOvertakesBacklog(t *testing.T) {
	// The hub's leaf port is reserved, then the hub goes away: the agent
	// starts with its WAN down.
	first := testkit.RunServer(t, testkit.HubOpts(t))
	url := leafURL(t, first, "nats")
	first.Shutdown()
	first.WaitForShutdown()
	a := startAgent(t, fmt.Sprintf("buffer: {sync: 1s}\nuplink:\n  hub_urls: [%s]\n  bandwidth: 100KB\n  reconnect: {min: 100ms, max: 500ms}\n", url))
	const backlog = 20000
	publishAsync(t, a, "telemetry.x", 0, backlog, zeros128)

	o := testkit.HubOpts(t)
	if _, err := fmt.Sscanf(url, "nats://127.0.0.1:%d", &o.LeafNode.Port); err != nil {
		t.Fatal(err)
	}
	hub, hjs := startHub(t, o, edgeStream)
	leafUp(t, hub, a)
	testkit.WaitFor(t, time.Minute, func() error {
		if fwdHubCount(hjs) <= 0 {
			return errors.New("still waiting for backlog draining")
		}
		return nil
	})
	if _, err := jsConnect(t, a.ClientURL()).Publish(t.Context(), "alerts.fire", []byte(`{"zone":3}`)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, time.Minute, func() error {
		if a.ForwarderStatus().Forwarded["ALERTS"] != 1 {
			return errors.New("still waiting for alert at the hub")
		}
		return nil
	})
	if got := a.ForwarderStatus().Forwarded["TELEMETRY"]; got >= backlog {
		t.Fatalf("the alert waited for the whole backlog (%d telemetry first)", got)
	}
}
