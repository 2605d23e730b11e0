package uplink

import (
	"context"
	"fmt"
)

// replayReq asks Run to schedule a replay between sessions, so the
// running session's lanes need not change under it.
type replayReq struct {
	stream string
	from   uint64
	reply  chan error
}

func (r *replayReq) Error() string { return "replay of " + r.stream + " requested" }

// replayRange is what is left of a replay: sequences next..to, all at or
// below the cursor when it was asked for.
type replayRange struct{ next, to uint64 }

// Replay resends stream's readings from sequence from up to the cursor
// (for a hub that lost data), under their original message ids. The
// cursor does not move: readings past it are sent as always, and a replay
// cut short by a failure goes on from where it was in the next session. It
// waits for Run to schedule it between sessions.
func (f *Forwarder) Replay(ctx context.Context, stream string, from uint64) error {
	rr := replayReq{stream: stream, from: from, reply: make(chan error, 1)}
	select {
	case f.ctl <- rr:
	case <-ctx.Done():
		return fmt.Errorf("replay %s: forwarder not running: %w", stream, ctx.Err())
	}
	select {
	case err := <-rr.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *Forwarder) replay(rr *replayReq) error {
	known := false
	for _, n := range f.o.streams {
		known = known || n == rr.stream
	}
	if !known {
		return fmt.Errorf("replay: unknown stream %q (forwarded streams: %v)", rr.stream, f.o.streams)
	}
	cursor := f.st.Cursor(rr.stream)
	from := max(rr.from, 1)
	if from > cursor {
		return nil // not forwarded yet: it goes anyway
	}
	f.mu.Lock()
	r, ok := f.replays[rr.stream]
	if ok {
		from, cursor = min(from, r.next), max(cursor, r.to)
	}
	f.replays[rr.stream] = replayRange{next: from, to: cursor}
	f.mu.Unlock()
	f.log.Info("forwarder: replay requested; resending under the original message ids (the cursor stays)", "stream", rr.stream, "from_seq", from, "to_seq", cursor)
	return nil
}

// replayStart is where a session's lane on stream starts reading: the
// pending replay's next sequence (but not before first, the oldest stored),
// else after the cursor.
func (f *Forwarder) replayStart(stream string, cursor, first uint64) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.replays[stream]
	r.next = max(r.next, first)
	if !ok || r.next > min(r.to, cursor) {
		delete(f.replays, stream)
		return cursor + 1
	}
	f.replays[stream] = r
	return r.next
}

// replayed records that stream's readings up to seq are done: a replay
// pending there goes on after them, or is over.
func (f *Forwarder) replayed(stream string, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.replays[stream]
	switch {
	case !ok || seq < r.next:
	case seq >= r.to:
		delete(f.replays, stream)
	default:
		r.next = seq + 1
		f.replays[stream] = r
	}
}
