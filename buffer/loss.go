package buffer

import (
	"fmt"
	"slices"
	"time"
)

// Loss is a run of acknowledged messages a local stream lost to damage
// (an unreadable block file, a truncated tail): data the hub may never
// see. It stays in state.db, and status stays critical, until a
// technician acknowledges it (`edge-agent buffer ack-loss`).
type Loss struct {
	Stream string `json:"stream"`
	// From and To are the sequence range; Count is how many messages in
	// it were lost (all of them unless the range only bounds the loss).
	From  uint64    `json:"from"`
	To    uint64    `json:"to"`
	Count uint64    `json:"count"`
	Cause string    `json:"cause"`
	Time  time.Time `json:"time"`
	Boot  uint64    `json:"boot"`
}

func (l Loss) String() string {
	return fmt.Sprintf("%s: %d acknowledged messages lost, seq %d..%d (%s)", l.Stream, l.Count, l.From, l.To, l.Cause)
}

// state.db keys: the losses not acknowledged yet, and the running total
// per stream, which acknowledging does not reset (a metric counter).
const (
	causeServerLost      = "nats-server found the records damaged"
	causeDeleted         = "the stream was deleted (by a local admin or an operator) before the hub had them"
	causeTailGoneRunning = "the stream's tail went missing while running: nats-server found a damaged record in a block and truncated it, or the stream was replaced"
	causeTailGone        = "the stream's tail is gone: a truncated or damaged block file, or a power cut with buffer.sync set to an interval"

	keyLosses    = "losses"
	keyLostTotal = "lost_total"
)

// AddLoss records a loss, logs it and commits it at once. Sequences
// already recorded in an unacknowledged loss of the stream are not
// counted twice (the salvage pass and the extent check can both see one
// cut). It returns the loss as recorded; Count 0 means nothing new.
func (s *State) AddLoss(l Loss) (Loss, error) {
	s.lossMu.Lock()
	defer s.lossMu.Unlock()
	u, err := s.newLosses([]Loss{l})
	if err != nil || len(u.added) == 0 {
		l.Count = 0
		return l, err
	}
	l = u.added[0]
	if err := s.PutJSON(keyLosses, u.pending); err != nil {
		return l, err
	}
	if err := s.PutJSON(keyLostTotal, u.totals); err != nil {
		return l, err
	}
	s.logLosses(u.added)
	if s.readOnly {
		return l, nil
	}
	return l, s.Flush()
}

// lossUpdate is the loss records after adding some losses.
type lossUpdate struct {
	added   []Loss
	pending []Loss
	totals  map[string]uint64
}

// newLosses works out the loss records with ls added, writing nothing;
// callers hold s.lossMu.
func (s *State) newLosses(ls []Loss) (lossUpdate, error) {
	u := lossUpdate{totals: map[string]uint64{}}
	if _, err := s.GetJSON(keyLosses, &u.pending); err != nil {
		return u, err
	}
	if _, err := s.GetJSON(keyLostTotal, &u.totals); err != nil {
		return u, err
	}
	s.mu.Lock()
	boots := s.boots
	s.mu.Unlock()
	for _, l := range ls {
		if l.Count == 0 && l.To >= l.From {
			l.Count = l.To - l.From + 1
			for _, p := range u.pending {
				if p.Stream == l.Stream && p.Count == p.To-p.From+1 && p.To >= l.From && p.From <= l.To {
					l.Count -= min(p.To, l.To) - max(p.From, l.From) + 1
				}
			}
		}
		if l.Count == 0 {
			continue
		}
		l.Time, l.Boot = time.Now().UTC(), boots
		u.totals[l.Stream] += l.Count
		u.pending = append(u.pending, l)
		u.added = append(u.added, l)
	}
	return u, nil
}

func (s *State) logLosses(ls []Loss) {
	for _, l := range ls {
		s.log.Error("acknowledged messages lost to damage: status stays critical until `edge-agent buffer ack-loss`",
			"stream", l.Stream, "count", l.Count, "from_seq", l.From, "to_seq", l.To, "cause", l.Cause)
	}
}

// Losses are the losses not acknowledged yet, oldest first.
func (s *State) Losses() []Loss {
	var out []Loss
	_, _ = s.GetJSON(keyLosses, &out)
	return out
}

// LostTotal is how many messages stream ever lost to damage, acknowledged
// or not.
func (s *State) LostTotal(stream string) uint64 {
	totals := map[string]uint64{}
	_, _ = s.GetJSON(keyLostTotal, &totals)
	return totals[stream]
}

// AckLosses clears the unacknowledged losses (the technician has seen
// them) and returns them; the totals stay.
func (s *State) AckLosses() ([]Loss, error) {
	s.lossMu.Lock()
	defer s.lossMu.Unlock()
	out := s.Losses()
	if len(out) == 0 {
		return nil, nil
	}
	if err := s.PutJSON(keyLosses, []Loss{}); err != nil {
		return out, err
	}
	s.log.Warn("losses acknowledged by the technician", "losses", len(out))
	return out, s.Flush()
}

// RecordLost records the messages of stream that are gone, given as runs
// (From..To, To 0 when the end is not known here), keeping only what the
// hub never acknowledged: sequences after the cursor. A run with an
// unknown end is bounded by the last extent state.db knew; without one it
// is left to the streams' check (Opening.Check), which measures the tail
// the same way.
func (s *State) RecordLost(stream string, runs []Loss) error {
	var mark laneMark
	if _, err := s.GetJSON(markKey(stream), &mark); err != nil {
		return err
	}
	for _, r := range unacked(mark, s.Cursor(stream), runs) {
		if r.Stream != stream {
			continue
		}
		if _, err := s.AddLoss(r); err != nil {
			return err
		}
	}
	return nil
}

// unacked is the part of runs the hub never acknowledged (after cursor)
// and the stream held (within mark); a run without an end ends at the
// mark's.
func unacked(mark laneMark, cursor uint64, runs []Loss) []Loss {
	var out []Loss
	for _, r := range runs {
		if r.To == 0 {
			r.To = mark.LastSeq
		}
		r.From = max(r.From, cursor+1, mark.FirstSeq)
		if r.To >= r.From {
			out = append(out, r)
		}
	}
	return out
}

// lostRuns turns the sequences nats-server reports lost into runs.
func lostRuns(stream, cause string, seqs []uint64) []Loss {
	s := slices.Clone(seqs)
	slices.Sort(s)
	var out []Loss
	for _, q := range s {
		if n := len(out); n > 0 && out[n-1].To+1 == q {
			out[n-1].To = q
			continue
		}
		out = append(out, Loss{Stream: stream, From: q, To: q, Cause: cause})
	}
	return out
}
