package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// cliConfig writes the agent.yaml of site cli-1 (extra appended) in a
// temporary directory, with a state_dir that run creates, and returns its
// path.
func cliConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	return writeFile(t, dir, "agent.yaml", "site: cli-1\nstate_dir: "+filepath.Join(dir, "state")+"\nlisten: 127.0.0.1:0\nmetrics_listen: \"\"\ncontrol_socket: "+filepath.Join(dir, "agent.sock")+"\n"+extra)
}

// startCLIAgent runs a real agent from the config file at path until the
// test ends or stop is called; the CLI under test finds it through that
// file.
func startCLIAgent(t *testing.T, path string) (a *agent.Agent, stop func() error) {
	t.Helper()
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a = agent.New(cfg, slog.New(slog.DiscardHandler), nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	stop = sync.OnceValue(func() error { cancel(); return <-errc })
	t.Cleanup(func() { _ = stop() })
	// Past Ready, the start's stream check: what the tests look at.
	for _, c := range []<-chan struct{}{a.Ready(), a.Checked()} {
		select {
		case <-c:
		case err := <-errc:
			t.Fatal(err)
		}
	}
	return a, stop
}

func TestStatusCommand(t *testing.T) {
	path := cliConfig(t, "sensors:\n  - {name: demo, driver: sim, interval: 50ms}\n")
	a, stop := startCLIAgent(t, path)

	var out, errb bytes.Buffer
	testkit.WaitFor(t, 15*time.Second, func() error {
		out.Reset()
		code := run([]string{"status", "--config", path}, &out, &errb)
		if code == agent.ExitHealthy || code == agent.ExitDegraded && strings.Contains(out.String(), "clock") {
			return nil
		}
		return fmt.Errorf("status exit %d:\n%s%s", code, out.String(), errb.String())
	})
	if !strings.Contains(out.String(), "site cli-1") || !strings.Contains(out.String(), "demo") {
		t.Errorf("status output:\n%s", out.String())
	}

	out.Reset()
	code := run([]string{"status", "--socket", a.Config().ControlSocket, "--json"}, &out, &errb)
	var s agent.Status
	if err := json.Unmarshal(out.Bytes(), &s); err != nil || s.Site != "cli-1" || !s.Running {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	if want, _ := s.Health(); code != want || s.State != agent.StateName(code) {
		t.Errorf("--json exit %d, state %q; health says %d", code, s.State, want)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	code = run([]string{"status", "--config", path}, &out, &errb)
	if code != agent.ExitDown {
		t.Errorf("stopped daemon: exit %d, want %d", code, agent.ExitDown)
	}
	for _, want := range []string{"edge-agent is not running", "systemctl status edge-agent", "journalctl -u edge-agent -n 50", "last recorded status", "site cli-1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stopped daemon output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"status", "--config", path, "--json"}, &out, &errb); code != agent.ExitDown || json.Unmarshal(out.Bytes(), &s) != nil || s.Running || s.State != wire.Down {
		t.Errorf("stopped daemon --json: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"doctor", "--config", path}, &out, &errb); code == 2 || !strings.Contains(out.String(), "config") {
		t.Errorf("doctor on a healthy standalone config: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
