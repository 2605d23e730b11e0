package agent

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/uplink"
)

// The link's counters reach /metrics from the same Status the CLI shows:
// bytes on the wire for a metered link's bill, reconnects.
func TestMetricsLinkCounters(t *testing.T) {
	var b strings.Builder
	writeMetrics(&b, healthyStatus(), 0)
	for _, want := range []string{
		"# TYPE edge_agent_link_sent_bytes_total counter\nedge_agent_link_sent_bytes_total 4.3212345e+07\n",
		"edge_agent_link_reconnects_total 2\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, b.String())
		}
	}
}

// A two-hour outage reads as two hours in every view: /metrics, the JSON
// of `status --json` and the hub's agent.status (one Status type), and the
// heartbeat sent when the link is back; failed attempts do not reset it.
func TestOutageTimesEverywhere(t *testing.T) {
	s := statusFixtures()["hub-refusing"]
	var b strings.Builder
	writeMetrics(&b, s, 0)
	for _, want := range []string{
		"edge_agent_link_down_seconds 7500\n",
		fmt.Sprintf("edge_agent_link_last_up_timestamp_seconds %s\n", strconv.FormatFloat(float64(ago(2*time.Hour+5*time.Minute).Unix()), 'g', -1, 64)),
		"edge_agent_link_attempts_since_down 131\n",
		"edge_agent_link_next_attempt_seconds 41.3\n",
		"edge_agent_link_last_outage_seconds 0\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, b.String())
		}
	}

	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var js struct {
		Uplink struct {
			Link map[string]any `json:"link"`
		} `json:"uplink"`
	}
	if err := json.Unmarshal(data, &js); err != nil {
		t.Fatal(err)
	}
	down := ago(2*time.Hour + 5*time.Minute).Format(time.RFC3339)
	for k, want := range map[string]any{
		"since": down, "down_since": down, "last_up": down, "attempts_since_down": 131.0,
		"next_attempt": goldenNow.Add(41*time.Second + 300*time.Millisecond).Format(time.RFC3339Nano),
	} {
		if got := js.Uplink.Link[k]; got != want {
			t.Errorf("status JSON link.%s = %v, want %v", k, got, want)
		}
	}
	if fix, _ := js.Uplink.Link["fix"].(string); !strings.Contains(fix, "the hub is down or restarting") {
		t.Errorf("status JSON link.fix = %q", fix)
	}

	// Back up after it: the heartbeat carries the outage it ended.
	up := s
	l := *s.Uplink.Link
	l.State, l.Since, l.DownSince, l.LastUp, l.LastOutage = uplink.StateConnected, goldenNow, time.Time{}, time.Time{}, 2*time.Hour+5*time.Minute
	up.Uplink = &UplinkStatus{Link: &l, Forwarder: s.Uplink.Forwarder}
	if hb := heartbeatFromStatus(up); hb.UpSince != goldenNow.Unix() || hb.LastOutage != 7500 {
		t.Errorf("heartbeat lup=%d lout=%d, want %d 7500", hb.UpSince, hb.LastOutage, goldenNow.Unix())
	}
}
