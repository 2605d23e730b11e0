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
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
}

// Event kinds.
const (
	EventStateCorrupt     = "state_db_corrupt"
	EventStreamDamaged    = "stream_damaged"
	EventStreamRecreated  = "stream_recreated"
	EventDiskFull         = "disk_full"
	EventDiskRecovered    = "disk_recovered"
	EventJetStreamEnabled = "jetstream_reenabled"
	EventStateRestored    = "state_restored"
)

// AddEvent records a recovery (logged by the caller) for status; it is kept
// in state.db so status can show it after the daemon stopped.
func (s *State) AddEvent(kind, detail string) {
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
