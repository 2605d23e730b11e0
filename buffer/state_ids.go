package buffer

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Epoch gives the message ids of a stream's sequences from From onwards
// (up to the next epoch) the id ID: <site>.<ID>.<stream>.<seq>. A stream
// whose sequence went backwards (truncated block, power cut with an
// interval sync) reuses sequence numbers for new messages; a new epoch
// gives those new ids, while the messages that survived keep the ids they
// were forwarded with, so a resend of them is still dropped by the hub.
type Epoch struct {
	From uint64 `json:"from"`
	ID   string `json:"id"`
}

// laneIDs is a stream's identity: StreamID is created with the stream (a
// recreated stream is a new sequence space), Epochs are its message-id
// epochs, oldest first. Gen counts epoch changes: when state.db and the
// stream metadata disagree, the higher one is the newer.
type laneIDs struct {
	StreamID string  `json:"stream_id,omitempty"`
	Epochs   []Epoch `json:"epochs"`
	Gen      uint64  `json:"gen,omitempty"`
}

// idFor is the epoch id of seq; the first epoch also covers what comes
// before it (pruned epochs: sequences the stream no longer holds).
func (l laneIDs) idFor(seq uint64) string {
	// Every start adds an epoch, so the list is searched, not walked.
	i, _ := slices.BinarySearchFunc(l.Epochs[1:], seq, func(e Epoch, seq uint64) int { return cmp.Compare(e.From, seq+1) })
	return l.Epochs[i].ID
}

// StoreID identifies this store: random, created once with the store (and
// kept in the JetStream store too, so losing state.db does not change it).
// Streams created before id epochs existed use it in their message ids.
func (s *State) StoreID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeID
}

// MsgIDPrefix is the id that goes between the site and the stream in the
// message id of stream's sequence seq: the id of the epoch seq falls in.
// It is called as the forwarder sends seq, so it also keeps the highest
// sequence this process issued an id for (a check while running, after a
// JetStream restart, needs it; see checkStreams). It reads and updates
// memory only: no bbolt write and no fsync on the send path.
func (s *State) MsgIDPrefix(stream string, seq uint64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.sent[stream] {
		s.sent[stream] = seq
	}
	return s.laneIDs(stream).idFor(seq)
}

// SameStream reports whether metadata, a local stream's config metadata,
// is of the stream state.db holds the message ids of. It is false from the
// moment a deleted stream is recreated (it takes readings at once) until
// its check adopts it: sent meanwhile, its sequences would carry the
// deleted stream's ids, which the hub drops as duplicates. A stream whose
// metadata has no stream id (its last metadata write failed) is taken as
// the same.
func (s *State) SameStream(stream string, metadata map[string]string) bool {
	id := metadata[mdStreamID]
	s.mu.Lock()
	defer s.mu.Unlock()
	have := s.ids[stream].StreamID
	return id == "" || have == "" || id == have
}

// FreshFrom is the first sequence of stream whose message id no earlier
// process can have sent: the start of the epoch this process drew at its
// first check. Before that check nothing is known to be fresh.
func (s *State) FreshFrom(stream string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.checked[stream] {
		return math.MaxUint64
	}
	eps := s.laneIDs(stream).Epochs
	return eps[len(eps)-1].From
}

// Epochs lists stream's message-id epochs, oldest first.
func (s *State) Epochs(stream string) []Epoch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.laneIDs(stream).Epochs)
}

// unknownLanes lists the agent's streams state.db has no id for.
func (s *State) unknownLanes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, name := range Lanes {
		if s.ids[name].StreamID == "" {
			out = append(out, name)
		}
	}
	return out
}

// laneIDs is stream's identity, by default (a store from before id epochs,
// or a stream not checked yet) one epoch of the store id; callers hold s.mu.
func (s *State) laneIDs(stream string) laneIDs {
	if l, ok := s.ids[stream]; ok {
		return l
	}
	return laneIDs{Epochs: []Epoch{{From: 1, ID: s.storeID}}}
}

// adoptIDs commits the store id, each checked stream's identity and, if
// setCursor, its cursor (backwards too), and the loss records losses holds
// (if any) in one transaction; issued is the highest sequence whose id in
// the current epoch may have been sent. Without setCursor the forwarder's
// progress meanwhile is kept.
func (s *State) adoptIDs(storeID string, checks []laneCheck, losses lossUpdate) error {
	vals := make([][]byte, len(checks))
	for i, c := range checks {
		v, err := json.Marshal(c.ids)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	misc := map[string][]byte{}
	if len(losses.added) > 0 {
		misc[keyLosses], _ = json.Marshal(losses.pending) // a Loss always encodes
		misc[keyLostTotal], _ = json.Marshal(losses.totals)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.writeNow(func(tx *bolt.Tx) error {
		for k, v := range misc {
			if err := tx.Bucket(bMisc).Put([]byte(k), v); err != nil {
				return err
			}
		}
		if storeID != s.storeID {
			if err := tx.Bucket(bMeta).Put([]byte("store_id"), []byte(storeID)); err != nil {
				return err
			}
		}
		for i, c := range checks {
			if c.setCursor {
				if err := tx.Bucket(bCursors).Put([]byte(c.name), u64(c.cursor)); err != nil {
					return err
				}
			}
			if err := tx.Bucket(bIDs).Put([]byte(c.name), vals[i]); err != nil {
				return err
			}
			// Checked: no longer pending (pendChecks).
			if err := tx.Bucket(bMisc).Delete([]byte(pendingKey(c.name))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.storeID = storeID
	for k, v := range misc {
		s.keepRecord(string(bMisc), k, v)
	}
	for _, c := range checks {
		delete(s.recs[string(bMisc)], pendingKey(c.name))
	}
	for _, c := range checks {
		if c.setCursor {
			s.cursors[c.name] = c.cursor
		}
		s.ids[c.name], s.prior[c.name], s.checked[c.name] = c.ids, c.issued, true
		s.sent[c.name] = min(s.sent[c.name], c.issued)
	}
	return nil
}

// issuedBound is the highest sequence of stream whose message id may have
// been sent in the current epoch: by this process, or up to what its
// previous check left, by anyone.
func (s *State) issuedBound(stream string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.prior[stream], s.sent[stream])
}

// firstCheck reports whether this process has not checked stream yet.
func (s *State) firstCheck(stream string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.checked[stream]
}
