package buffer

import (
	"encoding/json"
	"time"
)

// StateEvent is a recovery the buffer performed (state.db moved aside, a
// damaged stream, disk full, JetStream re-enabled). Technicians need these
// because each one may mean lost or duplicated data.
type StateEvent struct {
	Time   time.Time `json:"time"`
	Boot   uint64    `json:"boot"`
	Kind   EventKind `json:"kind"`
	Detail string    `json:"detail"`
}

// EventKind is the recovery a StateEvent records.
type EventKind string

// Event kinds, each with what it means for the data.
const (
	EventStateCorrupt     EventKind = "state_db_corrupt"    // state.db was unusable: moved aside, started fresh
	EventStreamDamaged    EventKind = "stream_damaged"      // a local stream lost messages: see the recorded losses
	EventStreamRecreated  EventKind = "stream_recreated"    // a local stream was deleted: the new one is forwarded from its start
	EventDiskFull         EventKind = "disk_full"           // the store cannot write: new readings fail, stored ones are kept
	EventDiskRecovered    EventKind = "disk_recovered"      // the store writes again
	EventJetStreamEnabled EventKind = "jetstream_reenabled" // JetStream restarted after a write error: streams reopened from disk
	EventStateRestored    EventKind = "state_restored"      // state.db was fresh: ids and cursors restored from the JetStream store
)

// AddEvent records a recovery (logged by the caller) for status; it is kept
// in state.db so status can show it after the daemon stopped.
func (s *State) AddEvent(kind EventKind, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := StateEvent{Time: time.Now(), Boot: s.boots, Kind: kind, Detail: detail}
	v, _ := json.Marshal(ev) // a StateEvent always encodes
	s.appendRecord(string(bEvents), v, eventRingSize)
}

// Events returns the recoveries of the current boot (read-only: of the last
// boot the store recorded), oldest first.
func (s *State) Events() []StateEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StateEvent
	for _, v := range s.historyLocked(string(bEvents)) {
		var e StateEvent
		// Decoded at open already (validRecord): this cannot fail.
		if json.Unmarshal(v, &e) == nil && e.Boot == s.boots {
			out = append(out, e)
		}
	}
	return out
}
