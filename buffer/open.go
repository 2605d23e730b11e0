package buffer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// OpenStreams brings the JetStream store up to the agent's config and
// checks it against st: at a start, and after JetStream restarted or an
// agent stream was deleted. It is ReconcileStreams then checkStreams,
// with the requests that write the store's files side by side (creating
// the agent's streams and StateStream, then their metadata updates) and
// every stream's ids committed to state.db in one transaction.
func OpenStreams(ctx context.Context, js jetstream.JetStream, st *State, c Config, opened time.Time, log *slog.Logger) ([]string, error) {
	var (
		created        map[string]string
		err, backupErr error
		wg             sync.WaitGroup
	)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wg.Go(func() { created, err = reconcileStreams(ctx, js, c, st.StoreID(), log) })
	wg.Go(func() { backupErr = ensureStateStream(ctx, js) })
	wg.Wait()
	if err != nil {
		return nil, err
	}
	found, err := checkStreams(ctx, js, st, opened, created, backupErr, log)
	if err != nil {
		return found, fmt.Errorf("check local streams against state.db: %w", err)
	}
	return found, nil
}
