package buffer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// OpenStreams brings the JetStream store up to the agent's config and
// checks it against st: after JetStream restarted or an agent stream was
// deleted. It is CreateStreams then Opening.Check.
func OpenStreams(ctx context.Context, js jetstream.JetStream, st *State, c Config, opened time.Time, log *slog.Logger) ([]string, error) {
	o, err := CreateStreams(ctx, js, st, c, log)
	if err != nil {
		return nil, err
	}
	return o.Check(ctx, opened)
}

// Opening is the agent's streams created or reconciled, not yet checked
// against state.db. Local publishes are stored from here on; what needs
// the streams' ids (forwarding, a replay, the age limit) waits for Check.
type Opening struct {
	js   jetstream.JetStream
	st   *State
	seen map[string]seenLane
	log  *slog.Logger
}

// CreateStreams is the part of opening the store that local apps wait
// for: the agent's streams exist with this config (ReconcileStreams, side
// by side). The agent's start counts as ready after it and runs Check
// next, so a start does not keep readings out for the check's requests
// and the state.db commit.
func CreateStreams(ctx context.Context, js jetstream.JetStream, st *State, c Config, log *slog.Logger) (*Opening, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seen, err := reconcileStreams(ctx, js, c, st.StoreID(), st.unknownLanes(), log)
	if err != nil {
		return nil, err
	}
	if err := st.pendChecks(seen); err != nil {
		return nil, fmt.Errorf("record the streams' ends until they are checked: %w", err)
	}
	return &Opening{js: js, st: st, seen: seen, log: log}, nil
}

// Check creates StateStream if it is missing and checks the streams
// against st (checkStreams): the damage found, one line per stream.
// opened is when the store was opened; messages stored since are new.
func (o *Opening) Check(ctx context.Context, opened time.Time) ([]string, error) {
	backupErr := ensureStateStream(ctx, o.js)
	if backupErr != nil && ctx.Err() != nil {
		return nil, ctx.Err() // stopping: not a backup stream that cannot be created
	}
	found, err := checkStreams(ctx, o.js, o.st, opened, o.seen, backupErr, o.log)
	if err != nil {
		return found, fmt.Errorf("check local streams against state.db: %w", err)
	}
	return found, nil
}
