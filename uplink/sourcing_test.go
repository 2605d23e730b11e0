package uplink

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// Hub pulls: through the documented hub config, a hub stream sourcing the
// site's streams over the leaf gets every reading once, under the same
// subjects the forwarder would use, with no forwarder running.
func TestSourcingHubPulls(t *testing.T) {
	e := docsEnv(t, "store-0042", "store-0042")
	e.leafUp()
	e.publish("telemetry.ambient", 300, []byte(`{"t":4.1}`))
	e.publish("alerts.door", 2, []byte(`{"open":true}`))
	ctx := t.Context()
	s, err := e.hubJS.CreateStream(ctx, hubops.SourcingStreamConfig("SITE_store-0042", "edge", "store-0042", buffer.Lanes, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 60*time.Second, func() error {
		info, err := s.Info(ctx)
		if !(err == nil && info.State.Msgs == 302) {
			return errors.New("still waiting for sourced readings at the hub")
		}
		return nil
	})
	tele, err := s.Info(ctx, jetstream.WithSubjectFilter("edge.store-0042.>"))
	if err != nil {
		t.Fatal(err)
	}
	if tele.State.NumSubjects != 2 || tele.State.Subjects["edge.store-0042.telemetry.ambient"] != 300 || tele.State.Subjects["edge.store-0042.alerts.door"] != 2 {
		t.Fatalf("sourced subjects %v", tele.State.Subjects)
	}
}
