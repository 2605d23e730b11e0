package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/uplink/hubops"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// fleetRun runs `edge-agent fleet` with args against url.
func fleetRun(t *testing.T, url string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"fleet", "--server", url, "--timeout", "20s"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// tableSites is the SITE column of a fleet table, in order.
func tableSites(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "SITE ") {
		t.Fatalf("not a fleet table:\n%s", out)
	}
	var sites []string
	for _, l := range lines[1 : len(lines)-1] {
		sites = append(sites, strings.Fields(l)[0])
	}
	if want := fmt.Sprintf("%d sites", len(sites)); lines[len(lines)-1] != want {
		t.Errorf("table footer %q, want %q", lines[len(lines)-1], want)
	}
	return sites
}

// TestFleetCommand reads a hub's fleet table the way an operator does:
// worst site first, JSON that decodes back to what the sites sent, and
// --stale listing only the silent sites with exit code 1.
func TestFleetCommand(t *testing.T) {
	hub := testHub(t)
	url := hub.ClientURL()
	js := hubJS(t, url)
	if _, err := hubops.EnsureStatusStream(t.Context(), js, "edge"); err != nil {
		t.Fatal(err)
	}
	beat := func(site string, hb wire.Heartbeat) wire.Heartbeat {
		t.Helper()
		hb.Schema, hb.Site, hb.Server, hb.Instance = wire.HeartbeatSchema, site, site+"-0123abcd", "inst-"+site
		if hb.Interval == 0 {
			hb.Interval = 30
		}
		if hb.State == "" {
			hb.State, hb.Link = "healthy", "connected"
		}
		data, err := json.Marshal(hb)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), wire.StatusSubject("edge", site), data); err != nil {
			t.Fatalf("publish heartbeat of %s: %v", site, err)
		}
		return hb
	}

	// The stale site spoke first, with a 1 s interval, and then went
	// quiet: silent once older than three intervals, or than --stale.
	sent := map[string]wire.Heartbeat{}
	sent["store-f-stale"] = beat("store-f-stale", wire.Heartbeat{Interval: 1, Version: "1.0.0"})
	beat("store-b-twice", wire.Heartbeat{Version: "1.0.0"}) // replaced below: one row per site
	// Its age is what is under test: let it pass gap before the others speak.
	const gap = 5 * time.Second
	time.Sleep(gap)
	fresh := time.Now()
	sent["store-a-ok"] = beat("store-a-ok", wire.Heartbeat{Version: "1.1.0", SensorsOK: 3})
	sent["store-b-twice"] = beat("store-b-twice", wire.Heartbeat{Version: "1.1.0"})
	sent["store-c-backlog"] = beat("store-c-backlog", wire.Heartbeat{Version: "1.1.0", Backlog: map[string]uint64{"TELEMETRY": 500, "ALERTS": 2}})
	sent["store-d-down"] = beat("store-d-down", wire.Heartbeat{Version: "1.1.0", State: "down", Link: "disconnected", Reason: "tls"})
	sent["store-e-dup"] = beat("store-e-dup", wire.Heartbeat{Version: "1.1.0", Dup: true, Twin: "store-e-dup-99aa00ff/inst-2"})

	// Worst first: duplicate identity, silent, down, then by backlog,
	// then by name.
	wantOrder := []string{"store-e-dup", "store-f-stale", "store-d-down", "store-c-backlog", "store-a-ok", "store-b-twice"}
	code, out, errs := fleetRun(t, url)
	if code != 0 {
		t.Fatalf("fleet: exit %d: %s%s", code, out, errs)
	}
	if got := tableSites(t, out); !slices.Equal(got, wantOrder) {
		t.Fatalf("table order %v, want %v:\n%s", got, wantOrder, out)
	}
	for _, want := range []string{"DUPLICATE SITE ID: two devices publish as this site (other: store-e-dup-99aa00ff/inst-2)", "disconnected (tls)", "silent for "} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if row := lineOf(out, "store-c-backlog"); !strings.Contains(row, " 502 ") {
		t.Errorf("backlog row %q does not sum the lanes (502)", row)
	}
	if row := lineOf(out, "store-b-twice"); !strings.Contains(row, "1.1.0") {
		t.Errorf("site heard twice shows %q, want its newest heartbeat (1.1.0)", row)
	}

	// JSON: same rows, same order, and the heartbeats as sent.
	code, out, errs = fleetRun(t, url, "--json")
	if code != 0 {
		t.Fatalf("fleet --json: exit %d: %s", code, errs)
	}
	var views []hubops.SiteView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		t.Fatalf("fleet --json is not a list of sites: %v\n%s", err, out)
	}
	var order []string
	for _, v := range views {
		order = append(order, v.Site)
		if !reflect.DeepEqual(v.Heartbeat, sent[v.Site]) {
			t.Errorf("%s: heartbeat from JSON %+v, sent %+v", v.Site, v.Heartbeat, sent[v.Site])
		}
		if v.LastSeen.IsZero() || time.Since(v.LastSeen) > time.Minute {
			t.Errorf("%s: last_seen %s, want the hub's store time", v.Site, v.LastSeen)
		}
		if v.Silent != (v.Site == "store-f-stale") {
			t.Errorf("%s: silent=%v", v.Site, v.Silent)
		}
	}
	if !slices.Equal(order, wantOrder) {
		t.Errorf("JSON order %v, want the table's %v", order, wantOrder)
	}

	// --stale: only the silent site, and exit 1 so cron/monitoring can act.
	// The limit sits halfway between the fresh sites' age and the stale
	// one's, which is gap older.
	stale := func() string { return (time.Since(fresh) + gap/2).Round(time.Millisecond).String() }
	limit := stale()
	code, out, _ = fleetRun(t, url, "--stale", limit)
	if got := tableSites(t, out); code != 1 || !slices.Equal(got, []string{"store-f-stale"}) {
		t.Errorf("--stale %s: exit %d, sites %v; want exit 1 and only store-f-stale:\n%s", limit, code, got, out)
	}
	code, out, _ = fleetRun(t, url, "--stale", stale(), "--json")
	if err := json.Unmarshal([]byte(out), &views); code != 1 || err != nil || len(views) != 1 || views[0].Site != "store-f-stale" || !views[0].Silent {
		t.Errorf("--stale --json: exit %d, err %v, %s", code, err, out)
	}
	// Nobody silent for an hour: exit 0, an empty list, not null.
	code, out, _ = fleetRun(t, url, "--stale", "1h", "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("--stale 1h --json: exit %d, output %q; want 0 and []", code, out)
	}
	code, out, _ = fleetRun(t, url, "--stale", "1h")
	if code != 0 || !strings.Contains(out, "no sites") {
		t.Errorf("--stale 1h: exit %d, output %q; want 0 and \"no sites\"", code, out)
	}
}

// A hub without the fleet table: the error says how to create it.
func TestFleetCommandNoTable(t *testing.T) {
	code, out, errs := fleetRun(t, testHub(t).ClientURL())
	if code != 1 || !strings.Contains(errs, "edge-agent hub init") {
		t.Fatalf("exit %d, want 1 with the hub init hint: %s%s", code, out, errs)
	}
}

func lineOf(out, site string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, site+" ") {
			return l
		}
	}
	return ""
}
