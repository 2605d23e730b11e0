package buffer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Records are the small keyed values other features keep in state.db so
// that status can show them while the daemon is down: the agent's status
// snapshot, sensor records, the link history. The store only batches and
// persists them; each feature owns its bucket, its keys and its types, and
// encodes its records itself (tailscale's ipn.StateStore is the model). A
// bucket name is part of the on-disk format of its feature, so it is never
// renamed. Records are JSON: the check at open rejects a file holding
// anything else, as it did when the buffer knew the types.

// ownBucket reports whether name is one of the buffer's typed buckets,
// which records may not use.
func ownBucket(name string) bool {
	switch name {
	case string(bMeta), string(bCursors), string(bEvicted), string(bIDs), string(bAge), string(bIssued), string(bEvents):
		return true
	}
	return false
}

// ReadState returns the record under key in bucket; false if there is none.
func (s *State) ReadState(bucket, key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.recs[bucket][key]
	return bytes.Clone(v), ok
}

// ReadStates returns every record of bucket by key.
func (s *State) ReadStates(bucket string) map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.recs[bucket]))
	for k, v := range s.recs[bucket] {
		out[k] = bytes.Clone(v)
	}
	return out
}

// WriteState stores the JSON v under key in bucket, batched with the
// cursors: it reaches disk within FlushInterval.
func (s *State) WriteState(bucket, key string, v []byte) error {
	if err := writableRecord(bucket, v); err != nil {
		return fmt.Errorf("%w (key %q)", err, key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putRecord(bucket, key, bytes.Clone(v))
	return nil
}

// AppendState adds the JSON v to bucket kept as a history of its last keep
// records (keyed by a big-endian sequence, so they load in order), batched
// like WriteState.
func (s *State) AppendState(bucket string, v []byte, keep int) error {
	if err := writableRecord(bucket, v); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appendRecord(bucket, bytes.Clone(v), keep)
	return nil
}

// History returns the records AppendState kept in bucket, oldest first.
func (s *State) History(bucket string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.historyLocked(bucket)
}

// historyLocked is History; callers hold s.mu.
func (s *State) historyLocked(bucket string) [][]byte {
	m := s.recs[bucket]
	out := make([][]byte, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, bytes.Clone(m[k]))
	}
	return out
}

func writableRecord(bucket string, v []byte) error {
	if ownBucket(bucket) {
		return fmt.Errorf("state bucket %q belongs to the buffer", bucket)
	}
	if !json.Valid(v) {
		return fmt.Errorf("state record in bucket %q is not JSON", bucket)
	}
	return nil
}

// putRecord sets (v nil: deletes) a record and marks it for the next
// flush; callers hold s.mu.
func (s *State) putRecord(bucket, key string, v []byte) {
	m := s.recs[bucket]
	if m == nil {
		m = map[string][]byte{}
		s.recs[bucket] = m
	}
	if v == nil {
		delete(m, key)
	} else {
		m[key] = v
	}
	d := s.dirtyRecs[bucket]
	if d == nil {
		d = map[string]bool{}
		s.dirtyRecs[bucket] = d
	}
	if !d[key] {
		d[key] = true
		s.dirty()
	}
}

// keepRecord sets a record the caller's transaction has just committed:
// no flush writes it again. Callers hold s.mu.
func (s *State) keepRecord(bucket, key string, v []byte) {
	if s.recs[bucket] == nil {
		s.recs[bucket] = map[string][]byte{}
	}
	s.recs[bucket][key] = v
	delete(s.dirtyRecs[bucket], key)
}

// appendRecord adds v after the newest key of a history bucket and drops
// what falls out of its last keep; callers hold s.mu.
func (s *State) appendRecord(bucket string, v []byte, keep int) {
	var last uint64
	for k := range s.recs[bucket] {
		if len(k) == 8 {
			last = max(last, binary.BigEndian.Uint64([]byte(k)))
		}
	}
	last++
	s.putRecord(bucket, string(u64(last)), v)
	for k := range s.recs[bucket] {
		if len(k) == 8 && binary.BigEndian.Uint64([]byte(k))+uint64(keep) <= last {
			s.putRecord(bucket, k, nil)
		}
	}
}

// loadRecords reads every bucket that is not the buffer's own typed one
// into memory.
func (s *State) loadRecords(tx *bolt.Tx) {
	_ = tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if n := string(name); n == string(bEvents) || !ownBucket(n) {
			m := map[string][]byte{}
			_ = b.ForEach(func(k, v []byte) error {
				m[string(k)] = bytes.Clone(v)
				return nil
			})
			s.recs[n] = m
		}
		return nil
	})
}

// flushRecords writes the changed records inside Flush's transaction;
// callers hold s.mu.
func (s *State) flushRecords(tx *bolt.Tx) error {
	for bucket, keys := range s.dirtyRecs {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		for k := range keys {
			if v, ok := s.recs[bucket][k]; ok {
				err = b.Put([]byte(k), v)
			} else {
				err = b.Delete([]byte(k))
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// PutJSON stores a small record under key in the misc bucket (batched with
// the rest).
func (s *State) PutJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state record %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putRecord(string(bMisc), key, b)
	return nil
}

// GetJSON decodes the record under key in the misc bucket into v; false if
// there is none.
func (s *State) GetJSON(key string, v any) (bool, error) {
	b, ok := s.ReadState(string(bMisc), key)
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("state record %q: %w", key, err)
	}
	return true, nil
}
