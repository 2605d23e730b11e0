package jsclient

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// Do hands fn a working JetStream context, returns fn's error, closes its
// connection afterwards, and reports a server that does not answer.
func TestDo(t *testing.T) {
	s := testkit.RunServer(t, testkit.HubOpts(t))
	err := Do(s.ClientURL(), func(js jetstream.JetStream) error {
		_, err := js.AccountInfo(t.Context())
		return err
	})
	if err != nil {
		t.Fatalf("Do against a JetStream server: %v", err)
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if s.NumClients() != 0 {
			return errors.New("Do's connection is still open")
		}
		return nil
	})
	stop := errors.New("stop")
	if err := Do(s.ClientURL(), func(jetstream.JetStream) error { return stop }); err != stop {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
	url := s.ClientURL()
	s.Shutdown()
	s.WaitForShutdown()
	err = Do(url, func(jetstream.JetStream) error { t.Fatal("fn ran without a server"); return nil }, nats.MaxReconnects(0))
	if !errors.Is(err, nats.ErrNoServers) {
		t.Fatalf("Do without a server: %v", err)
	}
}
