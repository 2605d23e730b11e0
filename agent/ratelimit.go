package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Log rate limits: an SD card is not a log sink. A hub that is down for a
// day must not write the same "connection refused" line 86,400 times.
const (
	logBurst  = 10          // identical lines let through per window
	logWindow = time.Minute // per key
	// logMaxKeys bounds memory when every line is different: past it, new
	// keys pass unlimited until the next sweep frees expired ones.
	logMaxKeys = 1024
)

// rateLimitHandler passes at most burst identical records (same level,
// message and attributes, including those added With) per window and then
// one summary line saying how many it suppressed. Debug records pass
// untouched: debug is switched on deliberately, to see everything.
type rateLimitHandler struct {
	next   slog.Handler
	prefix string // the With/WithGroup attributes, part of the key
	st     *rateState
}

type rateState struct {
	burst  int
	window time.Duration

	mu        sync.Mutex
	seen      map[string]*rateEntry
	lastSweep time.Time

	suppressed atomic.Uint64 // total, for metrics
}

type rateEntry struct {
	start      time.Time
	n          int
	suppressed int
	level      slog.Level
	msg        string
	next       slog.Handler // the handler (with its With attrs) to summarise on
}

func newRateLimitHandler(next slog.Handler, burst int, window time.Duration) *rateLimitHandler {
	return &rateLimitHandler{next: next, st: &rateState{burst: burst, window: window, seen: map[string]*rateEntry{}}}
}

func (h *rateLimitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *rateLimitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range as {
		fmt.Fprintf(&b, " %s", a)
	}
	return &rateLimitHandler{next: h.next.WithAttrs(as), prefix: b.String(), st: h.st}
}

func (h *rateLimitHandler) WithGroup(name string) slog.Handler {
	return &rateLimitHandler{next: h.next.WithGroup(name), prefix: h.prefix + " [" + name + "]", st: h.st}
}

func (h *rateLimitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelInfo {
		return h.next.Handle(ctx, r)
	}
	var key strings.Builder
	fmt.Fprintf(&key, "%s|%s|%s", r.Level, r.Message, h.prefix)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&key, " %s", a)
		return true
	})
	now := time.Now()
	summaries, pass := h.st.admit(key.String(), now, r, h.next)
	for _, e := range summaries {
		e.summarise(ctx, now)
	}
	if !pass {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// admit counts the record and returns whether it may pass, plus entries
// whose window ended with suppressed lines (summarised outside the lock).
func (s *rateState) admit(key string, now time.Time, r slog.Record, next slog.Handler) (done []*rateEntry, pass bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastSweep) >= time.Second {
		s.lastSweep = now
		for k, e := range s.seen {
			if now.Sub(e.start) >= s.window {
				delete(s.seen, k)
				if e.suppressed > 0 {
					done = append(done, e)
				}
			}
		}
	}
	e := s.seen[key]
	if e != nil && now.Sub(e.start) >= s.window {
		delete(s.seen, key)
		if e.suppressed > 0 {
			done = append(done, e)
		}
		e = nil
	}
	if e == nil {
		if len(s.seen) >= logMaxKeys {
			return done, true
		}
		e = &rateEntry{start: now, level: r.Level, msg: r.Message, next: next}
		s.seen[key] = e
	}
	e.n++
	if e.n <= s.burst {
		return done, true
	}
	e.suppressed++
	s.suppressed.Add(1)
	return done, false
}

func (e *rateEntry) summarise(ctx context.Context, now time.Time) {
	r := slog.NewRecord(now, e.level, fmt.Sprintf("suppressed %d similar lines", e.suppressed), 0)
	r.AddAttrs(slog.String("line", e.msg), slog.Duration("window", now.Sub(e.start).Round(time.Second)))
	_ = e.next.Handle(ctx, r)
}

// Flush writes the summaries still pending, e.g. at shutdown, so the last
// word in the journal says how much was left out.
func (h *rateLimitHandler) Flush(ctx context.Context) {
	s := h.st
	now := time.Now()
	s.mu.Lock()
	var done []*rateEntry
	for k, e := range s.seen {
		if e.suppressed > 0 {
			done = append(done, e)
		}
		delete(s.seen, k)
	}
	s.mu.Unlock()
	for _, e := range done {
		e.summarise(ctx, now)
	}
}

// SuppressedLogLines is how many log lines the rate limiter has dropped,
// for the metrics endpoint; 0 if the logger has no limiter.
func SuppressedLogLines(l *slog.Logger) uint64 {
	if h, ok := l.Handler().(*rateLimitHandler); ok {
		return h.st.suppressed.Load()
	}
	return 0
}
