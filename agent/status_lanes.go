package agent

import (
	"context"
	"fmt"

	"github.com/edge-agent/edge-agent/buffer"
)

// laneStats is a stop-gap until the buffer part exposes BufferStats: it
// reports what each local stream holds (an upper bound of the backlog,
// since no forwarder cursor is known here) and no evictions.
func (a *Agent) laneStats(ctx context.Context) ([]LaneStatus, error) {
	if a.js == nil {
		return nil, nil
	}
	var out []LaneStatus
	for _, name := range buffer.Lanes {
		s, err := a.js.Stream(ctx, name)
		if err != nil {
			return out, fmt.Errorf("stream %s: %w", name, err)
		}
		st := s.CachedInfo().State
		out = append(out, LaneStatus{Stream: name, Messages: st.Msgs, Bytes: st.Bytes, Oldest: st.FirstTime})
	}
	return out, nil
}

// stateStore is a stop-gap until the buffer part exposes its state.db
// handle; without it no snapshot is saved.
func (a *Agent) stateStore() *buffer.State { return nil }

// backlogExact reports whether backlog counts are unforwarded messages
// (from the forwarder's cursors) rather than whole-stream totals.
func (a *Agent) backlogExact() bool { return false }
