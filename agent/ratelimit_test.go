package agent

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// The rate window is minutes long: in a synctest bubble time.Sleep moves
// the clock the handler reads without waiting.
func TestLogRateLimit(t *testing.T) { synctest.Test(t, testLogRateLimit) }

func testLogRateLimit(t *testing.T) {
	var buf bytes.Buffer
	h := newRateLimitHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), 3, time.Minute)
	log := slog.New(h).With("component", "uplink")

	for range 100 {
		log.Error("leaf connect failed", "err", "connection refused")
		time.Sleep(100 * time.Millisecond)
	}
	log.Error("leaf connect failed", "err", "i/o timeout") // different attrs: its own key
	log.Debug("debug is never limited")
	log.Debug("debug is never limited")
	if n := strings.Count(buf.String(), "connection refused"); n != 3 {
		t.Fatalf("%d identical lines passed in the window, want 3:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "i/o timeout") || strings.Count(buf.String(), "debug is never limited") != 2 {
		t.Fatalf("distinct or debug lines were limited:\n%s", buf.String())
	}
	if SuppressedLogLines(slog.New(h)) != 97 {
		t.Errorf("suppressed counter = %d, want 97", SuppressedLogLines(slog.New(h)))
	}

	// The next window: a summary of what was left out, then lines again.
	time.Sleep(time.Minute)
	buf.Reset()
	log.Error("leaf connect failed", "err", "connection refused")
	out := buf.String()
	if !strings.Contains(out, `msg="suppressed 97 similar lines" component=uplink line="leaf connect failed"`) || !strings.Contains(out, "level=ERROR") {
		t.Fatalf("no summary line:\n%s", out)
	}
	if strings.Count(out, "connection refused") != 1 {
		t.Fatalf("first line of the new window not passed:\n%s", out)
	}

	// Flush at shutdown reports what is pending: 1+5 lines, 3 passed.
	for range 5 {
		log.Error("leaf connect failed", "err", "connection refused")
	}
	buf.Reset()
	h.Flush(context.Background())
	if !strings.Contains(buf.String(), "suppressed 3 similar lines") {
		t.Fatalf("flush: %q", buf.String())
	}
}

func TestNewLoggerIsRateLimited(t *testing.T) {
	var buf testkit.SyncBuffer
	log := NewLogger(&buf, "json", new(slog.LevelVar))
	for range logBurst + 5 {
		log.Warn("disk full")
	}
	if n := strings.Count(buf.String(), "disk full"); n != logBurst {
		t.Fatalf("%d lines, want %d", n, logBurst)
	}
}
