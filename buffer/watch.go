package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// WatchInterval is how often the watcher checks the store. A disk freed up
// is noticed and writing resumes within a few intervals (the promise is 60s).
const WatchInterval = 2 * time.Second

// diskFullMargin: below this much free space the store counts as full even
// before a write fails, since the next message block will not fit.
// resumeMargin is what must be free before JetStream is restarted, so a
// recovery does not fail again on its first block.
const (
	diskFullMargin = 1 << 20
	resumeMargin   = 4 << 20
)

// Health is the buffer's condition for status, metrics and systemd's STATUS.
type Health struct {
	// DiskFull: the filesystem under the store is full, or a stream hit
	// "no space left on device". Local publishes fail meanwhile; nothing
	// stored is lost, and writing resumes by itself once space is freed.
	DiskFull bool `json:"disk_full"`
	// JetStreamDisabled: nats-server turned JetStream off (it does that on
	// some write errors); the watcher restarts it when it can.
	JetStreamDisabled bool `json:"jetstream_disabled"`
	// WriteErrors are streams stuck on a write error, "STREAM: error".
	WriteErrors []string `json:"write_errors,omitempty"`
	// StoreBytes is what JetStream holds, StoreLimit its max_file_store.
	StoreBytes int64 `json:"store_bytes"`
	StoreLimit int64 `json:"store_limit"`
	// FSFree and FSSize describe the filesystem holding state_dir.
	FSFree uint64 `json:"fs_free"`
	FSSize uint64 `json:"fs_size"`
	// SyncMode is "always" or the fsync interval.
	SyncMode string `json:"sync_mode"`
	// AsyncStreams are local streams with persist_mode async (acks before
	// disk whatever SyncMode says).
	AsyncStreams []string `json:"async_streams,omitempty"`
	// Recoveries counts JetStream restarts done by the watcher this boot.
	Recoveries int `json:"recoveries"`
	// Missing are agent streams that do not exist (deleted by a client
	// with the rights to): their readings cannot be stored. Recreated
	// counts the streams the watcher recreated this boot.
	Missing   []string `json:"missing,omitempty"`
	Recreated int      `json:"recreated,omitempty"`
	// Unchecked are agent streams created anew (a recreate or a JetStream
	// restart) whose check against state.db has not succeeded yet: the
	// forwarder holds them, since their message ids are not known.
	Unchecked []string `json:"unchecked,omitempty"`
	// Events are this boot's recoveries (state.db, damaged streams, disk).
	Events  []StateEvent `json:"events,omitempty"`
	Checked time.Time    `json:"checked"`
}

// Degraded says whether a technician should look at the buffer.
func (h Health) Degraded() bool {
	return h.DiskFull || h.JetStreamDisabled || len(h.WriteErrors) > 0 || len(h.AsyncStreams) > 0 || len(h.Missing) > 0 || len(h.Unchecked) > 0
}

// Watcher watches the store and recovers it: it restarts JetStream after a
// disk-full or any sticky write error once space is back (nats-server keeps a
// stream's write error until its store is reopened, and sometimes disables
// JetStream altogether, nats-server#7654), re-checks the streams afterwards,
// counts evictions of unforwarded messages and keeps Health current. It never
// deletes anything.
type Watcher struct {
	srv   *server.Server
	js    jetstream.JetStream
	st    *State
	cfg   Config
	jsCfg server.JetStreamConfig
	dir   string
	log   *slog.Logger

	// round makes Check one round at a time: the agent's loop and a direct
	// caller may check at once, and two rounds would count one eviction
	// twice or restart JetStream twice.
	round sync.Mutex

	mu        sync.Mutex
	health    Health
	prevFirst map[string]uint64 // under round
	wasFull   bool
	kick      chan struct{} // a stream-deleted advisory: check now
	recreated int           // under round
	recFail   string        // under round: the last failure, logged once
}

// NewWatcher prepares a watcher for the agent's embedded server, whose
// JetStream must be enabled (its config is kept to restart it the same way:
// same store, limits, sync policy and domain).
func NewWatcher(srv *server.Server, js jetstream.JetStream, st *State, cfg Config, log *slog.Logger) (*Watcher, error) {
	jc := srv.JetStreamConfig()
	if jc == nil {
		return nil, errors.New("buffer watcher: JetStream is not enabled on the embedded server")
	}
	c := *jc
	// EnableJetStream appends "jetstream" to the directory it is given.
	c.StoreDir = filepath.Dir(c.StoreDir)
	return &Watcher{srv: srv, js: js, st: st, cfg: cfg, jsCfg: c, dir: jc.StoreDir, log: log, kick: make(chan struct{}, 1)}, nil
}

// loadMarks starts prevFirst from the streams' marks at the first round:
// after the start's check, which rewrote them (damage at a stream's head
// is its loss, not an eviction by limits).
func (w *Watcher) loadMarks() {
	if w.prevFirst != nil {
		return
	}
	w.prevFirst = map[string]uint64{}
	for _, name := range Lanes {
		var m laneMark
		if ok, _ := w.st.GetJSON(markKey(name), &m); ok {
			w.prevFirst[name] = m.FirstSeq
		}
	}
}

// Run checks every WatchInterval, and at once when one of the agent's
// streams is deleted, until ctx ends. The first round is the caller's
// (Check), so it knows when Health has one.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(WatchInterval)
	defer t.Stop()
	unsub := w.watchDeletes()
	defer unsub()
	for {
		select {
		case <-ctx.Done():
			// A last round records the streams' extent at a clean stop, so
			// the next start measures damage against all that was stored.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			w.Check(sctx)
			cancel()
			return nil
		case <-t.C:
		case <-w.kick:
		}
		w.Check(ctx)
	}
}

// Health is the result of the last check.
func (w *Watcher) Health() Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.health
	h.Events = w.st.Events()
	return h
}

// Check runs one round: observe, recover if needed and possible, record.
func (w *Watcher) Check(ctx context.Context) Health {
	w.round.Lock()
	defer w.round.Unlock()
	h := w.observe(ctx)
	if len(h.Missing)+len(h.Unchecked) > 0 && !h.JetStreamDisabled {
		h = w.recreate(ctx, h)
	}
	if !h.JetStreamDisabled {
		w.recreateStateStream(ctx)
	}
	stuck := h.JetStreamDisabled || len(h.WriteErrors) > 0
	if stuck && h.FSFree >= resumeMargin {
		if err := w.restartJetStream(ctx); err != nil {
			w.log.Error("buffer: JetStream restart failed; retrying next round", "err", err, "every", WatchInterval)
		} else {
			h = w.observe(ctx)
			h.Recoveries++
		}
	}
	w.mu.Lock()
	h.Recoveries += w.health.Recoveries
	h.Recreated = w.recreated
	if h.DiskFull != w.wasFull {
		if h.DiskFull {
			w.log.Error("buffer: disk full; local publishes fail until space is freed in the store's filesystem (nothing stored is lost)", "dir", w.dir, "free", h.FSFree, "write_errors", h.WriteErrors)
			w.st.AddEvent(EventDiskFull, fmt.Sprintf("%s: %d bytes free; %s", w.dir, h.FSFree, strings.Join(h.WriteErrors, "; ")))
		} else {
			w.log.Info("buffer: disk space is back; writing resumed", "dir", w.dir, "free", h.FSFree)
			w.st.AddEvent(EventDiskRecovered, fmt.Sprintf("%s: %d bytes free", w.dir, h.FSFree))
		}
		w.wasFull = h.DiskFull
	}
	w.health = h
	w.mu.Unlock()
	return w.Health()
}

// observe gathers Health without changing anything but the lane marks and
// the eviction counters.
func (w *Watcher) observe(ctx context.Context) Health {
	w.loadMarks()
	h := Health{SyncMode: w.cfg.Sync, StoreLimit: w.jsCfg.MaxStore, Checked: time.Now()}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(w.dir, &fs); err == nil {
		h.FSFree, h.FSSize = fs.Bavail*uint64(fs.Bsize), fs.Blocks*uint64(fs.Bsize)
	}
	hz := w.srv.Healthz(&server.HealthzOptions{Details: true})
	for _, e := range hz.Errors {
		switch e.Type {
		case server.HealthzErrorJetStream:
			h.JetStreamDisabled = true
		case server.HealthzErrorStream:
			h.WriteErrors = append(h.WriteErrors, e.Stream+": "+e.Error)
		}
	}
	noSpace := strings.Contains(strings.Join(h.WriteErrors, " "), "no space left")
	h.DiskFull = noSpace || (h.FSSize > 0 && h.FSFree < diskFullMargin)
	if h.JetStreamDisabled {
		return h
	}
	if v, err := w.srv.Jsz(nil); err == nil {
		h.StoreBytes = int64(v.Store)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if a, err := AsyncStreams(cctx, w.js); err == nil {
		h.AsyncStreams = a
	}
	for _, name := range Lanes {
		s, err := w.js.Stream(cctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			h.Missing = append(h.Missing, name)
		}
		if err != nil {
			continue
		}
		if !w.st.SameStream(name, s.CachedInfo().Config.Metadata) {
			// Its check measures what the old stream took: marking the
			// new one here first would measure against itself.
			h.Unchecked = append(h.Unchecked, name)
			continue
		}
		state := s.CachedInfo().State
		w.recordRuntimeLoss(name, state)
		w.recordHoles(cctx, s, name, state)
		n := evictedUnforwarded(w.prevFirst[name], state.FirstSeq, w.st.Cursor(name))
		w.st.AddEvicted(name, n)
		if n > 0 {
			w.log.Warn("buffer: limits evicted messages the hub never received (outage longer than the buffer holds; raise buffer.max_bytes/max_age or fix the uplink)", "stream", name, "evicted", n)
		}
		if state.FirstSeq > 0 {
			w.prevFirst[name] = state.FirstSeq
		}
		_ = markLane(w.st, name, state)
	}
	// A deleted stream is not a write error: recreating it is the fix,
	// not restarting JetStream. Nor is one being deleted: nats-server
	// renames its directory to ".NAME" and removes that in the background,
	// and health lists it meanwhile as a stream that "could not be
	// recovered" (no stream name has a dot). A restart then would drop
	// the API requests in flight.
	h.WriteErrors = slices.DeleteFunc(h.WriteErrors, func(e string) bool {
		name, _, _ := strings.Cut(e, ":")
		if strings.HasPrefix(name, ".") || slices.Contains(h.Missing, name) {
			return true
		}
		_, err := w.js.Stream(cctx, name)
		return errors.Is(err, jetstream.ErrStreamNotFound)
	})
	return h
}

// restartJetStream reopens every stream from disk with the same settings:
// this clears nats-server's sticky write errors and re-enables JetStream if
// the server disabled it. Data on disk is left as it is.
func (w *Watcher) restartJetStream(ctx context.Context) error {
	w.log.Warn("buffer: restarting JetStream to clear a write error or re-enable it", "dir", w.dir)
	opened := time.Now()
	if w.srv.JetStreamEnabled() {
		if err := w.srv.ShutdownJetStream(); err != nil {
			return fmt.Errorf("stop JetStream: %w", err)
		}
	}
	cfg := w.jsCfg
	if err := w.srv.EnableJetStream(&cfg); err != nil {
		return fmt.Errorf("enable JetStream on %s: %w", w.dir, err)
	}
	w.st.AddEvent(EventJetStreamEnabled, "JetStream restarted after a write error or disk full; streams reopened from disk")
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A stream nats-server dropped or reset is recreated empty and reported
	// (its check compares with the last known extent).
	_, err := OpenStreams(cctx, w.js, w.st, w.cfg, opened, w.log)
	return err
}
