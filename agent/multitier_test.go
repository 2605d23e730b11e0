package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// The README's multi-tier configs, verbatim but for the ports, store
// directory and URL that the test fills in (the README uses 4222/7422, TLS
// and credentials; see "Multi-tier").
const globalHubConf = `
server_name: global-1
listen: 127.0.0.1:%d
jetstream {
  domain: global
  store_dir: %q
}
leafnodes {
  listen: 127.0.0.1:%d
}
`

const regionalHubConf = `
server_name: region-eu-1
listen: 127.0.0.1:%d
# No JetStream here: the regional tier fans in leaf connections and keeps
# no data, so losing a regional node loses nothing (agents buffer locally).
leafnodes {
  listen: 127.0.0.1:%d
  remotes = [
    { urls: [%q] }
  ]
}
`

func TestMultiTier(t *testing.T) {
	ctx := context.Background()
	global := serverFromConfig(t, fmt.Sprintf(globalHubConf, -1, filepath.Join(t.TempDir(), "global"), -1))
	gc := connect(t, global.ClientURL())
	gjs, _ := jetstream.New(gc)
	hubInit(t, gjs, edgeStream, statusStream)
	regional := serverFromConfig(t, fmt.Sprintf(regionalHubConf, -1, -1, leafURL(t, global, "nats")))
	testkit.WaitFor(t, 15*time.Second, func() error {
		if global.NumLeafNodes() != 1 {
			return errors.New("still waiting for regional hub leaf-connected to the global hub")
		}
		return nil
	})

	a := startAgent(t, fmt.Sprintf("site: store-0042\nuplink:\n  hub_urls: [%s]\nsensors:\n  - {name: fridge, driver: sim, interval: 200ms}\n", leafURL(t, regional, "nats")))
	testkit.WaitFor(t, 15*time.Second, func() error {
		if !(a.Server().NumLeafNodes() == 1 && regional.NumLeafNodes() == 2) {
			return errors.New("still waiting for agent leaf-connected to the regional hub")
		}
		return nil
	})

	t.Run("heartbeat reaches the global fleet table", func(t *testing.T) {
		var sites []hubops.SiteView
		testkit.WaitFor(t, 20*time.Second, func() error {
			var err error
			sites, err = hubops.ReadFleet(ctx, gjs, "edge")
			if !(err == nil && len(sites) == 1) {
				return errors.New("still waiting for store-0042 in the global EDGE_STATUS")
			}
			return nil
		})
		if hb := sites[0].Heartbeat; sites[0].Site != "store-0042" || hb.Server != a.Server().Name() {
			t.Fatalf("global fleet view = %+v", sites[0])
		}
	})

	t.Run("a request from the global side reaches the agent", func(t *testing.T) {
		subject := "edge.store-0042.agent.ping"
		lc := connect(t, a.ClientURL())
		if a.ForwarderStatus() == nil {
			// The downlink is not wired yet: answer the same subject from a
			// local app, which crosses the same two leaf hops.
			if _, err := lc.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond([]byte("pong from " + a.Server().Name())) }); err != nil {
				t.Fatal(err)
			}
			lc.Flush()
		}
		interest(t, global, subject)
		r, err := gc.Request(subject, nil, 10*time.Second)
		if err != nil {
			t.Fatalf("request %s from the global hub: %v", subject, err)
		}
		if !strings.Contains(string(r.Data), "store-0042") && !strings.Contains(string(r.Data), "pong") {
			t.Fatalf("reply = %s", r.Data)
		}
	})

	t.Run("a reading is stored at the global hub exactly once", func(t *testing.T) {
		// Not a sensor's subject: the forwarder's own traffic must not count.
		subject := "edge.store-0042.telemetry.probe"
		interest(t, a.Server(), subject)
		lc := connect(t, a.ClientURL())
		// What the forwarder sends: a publish with a message id, acked by
		// the global stream through both hops; a resend after a lost ack
		// carries the same id and is dropped there.
		for i := range 2 {
			m := nats.NewMsg(subject)
			m.Data = []byte(`{"temperature":3.9}`)
			m.Header.Set(nats.MsgIdHdr, "store-0042.x1.TELEMETRY.1")
			r, err := lc.RequestMsg(m, 10*time.Second)
			if err != nil {
				t.Fatalf("publish %d through regional to global: %v", i, err)
			}
			var ack struct {
				Stream    string `json:"stream"`
				Domain    string `json:"domain"`
				Duplicate bool   `json:"duplicate"`
			}
			if err := json.Unmarshal(r.Data, &ack); err != nil || ack.Stream != "EDGE" || ack.Domain != "global" || ack.Duplicate != (i == 1) {
				t.Fatalf("ack %d = %s (%v)", i, r.Data, err)
			}
		}
		s, _ := gjs.Stream(ctx, "EDGE")
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil || info.State.Subjects[subject] != 1 {
			t.Fatalf("global EDGE holds %v of %s (%v), want exactly 1", info.State.Subjects, subject, err)
		}
		if a.ForwarderStatus() == nil {
			return
		}
		// Through the forwarder: one local reading, stored once at the top.
		if _, err := jsConnect(t, a.ClientURL()).Publish(ctx, "telemetry.door", []byte(`{"open":true}`)); err != nil {
			t.Fatal(err)
		}
		door := "edge.store-0042.telemetry.door"
		count := func(subj string) uint64 {
			info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
			if err != nil {
				return 0
			}
			return info.State.Subjects[subj]
		}
		testkit.WaitFor(t, 20*time.Second, func() error {
			if count(door) <= 0 {
				return fmt.Errorf("still waiting for %s at the global hub", door)
			}
			return nil
		})
		// Let the forwarder carry on with the sampled readings: anything it
		// would resend of the door reading would have arrived by then.
		fridge := "edge.store-0042.telemetry.fridge"
		base := count(fridge)
		testkit.WaitFor(t, 20*time.Second, func() error {
			if count(fridge) < base+10 {
				return errors.New("still waiting for ten more forwarded readings")
			}
			return nil
		})
		if n := count(door); n != 1 {
			t.Fatalf("the door reading is stored %d times at the global hub, want 1", n)
		}
	})
}
