package agent

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// TestLogsRedactURLCredentials: whatever a log line carries (message,
// string, error, slice, group, logger attributes), a password or token in
// a URL never reaches the log.
func TestLogsRedactURLCredentials(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var b testkit.SyncBuffer
		log := NewLogger(&b, format, new(slog.LevelVar)).With("hub", "nats://leaf:secret1@hub:7422")
		log.Warn("dial nats://leaf:secret2@hub:7422 failed",
			"err", errors.New("connect tls://secret3@hub:7422: refused"),
			"urls", []string{"nats://u:secret4@a:1"},
			slog.Group("g", "u", "wss://u:secret5@b/leaf"))
		out := b.String()
		if strings.Contains(out, "secret") || strings.Count(out, "REDACTED") != 5 {
			t.Errorf("%s log not redacted:\n%s", format, out)
		}
	}
}
