package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// monitoringFiles are the alert rules and dashboards the .deb ships under
// /usr/share/edge-agent/.
var monitoringFiles = []string{
	"../packaging/prometheus/edge-agent.rules.yml",
	"../packaging/grafana/edge-agent.json",
	"../packaging/grafana/edge-fleet.json",
}

var metricNameRE = regexp.MustCompile(`\bedge_(?:agent|fleet)_[a-z0-9_]+`)

// scrape returns the metric names in a Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names[line[:strings.IndexAny(line, "{ ")]] = true
	}
	return names
}

// TestMonitoringNamesRealMetrics: every metric the alert rules and the
// Grafana dashboards name is in the real /metrics output of a running
// agent (uplink to a real hub, a sensor, an offset measured against the
// hub's clock) or of the fleet exporter reading that hub's heartbeat table.
func TestMonitoringNamesRealMetrics(t *testing.T) {
	hub, js := startHub(t, nil, statusStream, edgeStream)
	cfg := testConfig(t, fmt.Sprintf(`uplink:
  hub_urls: [%s]
  heartbeat: 1s
sensors:
  - {name: t1, driver: sim, interval: 100ms}
`, leafURL(t, hub, "nats")))
	cfg.MetricsListen = "127.0.0.1:0"
	a := runAgent(t, cfg)
	ctx := context.Background()
	testkit.WaitFor(t, 20*time.Second, func() error {
		s := a.Status(ctx)
		if !(s.Clock.HubOffset != nil && s.Uplink.Forwarder != nil && s.Uplink.Forwarder.Forwarded["TELEMETRY"] > 0) {
			return errors.New("still waiting for readings forwarded and the clock measured against the hub")
		}
		return nil
	})
	got := scrape(t, "http://"+a.MetricsAddr()+"/metrics")

	testkit.WaitFor(t, 10*time.Second, func() error {
		sites, err := hubops.ReadFleet(ctx, js, "edge")
		if !(err == nil && len(sites) == 1 && sites[0].Heartbeat.Sent != 0) {
			return errors.New("still waiting for the site's heartbeat in EDGE_STATUS")
		}
		return nil
	})
	fleet := httptest.NewServer(FleetMetricsHandler(js, "edge", 0))
	defer fleet.Close()
	for n := range scrape(t, fleet.URL+"/metrics") {
		got[n] = true
	}

	for _, f := range monitoringFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if strings.HasSuffix(f, ".json") {
			err = json.Unmarshal(b, &doc)
		} else {
			err = yaml.Unmarshal(b, &doc)
		}
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		names := slices.Compact(slices.Sorted(slices.Values(metricNameRE.FindAllString(string(b), -1))))
		if len(names) < 5 {
			t.Fatalf("%s names %d metrics: %v", filepath.Base(f), len(names), names)
		}
		for _, n := range names {
			if !got[n] {
				t.Errorf("%s names %s, which no real /metrics exports", filepath.Base(f), n)
			}
		}
	}
}
