package uplink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// HubStreamConfig is the hub-side stream that captures every site's
// forwarded readings. The duplicate window must outlast the longest resend
// after a crash or reconnect, so resends are dropped, not stored twice.
func HubStreamConfig(name, prefix string, dupWindow time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: "edge-agent fleet ingest: " + prefix + ".<site>.telemetry|alerts.>",
		Subjects:    []string{prefix + ".*.telemetry.>", prefix + ".*.alerts.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  dupWindow,
	}
}

// EnsureHubStream creates the hub stream or verifies an existing one
// captures the fleet subjects; it never changes a stream it did not create.
func EnsureHubStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return js.CreateStream(ctx, want)
	}
	if err != nil {
		return nil, fmt.Errorf("look up hub stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if have.Duplicates < want.Duplicates {
		return s, fmt.Errorf("hub stream %s has a duplicate window of %s, shorter than %s: resends after an outage could be stored twice; raise it with `nats stream edit %s --dupe-window %s`", want.Name, have.Duplicates, want.Duplicates, want.Name, want.Duplicates)
	}
	return s, nil
}
