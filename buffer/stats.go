package buffer

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LaneStats is one local stream as status and metrics show it.
type LaneStats struct {
	Stream   string    `json:"stream"`
	Messages uint64    `json:"messages"`
	Bytes    uint64    `json:"bytes"`
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	Oldest   time.Time `json:"oldest,omitzero"`
	// Cursor is the highest contiguous sequence the hub acknowledged.
	Cursor uint64 `json:"cursor"`
	// Backlog is what the hub does not have yet and the stream still holds.
	Backlog uint64 `json:"backlog"`
	// BacklogBytes estimates the backlog's size from the average message.
	BacklogBytes uint64 `json:"backlog_bytes"`
	// Evicted counts messages limits removed before the hub had them: when
	// an outage outlasts the buffer, this is the data that is gone.
	Evicted uint64 `json:"evicted_unforwarded"`
}

// Stats reports the agent's streams in Lanes order.
func Stats(ctx context.Context, js jetstream.JetStream, st *State) ([]LaneStats, error) {
	out := make([]LaneStats, 0, len(Lanes))
	for _, name := range Lanes {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return out, fmt.Errorf("stats for stream %s: %w", name, err)
		}
		out = append(out, laneStats(name, s.CachedInfo().State, st))
	}
	return out, nil
}

func laneStats(name string, s jetstream.StreamState, st *State) LaneStats {
	l := LaneStats{Stream: name, Messages: s.Msgs, Bytes: s.Bytes, FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, Cursor: st.Cursor(name), Evicted: st.Evicted(name)}
	if s.Msgs > 0 {
		l.Oldest = s.FirstTime
	}
	// Messages at or below the cursor, or below the first sequence, are
	// either at the hub or gone: neither is backlog.
	from := max(l.Cursor, s.FirstSeq-min(s.FirstSeq, 1))
	if s.LastSeq > from {
		l.Backlog = min(s.LastSeq-from, s.Msgs)
	}
	if s.Msgs > 0 {
		l.BacklogBytes = s.Bytes / s.Msgs * l.Backlog
	}
	return l
}

// evictedUnforwarded is how many of the messages between the previous and
// the current first sequence were above the cursor, i.e. removed by limits
// before the hub acknowledged them.
func evictedUnforwarded(prevFirst, first, cursor uint64) uint64 {
	if prevFirst == 0 || first <= prevFirst {
		return 0
	}
	from := max(prevFirst, cursor+1)
	if first <= from {
		return 0
	}
	return first - from
}
