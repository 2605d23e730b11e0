package buffer

import (
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

// A start is ready before its check of the streams against state.db
// (Opening.Check), and local apps publish as soon as it is: readings a
// check has not yet measured from. Should the process stop before that
// check commits (a crash, a power cut, a failing check), the next start
// would take them for what its store held before it opened: restored
// readings, judged by the old cursor and epochs, so new readings that took
// sequences the hub acknowledged for others would never be sent. A check
// pending, committed before the start is ready, keeps each stream's end as
// that start's reconcile saw it until a check commits: a later start
// measures from the lowest such end, and what came after it is new.

// pendingCheck is one stream's end while a check is pending.
type pendingCheck struct {
	StreamID string `json:"stream_id"`
	End      uint64 `json:"end"`
}

func pendingKey(stream string) string { return "check_pending." + stream }

// pendChecks lowers each end in seen to a pending check's of the same
// stream (an earlier start's whose check never committed) and commits the
// ends as pending, in one transaction. Only for a process's first check
// of a stream: a later one (JetStream restarted, a stream recreated) runs
// while the forwarder sends what comes after the end, and this process
// knows which ids it sent. A stream the reconcile created needs none:
// nothing in it was stored before this start. A record without a stream
// id (a stream from before id epochs, whose first check draws one) is the
// same stream's.
func (s *State) pendChecks(seen map[string]seenLane) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	put := map[string][]byte{}
	for name, l := range seen {
		if l.created || s.checked[name] {
			continue
		}
		var p pendingCheck
		if b, ok := s.recs[string(bMisc)][pendingKey(name)]; ok && json.Unmarshal(b, &p) == nil && (p.StreamID == l.id || p.StreamID == "") && p.End < l.end {
			l.end = p.End
			seen[name] = l
		}
		put[pendingKey(name)], _ = json.Marshal(pendingCheck{StreamID: l.id, End: l.end}) // always encodes
	}
	if len(put) == 0 {
		return nil
	}
	err := s.writeNow(func(tx *bolt.Tx) error {
		for k, v := range put {
			if err := tx.Bucket(bMisc).Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for k, v := range put {
		s.keepRecord(string(bMisc), k, v)
	}
	return nil
}
