package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/edge-agent/edge-agent/sensors"
)

// TestClockEnv names a file whose content offsets the agent's wall clock:
// a signed Go duration ("+720h", "-1h", "0") or an absolute RFC3339 time
// ("1970-01-01T00:00:00Z": the clock reads that at the moment the file is
// read and runs on from there). The file is re-read about once a second, so
// a test can step the clock of a running agent; a missing or empty file is
// no offset. The Go runtime reads wall time through the vDSO, which neither
// faketime nor LD_PRELOAD reach, and stepping the machine's clock would
// disturb every other process: this is how `make chaos` jumps the clock.
// Never set on a device: status warns while it is set.
const TestClockEnv = "EDGE_AGENT_TEST_CLOCK_FILE"

// testClockReread is how often the test clock file is read again.
const testClockReread = time.Second

// agentClock is the agent's clock (buffer.Clock): the wall clock, plus the
// test offset when TestClockEnv is set; the process's monotonic clock; and
// the kernel's synchronisation state. A test offset other than zero reports
// the clock unsynchronised, as Linux does after settimeofday until NTP
// syncs again: downtime is then not trusted, and readings stamped meanwhile
// carry clock_synced=false so the hub re-bases them.
type agentClock struct {
	start time.Time // carries the monotonic reading
	file  string
	log   *slog.Logger

	mu      sync.Mutex
	read    bool
	readAt  time.Duration // monotonic
	content string
	offset  time.Duration
}

func newAgentClock(log *slog.Logger) *agentClock {
	c := &agentClock{start: time.Now(), file: os.Getenv(TestClockEnv), log: log}
	if c.file != "" {
		log.Warn("TEST CLOCK in effect: the agent's wall clock follows the offset in this file (for tests only; unset the variable on a device)",
			"env", TestClockEnv, "file", c.file, "offset", c.currentOffset().String())
	}
	return c
}

// Now is wall time without a monotonic reading, so differences between two
// readings show clock steps.
func (c *agentClock) Now() time.Time { return time.Now().Round(0).Add(c.currentOffset()) }

// Mono is the monotonic time since the agent started.
func (c *agentClock) Mono() time.Duration { return time.Since(c.start) }

// Synced is the kernel's NTP state, false under a test offset.
func (c *agentClock) Synced() bool {
	if c.currentOffset() != 0 {
		return false
	}
	ok, err := sensors.KernelClockSynced()
	return ok && err == nil
}

// stamp is the wall time and its sync state, the way a sensor reading
// carries them.
func (c *agentClock) stamp() (time.Time, bool) { return c.Now(), c.Synced() }

// testClock describes the test clock for status; "" when none is set.
func (c *agentClock) testClock() string {
	if c.file == "" {
		return ""
	}
	return fmt.Sprintf("%s=%s (offset %s)", TestClockEnv, c.file, c.currentOffset().Round(time.Second))
}

func (c *agentClock) currentOffset() time.Duration {
	if c.file == "" {
		return 0
	}
	mono := c.Mono()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read && mono-c.readAt < testClockReread {
		return c.offset
	}
	c.read, c.readAt = true, mono
	b, err := os.ReadFile(c.file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Error("test clock file unreadable; keeping the previous offset", "file", c.file, "err", err)
		return c.offset
	}
	content := strings.TrimSpace(string(b))
	if content == c.content {
		return c.offset
	}
	off, err := parseClockOffset(content, time.Now())
	if err != nil {
		c.log.Error("test clock file: keeping the previous offset", "file", c.file, "err", err)
	} else {
		c.offset = off
		c.log.Warn("test clock offset changed", "file", c.file, "content", content, "offset", off.String())
	}
	c.content = content
	return c.offset
}

// parseClockOffset reads TestClockEnv's file content: empty, a signed
// duration, or an absolute RFC3339 time (the offset from now).
func parseClockOffset(s string, now time.Time) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a duration such as +720h or -1h nor an RFC3339 time such as 1970-01-01T00:00:00Z", s)
	}
	return t.Sub(now.Round(0)), nil
}
