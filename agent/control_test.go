package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit"
)

const twoSims = "sensors:\n  - {name: cold, driver: sim, interval: 50ms}\n  - {name: warm, driver: sim, interval: 50ms, base: {temperature: 20}}\n"

func httpGet(t *testing.T, c *http.Client, url string) (int, []byte) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func unixClient(socket string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

func TestControlAPI(t *testing.T) {
	cfg := testConfig(t, "site: store-9\n"+twoSims)
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.MonitorListen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	a := runAgent(t, cfg)
	sock := cfg.ControlSocket

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("control socket mode %v, want a socket with 0660", fi.Mode())
	}

	connect(t, a.ClientURL())
	ctx := context.Background()
	var s Status
	testkit.WaitFor(t, 15*time.Second, func() error {
		s, err = FetchStatus(ctx, sock)
		if err != nil {
			t.Fatal(err)
		}
		if !(len(s.Sensors) == 2 && s.Sensors[0].OK && s.Sensors[1].OK && s.Clients == 1) {
			return errors.New("still waiting for both sensors read and one local client")
		}
		return nil
	})
	if !s.Running || s.Site != "store-9" || s.Domain != "store-9" || s.Version != Version || s.Schema != StatusSchema {
		t.Errorf("status header wrong: %+v", s)
	}
	if s.Uplink != nil {
		t.Errorf("standalone agent reports an uplink: %+v", s.Uplink)
	}
	if s.Store.Sync != "always" || s.Store.DiskTotal == 0 || s.Store.Dir != cfg.StateDir {
		t.Errorf("store = %+v", s.Store)
	}
	if len(s.Backlog) != 2 || s.Backlog[0].Stream != "ALERTS" || s.Backlog[1].Stream != "TELEMETRY" {
		t.Fatalf("backlog lanes = %+v, want ALERTS then TELEMETRY", s.Backlog)
	}
	// Standalone: nothing is ever forwarded, so every reading is backlog.
	if tl := s.Backlog[1]; tl.Messages == 0 || tl.Bytes == 0 || tl.Oldest.IsZero() || tl.Oldest.Before(s.Started) {
		t.Errorf("TELEMETRY backlog = %+v", tl)
	}
	if s.Sensors[0].Interval != 50*time.Millisecond {
		t.Errorf("sensor interval %s", s.Sensors[0].Interval)
	}
	if s.Clock.State == "" || s.Time.IsZero() || s.Started.IsZero() {
		t.Errorf("clock/time missing: %+v", s)
	}

	t.Run("health", func(t *testing.T) {
		code, body := httpGet(t, unixClient(sock), "http://agent/v1/health")
		var h HealthResponse
		if err := json.Unmarshal(body, &h); err != nil || code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Fatalf("GET /v1/health: %d %s (%v)", code, body, err)
		}
		if h.State != StateName(h.Code) {
			t.Errorf("health = %+v", h)
		}
		code, _ = httpGet(t, unixClient(sock), "http://agent/v2/status")
		if code != http.StatusNotFound {
			t.Errorf("unknown API version answered %d", code)
		}
	})

	t.Run("metrics parse", func(t *testing.T) {
		code, body := httpGet(t, http.DefaultClient, "http://"+a.MetricsAddr()+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics: %d", code)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
		if err != nil {
			t.Fatalf("Prometheus parser rejects /metrics: %v\n%s", err, body)
		}
		for _, name := range []string{"edge_agent_build_info", "edge_agent_backlog_messages", "edge_agent_sensor_value",
			"edge_agent_sensor_errors_total", "edge_agent_store_bytes", "edge_agent_store_sync_always", "edge_agent_health"} {
			if fams[name] == nil {
				t.Errorf("metric %s missing", name)
			}
		}
		bi := fams["edge_agent_build_info"].GetMetric()[0]
		labels := map[string]string{}
		for _, l := range bi.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] != Version || labels["goarch"] == "" || bi.GetGauge().GetValue() != 1 {
			t.Errorf("build_info = %v", bi)
		}
		if n := len(fams["edge_agent_sensor_value"].GetMetric()); n != 2 {
			t.Errorf("%d sensor values, want 2", n)
		}
	})

	t.Run("monitor_listen serves varz", func(t *testing.T) {
		code, body := httpGet(t, http.DefaultClient, "http://"+cfg.MonitorListen+"/varz")
		var v struct {
			ServerName string `json:"server_name"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &v) != nil || v.ServerName == "" {
			t.Fatalf("GET /varz: %d %.200s", code, body)
		}
	})

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := FetchStatus(ctx, sock); !errors.Is(err, ErrNotRunning) {
		t.Errorf("after stop: %v, want ErrNotRunning", err)
	}
	// The snapshot taken at shutdown is what status shows while stopped.
	st, err := buffer.OpenStateReadOnly(filepath.Join(cfg.StateDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var snap Status
	if ok, err := st.GetJSON(StatusKey, &snap); !ok || err != nil {
		t.Fatalf("no status snapshot in state.db: %v", err)
	}
	// Taken after s: later time, and never fewer readings (the agent may stop
	// before the next 50 ms tick, so "more" would be a race).
	if snap.Site != "store-9" || !snap.Time.After(s.Time) || len(snap.Sensors) != 2 || snap.Sensors[0].Published < s.Sensors[0].Published {
		t.Errorf("snapshot is not the shutdown one: %+v", snap)
	}
}

func TestControlSocketStaleAndLive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "agent.sock")

	// A crash leaves the socket file behind with nobody listening.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	l, err = listenControl(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer l.Close()

	// A live one belongs to someone else: keep it.
	if _, err := listenControl(path); err == nil || !strings.Contains(err.Error(), "another edge-agent is answering") {
		t.Fatalf("second listener on a live socket: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("live socket removed: %v", err)
	}
}
