package buffer

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// advisoryStreamDeleted is nats-server's advisory for a deleted stream;
// the last token is the stream's name.
const advisoryStreamDeleted = "$JS.EVENT.ADVISORY.STREAM.DELETED."

// watchDeletes makes a deleted agent stream a reason to check at once
// rather than within WatchInterval: while it is gone, every reading
// published to it is refused. It returns the unsubscribe.
func (w *Watcher) watchDeletes() func() {
	sub, err := w.js.Conn().Subscribe(advisoryStreamDeleted+"*", func(m *nats.Msg) {
		name := strings.TrimPrefix(m.Subject, advisoryStreamDeleted)
		if name != StateStream && !slices.Contains(Lanes, name) {
			return
		}
		select {
		case w.kick <- struct{}{}:
		default:
		}
	})
	if err != nil {
		w.log.Warn("buffer: cannot subscribe to stream-deleted advisories; a deleted stream is recreated within the watch interval instead", "err", err, "interval", WatchInterval)
		return func() {}
	}
	return func() { _ = sub.Unsubscribe() }
}

// recreate brings back agent streams something deleted (a local admin, an
// operator's `nats stream rm`): created anew and checked against state.db,
// which reports the recreation and records the unforwarded readings the
// deleted stream took as a loss. A stream created anew whose check failed
// (Unchecked) is checked again. While that fails the streams stay in
// Missing or Unchecked, status says down and the forwarder holds them;
// every round retries.
func (w *Watcher) recreate(ctx context.Context, h Health) Health {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, name := range h.Missing {
		w.awaitRemoved(cctx, name)
	}
	opened := time.Now()
	_, err := OpenStreams(cctx, w.js, w.st, w.cfg, opened, w.log)
	if err != nil {
		if err.Error() != w.recFail {
			w.log.Error("buffer: agent stream deleted and cannot be recreated or checked: readings are not stored or not forwarded meanwhile; retrying every round", "missing", h.Missing, "unchecked", h.Unchecked, "err", err, "round", WatchInterval)
		}
		w.recFail = err.Error()
		return h
	}
	w.recFail = ""
	if len(h.Missing) > 0 {
		w.recreated += len(h.Missing)
		w.log.Warn("buffer: agent stream was deleted (by a local admin or an operator); recreated it", "streams", h.Missing)
	} else {
		w.log.Info("buffer: stream created anew is checked against state.db; forwarding it resumes", "streams", h.Unchecked)
	}
	return w.observe(ctx)
}

// awaitRemoved waits, for a few seconds at most, until nats-server has
// removed a deleted stream's directory: it answers the delete and sends
// the advisory first, and a stream created under the same name meanwhile
// has its files removed under it ("rename meta.inf.tmp: no such file").
func (w *Watcher) awaitRemoved(ctx context.Context, name string) {
	deadline := time.Now().Add(removeWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if dirs, _ := filepath.Glob(filepath.Join(w.dir, "*", "streams", name)); len(dirs) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// removeWait bounds awaitRemoved: a directory still there after it is not
// the deleted stream's any more.
const removeWait = 3 * time.Second

// recreateStateStream brings back the cursor backup stream if something
// deleted it (it is only ever created by OpenStreams otherwise), and has
// every cursor written to it again at the next flush. Readings are still
// stored meanwhile, so this is not a reason for status to say down.
func (w *Watcher) recreateStateStream(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := w.js.Stream(cctx, StateStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		return
	}
	w.awaitRemoved(cctx, StateStream)
	if err := ensureStateStream(cctx, w.js); err != nil {
		w.log.Error("buffer: the cursor backup stream was deleted and cannot be recreated; retrying", "stream", StateStream, "err", err)
		return
	}
	w.st.mu.Lock()
	clear(w.st.backedUp)
	w.st.mu.Unlock()
	w.recreated++
	w.log.Warn("buffer: agent stream was deleted (by a local admin or an operator); recreated it", "streams", []string{StateStream})
}

// recordRuntimeLoss records a tail that went missing while the agent runs:
// nats-server finds a damaged record only when it first reads the block
// (long after the start, for a block the salvage pass did not read) and
// then truncates the block there without reporting lost data. The last
// extent the watcher recorded is what the stream held; the run after the
// new end (and after the cursor) is the loss.
func (w *Watcher) recordRuntimeLoss(name string, now jetstream.StreamState) {
	var before laneMark
	if ok, err := w.st.GetJSON(markKey(name), &before); !ok || err != nil || now.LastSeq >= before.LastSeq {
		return
	}
	if err := w.st.RecordLost(name, []Loss{{Stream: name, From: now.LastSeq + 1, Cause: causeTailGoneRunning}}); err != nil {
		w.log.Error("buffer: cannot record lost messages", "stream", name, "err", err)
	}
}
