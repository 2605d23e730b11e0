package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

func hasClockWarning(s Status, text string) bool {
	for _, w := range clockWarnings(s) {
		if strings.Contains(w.Message, text) {
			return true
		}
	}
	return false
}

func clockWarnings(s Status) []Warning {
	var out []Warning
	for _, w := range s.Warnings {
		if w.Component == "clock" {
			out = append(out, w)
		}
	}
	return out
}

// TestClockAgainstHub: a clock the kernel calls unsynchronised (this
// container's, and any test clock) is measured against the hub's over the
// leaf, through the status stream's republish of the heartbeat; agreeing
// with the hub it is no warning; 10 minutes ahead it is a warning naming
// the offset; reading 1970 (a Pi without RTC) it is critical. On the
// parent, an unsynchronised clock always made status degraded.
func TestClockAgainstHub(t *testing.T) {
	clockFile := filepath.Join(t.TempDir(), "clock")
	t.Setenv(TestClockEnv, clockFile)
	hub, _ := startHub(t, nil, statusStream)
	a := startAgent(t, fmt.Sprintf("uplink:\n  hub_urls: [%s]\n  heartbeat: 1s\n", leafURL(t, hub, "nats")))
	ctx := context.Background()
	offset := func(s Status) (float64, bool) {
		if s.Clock.HubOffset == nil {
			return 0, false
		}
		return *s.Clock.HubOffset, true
	}
	var s Status
	testkit.WaitFor(t, 20*time.Second, func() error {
		s = a.Status(ctx)
		_, ok := offset(s)
		if !ok {
			return errors.New("still waiting for an offset measured against the hub")
		}
		return nil
	})
	if o, _ := offset(s); o < -1 || o > 1 {
		t.Fatalf("offset against a hub on the same machine: %.3fs", o)
	}
	// The test clock's own warning aside, the clock is fine.
	for _, w := range clockWarnings(s) {
		if !strings.Contains(w.Message, "TEST CLOCK") {
			t.Fatalf("a clock that agrees with the hub warns: %+v", w)
		}
	}

	if err := os.WriteFile(clockFile, []byte("+10m"), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 20*time.Second, func() error {
		s = a.Status(ctx)
		o, ok := offset(s)
		if !(ok && o > 598 && o < 602) {
			return errors.New("still waiting for the offset to follow a clock 10 minutes ahead")
		}
		return nil
	})
	if code, _ := s.Health(); code != ExitDegraded || !hasClockWarning(s, "clock is 10m ahead of the hub's") {
		t.Fatalf("health %d, warnings %+v", code, s.Warnings)
	}
	var b strings.Builder
	RenderStatus(&b, s, s.Time, false)
	if !strings.Contains(b.String(), "10m ahead of the hub's (measured") {
		t.Errorf("status does not show the offset:\n%s", b.String())
	}
	var m strings.Builder
	writeMetrics(&m, s, 0)
	if !regexp.MustCompile(`\nedge_agent_clock_hub_offset_seconds (59[89]|60[01])`).MatchString(m.String()) {
		t.Errorf("metrics lack the offset:\n%s", m.String())
	}

	if err := os.WriteFile(clockFile, []byte("1970-01-01T00:00:00Z"), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		s = a.Status(ctx)
		code, _ := s.Health()
		if !(code == ExitDown && hasClockWarning(s, "clock reads 1970-01-01T00:00")) {
			return errors.New("still waiting for a clock in 1970 to be critical")
		}
		return nil
	})
	m.Reset()
	writeMetrics(&m, s, 0)
	if !strings.Contains(m.String(), "\nedge_agent_clock_before_build 1\n") {
		t.Errorf("metrics do not flag the clock before the build:\n%s", m.String())
	}
}
