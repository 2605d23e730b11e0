package hubops

import (
	"slices"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/uplink/wire"
)

// TestRankStates ranks heartbeats decoded from the bytes a site stores:
// the typed health words still come from the JSON "st" strings, a down site
// sorts before a degraded one, and a degraded one before a healthy one with
// more backlog.
func TestRankStates(t *testing.T) {
	now := time.Now()
	raw := map[string]string{
		"a-healthy":  `{"v":1,"site":"a-healthy","hb":30,"st":"healthy","link":"connected","bl":{"TELEMETRY":900}}`,
		"b-degraded": `{"v":1,"site":"b-degraded","hb":30,"st":"degraded","link":"connected"}`,
		"c-down":     `{"v":1,"site":"c-down","hb":30,"st":"down","link":"connected"}`,
	}
	var sites []SiteView
	for site, data := range raw {
		v := siteView("edge", wire.StatusSubject("edge", site), []byte(data), now)
		if len(v.Warnings) > 0 || v.Site != site {
			t.Fatalf("%s decoded as %+v", site, v)
		}
		sites = append(sites, v)
	}
	ranked := Rank(sites, now, 0)
	var order []string
	for _, v := range ranked {
		order = append(order, v.Site)
	}
	if want := []string{"c-down", "b-degraded", "a-healthy"}; !slices.Equal(order, want) {
		t.Fatalf("ranked %v, want %v", order, want)
	}
	if ranked[0].Heartbeat.State != wire.Down || !slices.Contains(ranked[0].Warnings, "down") {
		t.Errorf("down site: state %q, warnings %v", ranked[0].Heartbeat.State, ranked[0].Warnings)
	}
	if ranked[1].Heartbeat.State != wire.Degraded || ranked[2].Heartbeat.State != wire.Healthy {
		t.Errorf("states %q, %q", ranked[1].Heartbeat.State, ranked[2].Heartbeat.State)
	}
}
