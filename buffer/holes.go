package buffer

import (
	"context"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// causeMissing: the agent never deletes a message inside its own streams
// (limits evict the oldest first), so a hole is nats-server dropping the
// damaged records of an older block it read while running, or a local
// admin's message delete. Either way the reading is gone before the hub
// had it.
const causeMissing = "missing from the stream (damaged block or deleted message)"

// holesKey holds the interior sequences of a stream already seen missing,
// so each is recorded once across rounds, acknowledgements and restarts.
func holesKey(stream string) string { return "holes." + stream }

// recordHoles records the messages missing from inside stream: sequences
// between its first and last that nats-server lists as deleted. Only when
// the stream's count of deleted messages differs from the holes already
// seen does it ask for the list; holes at or below the cursor reached the
// hub and are not a loss.
func (w *Watcher) recordHoles(ctx context.Context, s jetstream.Stream, name string, state jetstream.StreamState) {
	var seen []uint64
	if _, err := w.st.GetJSON(holesKey(name), &seen); err != nil {
		w.log.Error("buffer: cannot read the holes already recorded", "stream", name, "err", err)
		return
	}
	if len(seen) == state.NumDeleted {
		return
	}
	info, err := s.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return // the next round asks again
	}
	now := info.State.Deleted
	var fresh []uint64
	for _, q := range now {
		if _, found := slices.BinarySearch(seen, q); !found {
			fresh = append(fresh, q)
		}
	}
	// Holes the stream no longer lists (evicted with the oldest messages,
	// or a recreated stream's new sequence space) are dropped here. Stored
	// before the losses, so the loss's commit carries them too.
	slices.Sort(now)
	if err := w.st.PutJSON(holesKey(name), now); err != nil {
		w.log.Error("buffer: cannot store the holes recorded", "stream", name, "err", err)
		return
	}
	if err := w.st.RecordLost(name, lostRuns(name, causeMissing, fresh)); err != nil {
		w.log.Error("buffer: cannot record lost messages", "stream", name, "err", err)
	}
}
