package agent

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/uplink"
	"github.com/edge-agent/edge-agent/uplink/hubops"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// FleetMetricsHandler serves GET /metrics for the whole fleet, one series
// per site, read from the hub's last-heartbeat table on every scrape (the
// read costs one pass of the table: `edge-agent fleet --metrics ADDR`).
// Prometheus scrapes it at the hub, where every site's heartbeat lands,
// so a site whose own /metrics is out of reach is still on the dashboard.
func FleetMetricsHandler(js jetstream.JetStream, prefix string, stale time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		defer cancel()
		sites, err := hubops.ReadFleet(ctx, js, prefix)
		if err != nil {
			http.Error(w, uplink.RedactText(err.Error()), http.StatusBadGateway)
			return
		}
		now := time.Now()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		WriteFleetMetrics(w, hubops.Rank(sites, now, stale))
	})
	return mux
}

// healthCode maps a heartbeat's state to edge_agent_health's values.
var healthCode = map[wire.HealthState]float64{wire.Healthy: ExitHealthy, wire.Degraded: ExitDegraded, wire.Down: ExitDown}

// WriteFleetMetrics renders the fleet view in the Prometheus text format.
func WriteFleetMetrics(w io.Writer, sites []hubops.SiteView) {
	p := promWriter{w}
	p.one("edge_fleet_sites", "gauge", "Sites in the hub's last-heartbeat table.", float64(len(sites)))
	p.family("edge_fleet_site_info", "gauge", "One per site: its server name and agent version.")
	for _, s := range sites {
		p.sample("edge_fleet_site_info", 1, "site", s.Site, "server", s.Heartbeat.Server, "version", s.Heartbeat.Version)
	}
	fams := []struct {
		name, typ, help string
		v               func(hubops.SiteView) (float64, bool)
	}{
		{"edge_fleet_site_last_seen_timestamp_seconds", "gauge", "When the hub stored the site's last heartbeat (hub clock), unix seconds.", func(s hubops.SiteView) (float64, bool) {
			return float64(s.LastSeen.UnixNano()) / 1e9, true
		}},
		{"edge_fleet_site_silent", "gauge", "1 if no heartbeat for three of its intervals.", func(s hubops.SiteView) (float64, bool) { return b2f(s.Silent), true }},
		{"edge_fleet_site_health", "gauge", "0 healthy, 1 degraded, 2 down, as the site's `edge-agent status` in its last heartbeat.", func(s hubops.SiteView) (float64, bool) {
			v, ok := healthCode[s.Heartbeat.State]
			return v, ok
		}},
		{"edge_fleet_site_link_connected", "gauge", "1 if the site's last heartbeat reported its leaf link connected.", func(s hubops.SiteView) (float64, bool) {
			return b2f(s.Heartbeat.Link == uplink.StateConnected && !s.Silent), true
		}},
		{"edge_fleet_site_backlog_messages", "gauge", "Unforwarded messages at the site.", func(s hubops.SiteView) (float64, bool) { return float64(s.Backlog()), true }},
		{"edge_fleet_site_evicted_unforwarded", "gauge", "Readings the site's buffer limits evicted before forwarding (as its heartbeat reports).", func(s hubops.SiteView) (float64, bool) {
			return float64(s.Heartbeat.Evicted), true
		}},
		{"edge_fleet_site_sensors_ok", "gauge", "Sensors reading fine.", func(s hubops.SiteView) (float64, bool) { return float64(s.Heartbeat.SensorsOK), true }},
		{"edge_fleet_site_sensors_failing", "gauge", "Sensors failing.", func(s hubops.SiteView) (float64, bool) { return float64(len(s.Heartbeat.Failing)), true }},
		{"edge_fleet_site_duplicate", "gauge", "1 if two devices publish as this site.", func(s hubops.SiteView) (float64, bool) { return b2f(s.Heartbeat.Dup), true }},
		{"edge_fleet_site_clock_offset_seconds", "gauge", "The site's clock minus the hub's when its heartbeat was stored.", func(s hubops.SiteView) (float64, bool) {
			off, ok := s.ClockOffset()
			return off.Seconds(), ok
		}},
		{"edge_fleet_site_store_bytes", "gauge", "Bytes of the site's local store.", func(s hubops.SiteView) (float64, bool) { return float64(s.Heartbeat.DiskUsed), true }},
		{"edge_fleet_site_disk_free_bytes", "gauge", "Free bytes on the site's store filesystem.", func(s hubops.SiteView) (float64, bool) { return float64(s.Heartbeat.DiskFree), true }},
		{"edge_fleet_site_reconnects", "gauge", "Leaf reconnects the site reported this boot.", func(s hubops.SiteView) (float64, bool) { return float64(s.Heartbeat.Reconnects), true }},
	}
	for _, f := range fams {
		p.family(f.name, f.typ, f.help)
		for _, s := range sites {
			if v, ok := f.v(s); ok {
				p.sample(f.name, v, "site", s.Site)
			}
		}
	}
}
