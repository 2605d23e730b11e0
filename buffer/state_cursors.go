package buffer

import bolt "go.etcd.io/bbolt"

// Cursor is the highest contiguous sequence of stream the hub acknowledged.
func (s *State) Cursor(stream string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursors[stream]
}

// SetCursor advances the cursor (batched). It never moves backwards: acks can
// arrive out of order and a late one must not cause a resend storm; use
// ResetCursor to replay.
func (s *State) SetCursor(stream string, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.cursors[stream] {
		return
	}
	s.cursors[stream] = seq
	if !s.dirtyCursors[stream] {
		s.dirtyCursors[stream] = true
		s.dirty()
	}
}

// ResetCursor sets the cursor to seq, backwards too, and commits at once.
func (s *State) ResetCursor(stream string, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeNow(func(tx *bolt.Tx) error { return tx.Bucket(bCursors).Put([]byte(stream), u64(seq)) }); err != nil {
		return err
	}
	s.cursors[stream] = seq
	return nil
}

// AddEvicted counts messages of stream that limits removed before the hub
// had them: data a technician must know was never forwarded.
func (s *State) AddEvicted(stream string, n uint64) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evicted[stream] += n
	if !s.dirtyEvicted[stream] {
		s.dirtyEvicted[stream] = true
		s.dirty()
	}
}

// Evicted is the total AddEvicted for stream over the life of the store.
func (s *State) Evicted(stream string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evicted[stream]
}
