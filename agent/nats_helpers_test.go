package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// jsConnect is a JetStream handle on a new connection to url (an agent's
// client port or a hub's), closed when the test ends.
func jsConnect(t testing.TB, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(connect(t, url, opts...))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publishReadings publishes n readings on subject through js, each one
// acknowledged.
func publishReadings(ctx context.Context, t testing.TB, js jetstream.JetStream, subject string, n int) {
	t.Helper()
	for i := range n {
		if _, err := js.Publish(ctx, subject, fmt.Appendf(nil, "reading %d", i)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// publishAsync stores payload(i) for i from from to to-1 on subject in the
// agent's local buffer, as a local app on the client port does, waiting
// for the acknowledgements every thousand readings.
func publishAsync(t *testing.T, a *testAgent, subject string, from, to int, payload func(int) []byte) {
	t.Helper()
	js := jsConnect(t, a.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := from; i < to; i++ {
		if _, err := js.PublishAsync(subject, payload(i)); err != nil {
			t.Fatal(err)
		}
		if (i-from)%1000 == 999 || i == to-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				t.Fatal("local publishes not acknowledged")
			}
		}
	}
}

// hubSetup creates on a test hub one thing `edge-agent hub init` creates.
type hubSetup func(context.Context, jetstream.JetStream) error

// edgeStream is the fleet stream EDGE.
func edgeStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := hubops.EnsureHubStream(ctx, js, hubops.HubStreamConfig("EDGE", "edge", 2*time.Hour))
	return err
}

// statusStream is the fleet's last-heartbeat table EDGE_STATUS.
func statusStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := hubops.EnsureStatusStream(ctx, js, "edge")
	return err
}

// startHub runs a hub (o, or testkit.HubOpts when nil) with what setup
// creates on it, and a JetStream handle on its client port.
func startHub(t testing.TB, o *server.Options, setup ...hubSetup) (*server.Server, jetstream.JetStream) {
	t.Helper()
	if o == nil {
		o = testkit.HubOpts(t)
	}
	hub := testkit.RunServer(t, o)
	js := jsConnect(t, hub.ClientURL())
	hubInit(t, js, setup...)
	return hub, js
}

// hubInit runs each setup on js.
func hubInit(t testing.TB, js jetstream.JetStream, setup ...hubSetup) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, f := range setup {
		if err := f(ctx, js); err != nil {
			t.Fatal(err)
		}
	}
}

// serverFromConfig runs a server from nats-server config text, with
// tune's adjustments to the options the text gives.
func serverFromConfig(t *testing.T, text string, tune ...func(*server.Options)) *server.Server {
	t.Helper()
	path := writeFile(t, t.TempDir(), "hub.conf", text, 0o600)
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v\n%s", path, err, text)
	}
	o.NoLog, o.NoSigs = true, true
	for _, f := range tune {
		f(o)
	}
	return testkit.RunServer(t, o)
}
