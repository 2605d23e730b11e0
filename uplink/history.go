package uplink

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// LinkEvent is one entry of the link's history, kept for status.
type LinkEvent struct {
	Time   time.Time `json:"time"`
	Kind   EventKind `json:"kind"`
	Reason string    `json:"reason,omitempty"`
}

// EventKind is what happened to the link (EventConnect...).
type EventKind string

// The history lives in state.db's bucket historyBucket (part of the
// on-disk format, never renamed), its last historySize events.
const (
	historyBucket = "links"
	historySize   = 100
)

// HistoryStore keeps the history across restarts: buffer.State in the
// agent.
type HistoryStore interface {
	AppendState(bucket string, v []byte, keep int) error
	History(bucket string) [][]byte
}

// History is the EventSink that keeps the link's events in a HistoryStore
// (batched by the store), where `edge-agent status` can read them while the
// daemon is down.
type History struct{ st HistoryStore }

// NewHistory records link events in st.
func NewHistory(st HistoryStore) *History { return &History{st: st} }

// AddLinkEvent appends ev, stamped now if it has no time.
func (h *History) AddLinkEvent(ev LinkEvent) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	v, _ := json.Marshal(ev)                            // a LinkEvent always encodes
	_ = h.st.AppendState(historyBucket, v, historySize) // fails only on a reserved bucket or bad JSON: neither
}

// LinkEvents returns the history, oldest first. An event that does not
// decode is left out and named in the error.
func LinkEvents(st HistoryStore) ([]LinkEvent, error) {
	var out []LinkEvent
	var errs []error
	for i, v := range st.History(historyBucket) {
		var ev LinkEvent
		if err := json.Unmarshal(v, &ev); err != nil {
			errs = append(errs, fmt.Errorf("link history entry %d in state.db: %w", i, err))
			continue
		}
		out = append(out, ev)
	}
	return out, errors.Join(errs...)
}
