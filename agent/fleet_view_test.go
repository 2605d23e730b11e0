package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink"
	"github.com/edge-agent/edge-agent/uplink/hubops"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

func TestFleetView(t *testing.T) {
	hub, js := startHub(t, nil, statusStream)
	ctx := context.Background()
	url := leafURL(t, hub, "nats")
	startAgent(t, fmt.Sprintf("site: store-ok\nuplink:\n  hub_urls: [%s]\nsensors:\n  - {name: fridge, driver: sim, interval: 200ms}\n", url))
	startAgent(t, fmt.Sprintf("site: store-sick\nuplink:\n  hub_urls: [%s]\n  heartbeat: 1s\nsensors:\n  - {name: door, driver: sim, interval: 200ms, fail_every: 1}\n", url))

	// A large fleet's table spans several fetch batches; each site keeps
	// only its newest heartbeat.
	const synthetic = 1200
	for round := range 2 {
		for i := range synthetic {
			hb := wire.Heartbeat{Schema: 1, Site: fmt.Sprintf("sim-%04d", i), Instance: fmt.Sprintf("r%d", round), Interval: 30, Link: uplink.StateConnected, State: "healthy"}
			if i == 7 {
				hb.Dup, hb.Twin = true, "sim-0007-0badc0de/abcd"
			}
			data, _ := json.Marshal(hb)
			if _, err := js.Publish(ctx, wire.StatusSubject("edge", hb.Site), data); err != nil {
				t.Fatal(err)
			}
		}
	}
	var sites []hubops.SiteView
	testkit.WaitFor(t, 20*time.Second, func() error {
		var err error
		if sites, err = hubops.ReadFleet(ctx, js, "edge"); err != nil {
			t.Fatal(err)
		}
		bySite := map[string]hubops.SiteView{}
		for _, s := range sites {
			bySite[s.Site] = s
		}
		if !(len(bySite["store-ok"].Heartbeat.Version) > 0 && len(bySite["store-sick"].Heartbeat.Failing) == 1) {
			return errors.New("still waiting for both agents in the fleet view, store-sick with its failing sensor")
		}
		return nil
	})
	if len(sites) != synthetic+2 {
		t.Fatalf("fleet view has %d sites, want %d (one row per site)", len(sites), synthetic+2)
	}
	for _, s := range sites {
		if s.Heartbeat.Instance == "r0" {
			t.Fatalf("site %s shows an older heartbeat than its last", s.Site)
		}
	}

	// One hour later every synthetic site has gone silent; the agents have
	// too, by the clock of this view. Worst first: duplicate, then silent
	// with failing sensors, then silent.
	ranked := hubops.Rank(sites, time.Now().Add(time.Hour), 0)
	if ranked[0].Site != "sim-0007" || !ranked[0].Silent {
		t.Errorf("first row %s (%v), want the duplicate site", ranked[0].Site, ranked[0].Warnings)
	}
	if ranked[1].Site != "store-sick" {
		t.Errorf("second row %s (%v), want store-sick (failing sensor)", ranked[1].Site, ranked[1].Warnings)
	}
	// Now: the live agents are not silent, the synthetic ones (stored in
	// the last seconds, 30 s interval) neither; --stale 1ns makes all silent.
	for _, s := range hubops.Rank(sites, time.Now(), 0) {
		if s.Silent {
			t.Errorf("%s silent right after its heartbeat", s.Site)
		}
	}
	for _, s := range hubops.Rank(sites, time.Now(), time.Nanosecond) {
		if !s.Silent {
			t.Errorf("%s not silent with --stale 1ns", s.Site)
		}
	}

	// An existing stream that is not a last-value table is refused with
	// the fix, not silently used.
	_, fresh := startHub(t, nil)
	if _, err := hubops.ReadFleet(ctx, fresh, "edge"); err == nil {
		t.Fatal("ReadFleet without EDGE_STATUS did not fail")
	}
	bad := hubops.StatusStreamConfig("edge")
	bad.MaxMsgsPerSubject = 0
	if _, err := fresh.CreateStream(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := hubops.EnsureStatusStream(ctx, fresh, "edge"); err == nil || !strings.Contains(err.Error(), "max-msgs-per-subject 1") {
		t.Fatalf("a status stream keeping every heartbeat was accepted or the fix is missing: %v", err)
	}
}
