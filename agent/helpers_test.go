package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

func leafURL(t testing.TB, s *server.Server, scheme string) string {
	t.Helper()
	v, err := s.Varz(nil)
	if err != nil || v.LeafNode.Port == 0 {
		t.Fatalf("hub has no leafnode port: %v", err)
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, v.LeafNode.Port)
}

type testAgent struct {
	*Agent
	logs *testkit.SyncBuffer
	stop func() error
}

// startAgent runs an agent from a YAML body (site, state_dir, listen and
// control_socket are filled in) and waits until it is ready.
func startAgent(t testing.TB, body string) *testAgent {
	t.Helper()
	return runAgent(t, testConfig(t, body))
}

// testConfig is startAgent's config, for tests that adjust it before run.
func testConfig(t testing.TB, body string) *Config {
	t.Helper()
	dir := t.TempDir()
	y := fmt.Sprintf("state_dir: %s\nlisten: 127.0.0.1:0\ncontrol_socket: %s\nmetrics_listen: \"\"\n%s",
		dir, filepath.Join(dir, "agent.sock"), body)
	if !strings.Contains(body, "site:") {
		y = "site: s1\n" + y
	}
	cfg, err := ParseConfig(filepath.Join(dir, "agent.yaml"), []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func runAgent(t testing.TB, cfg *Config) *testAgent {
	t.Helper()
	logs := &testkit.SyncBuffer{}
	level := new(slog.LevelVar)
	a := New(cfg, NewLogger(logs, "text", level), level)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("agent failed to start: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("agent not ready in 30s\n%s", logs)
	}
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() { cancel(); stopErr = <-errc })
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return &testAgent{Agent: a, logs: logs, stop: stop}
}

func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
