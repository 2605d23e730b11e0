package buffer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names and subjects: part of the subject contract in the README.
const (
	StreamTelemetry = "TELEMETRY"
	StreamAlerts    = "ALERTS"
)

// Lanes lists the agent's streams in forwarding priority order: alarms first.
var Lanes = []string{StreamAlerts, StreamTelemetry}

// StreamConfigs is what the agent's streams must look like for this config.
func StreamConfigs(c Config) []jetstream.StreamConfig {
	alertBytes := max(int64(c.MaxBytes)/10, 1<<20)
	base := func(name, subj string, bytes int64) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: "edge-agent local buffer for " + subj + " (limits retention: kept after forwarding for local replay)",
			Subjects:    []string{subj},
			Storage:     jetstream.FileStorage,
			Replicas:    1,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxBytes:    bytes,
			MaxAge:      c.MaxAge,
			// The forwarder's message id makes resends idempotent at the hub; a
			// local window catches local apps that retry a publish.
			Duplicates: 2 * time.Minute,
		}
	}
	return []jetstream.StreamConfig{
		base(StreamAlerts, "alerts.>", alertBytes),
		base(StreamTelemetry, "telemetry.>", int64(c.MaxBytes)-alertBytes),
	}
}

// EnsureStreams creates the agent's streams or reconciles their limits in
// place. A change that would need a new stream (storage type, subjects
// overlap) is refused with the reason, never applied by deleting data.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c Config) error {
	for _, want := range StreamConfigs(c) {
		s, err := js.Stream(ctx, want.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if _, err := js.CreateStream(ctx, want); err != nil {
				return fmt.Errorf("create stream %s: %w", want.Name, err)
			}
			continue
		case err != nil:
			return fmt.Errorf("look up stream %s: %w", want.Name, err)
		}
		have := s.CachedInfo().Config
		if have.Storage != want.Storage {
			return fmt.Errorf("stream %s uses %s storage but the agent needs file storage; it cannot be changed in place: back it up (`nats stream backup %s`) and remove it to let the agent recreate it", want.Name, have.Storage, want.Name)
		}
		upd := have
		upd.MaxBytes, upd.MaxAge, upd.Discard, upd.Subjects, upd.Description = want.MaxBytes, want.MaxAge, want.Discard, want.Subjects, want.Description
		if _, err := js.UpdateStream(ctx, upd); err != nil {
			return fmt.Errorf("update stream %s limits in place: %w", want.Name, err)
		}
	}
	return nil
}
