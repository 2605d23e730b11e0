package agent

import (
	"context"
)

// laneStats is the unforwarded backlog per lane from the buffer's cursors.
// The oldest unforwarded reading is the one after the cursor; its time
// costs one lookup per lane, only while there is a backlog.
func (a *Agent) laneStats(ctx context.Context) ([]LaneStatus, error) {
	stats, err := a.BufferStats(ctx)
	out := make([]LaneStatus, 0, len(stats))
	for _, l := range stats {
		ls := LaneStatus{Stream: l.Stream, Messages: l.Backlog, Bytes: l.BacklogBytes, Evicted: l.Evicted, Lost: a.State().LostTotal(l.Stream)}
		if l.Backlog > 0 {
			ls.Oldest = l.Oldest
			if seq := l.Cursor + 1; seq > l.FirstSeq {
				if s, err := a.js.Stream(ctx, l.Stream); err == nil {
					if m, err := s.GetMsg(ctx, seq); err == nil {
						ls.Oldest = m.Time
					}
				}
			}
		}
		out = append(out, ls)
	}
	return out, err
}
