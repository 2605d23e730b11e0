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
	return configIn(t, t.TempDir(), body)
}

// configIn is testConfig with its state in stateDir (not a fresh temp
// dir), so tests can put the store on a small disk or restart on the same
// store; the control socket is in a temp dir of its own.
func configIn(t testing.TB, stateDir, body string) *Config {
	t.Helper()
	sockDir := t.TempDir()
	cfg, err := ParseConfig(filepath.Join(sockDir, "agent.yaml"), []byte(agentYAML(stateDir, sockDir, body)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// agentYAML is a test agent's agent.yaml: body, with site s1 unless body
// names one, state in stateDir, a free client port, the control socket in
// sockDir and no metrics listener.
func agentYAML(stateDir, sockDir, body string) string {
	y := fmt.Sprintf("state_dir: %s\nlisten: 127.0.0.1:0\ncontrol_socket: %s\nmetrics_listen: \"\"\n%s",
		stateDir, filepath.Join(sockDir, "agent.sock"), body)
	if !strings.Contains(body, "site:") {
		y = "site: s1\n" + y
	}
	return y
}

// runAgent runs cfg's agent until the test ends and fails the test unless
// it becomes ready.
func runAgent(t testing.TB, cfg *Config) *testAgent {
	t.Helper()
	a, err := launch(t, cfg)
	if err != nil {
		t.Fatalf("agent failed to start: %v\n%s", err, a.logs)
	}
	return a
}

// tryRun runs the agent until it is ready (nil) or Run returns (its error).
func tryRun(t testing.TB, cfg *Config) error {
	t.Helper()
	a, err := launch(t, cfg)
	if err == nil {
		_ = a.stop()
	}
	return err
}

// launch runs cfg's agent until the test ends and returns once it is
// ready, or with Run's error if Run returns first.
func launch(t testing.TB, cfg *Config) (*testAgent, error) {
	t.Helper()
	return launchHolding(t, cfg, nil)
}

// launchHolding is launch with hold run before the start's check of the
// streams: with one, it returns at Ready, while hold holds the check.
// Without, tests look at what that check recorded: it returns once the
// check is done too.
func launchHolding(t testing.TB, cfg *Config, hold func(context.Context)) (*testAgent, error) {
	t.Helper()
	logs := &testkit.SyncBuffer{}
	level := new(slog.LevelVar)
	a := New(cfg, NewLogger(logs, "text", level), level)
	a.holdCheck = hold
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	wait := []<-chan struct{}{a.Ready(), a.Checked()}
	if hold != nil {
		wait = wait[:1]
	}
	for i, c := range wait {
		select {
		case <-c:
		case err := <-errc:
			cancel()
			return &testAgent{Agent: a, logs: logs}, err
		case <-time.After(30 * time.Second):
			cancel()
			t.Fatalf("agent %s in 30s\n%s", []string{"not ready", "ready, but its stream check not done"}[i], logs)
		}
	}
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() { cancel(); stopErr = <-errc })
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return &testAgent{Agent: a, logs: logs, stop: stop}, nil
}

// checkHold holds a launchHolding agent's start check until release, or
// until the agent stops (its check then runs on a cancelled context and
// commits nothing, as if the process had died first).
func checkHold(t testing.TB) (hold func(context.Context), release func()) {
	ch := make(chan struct{})
	release = sync.OnceFunc(func() { close(ch) })
	t.Cleanup(release)
	return func(ctx context.Context) {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}, release
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
