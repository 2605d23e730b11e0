// Package wire is what a site and the hub's operator tooling agree on: the
// heartbeat a site publishes on <prefix>.<site>.status, the subjects it and
// its clock echo travel on, and the typed words it carries. The site's link
// (uplink) sends it and the fleet view (uplink/hubops) reads it; keeping it
// below both lets hubops import nothing of uplink, so uplink's tests can
// build their hubs and fleet tables with hubops. It imports only the fleet
// config's report, which the heartbeat carries.
package wire

import (
	"time"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
)

// HeartbeatSchema is the "v" of every heartbeat; bumped only when a field
// changes meaning. Fields are added, never renamed: the fleet and the
// operator's own dashboards parse this JSON.
const HeartbeatSchema = 1

// Heartbeat is what a site publishes on <prefix>.<site>.status when it
// connects and every uplink.heartbeat while connected. Keys are short
// because 10,000 sites send one every 30 s; a realistic one is ~400 bytes.
type Heartbeat struct {
	Schema   int         `json:"v"`
	Site     string      `json:"site"`
	Server   string      `json:"srv"`  // server name, "<site>-<8 hex>"
	Instance string      `json:"inst"` // random per run: tells cloned devices apart
	Version  string      `json:"ver"`
	Uptime   int64       `json:"up"` // seconds since the agent started
	Interval int64       `json:"hb"` // seconds until the next heartbeat: "stale" is relative to it
	State    HealthState `json:"st"` // as `edge-agent status`
	Link     LinkState   `json:"link"`
	// Reason is the link's reason class (dns, tls, duplicate_site...).
	Reason     ReasonClass `json:"rc,omitempty"`
	Reconnects uint64      `json:"rcn,omitempty"`
	// UpSince is when the current leaf connection came up, and LastOutage
	// how long the link was down before it (seconds; 0: no drop this
	// boot): a heartbeat is sent only while connected, so the fleet reads
	// a two-hour outage here, not as a blip between two heartbeats.
	UpSince    int64             `json:"lup,omitempty"`
	LastOutage int64             `json:"lout,omitempty"`
	Backlog    map[string]uint64 `json:"bl,omitempty"` // unforwarded messages per lane
	Evicted    uint64            `json:"ev,omitempty"` // dropped by limits before forwarding
	Lost       uint64            `json:"ls,omitempty"` // lost to damage before forwarding, not acknowledged on site yet
	SensorsOK  int               `json:"s_ok"`
	Failing    []string          `json:"s_fail,omitempty"` // names of failing sensors
	DiskUsed   uint64            `json:"disk"`             // bytes of the local store
	DiskFree   uint64            `json:"free"`             // bytes free on its filesystem
	Clock      string            `json:"clk"`              // synchronised | unsynchronised | unknown
	// Dup is set while another device is heard on this site's status
	// subject, or the hub evicted this leaf for a duplicate server name.
	Dup  bool   `json:"dup,omitempty"`
	Twin string `json:"twin,omitempty"` // the other device's "server/instance"
	// Warnings are the components status warns about (clock, sensor:door).
	Warnings []string `json:"w,omitempty"`
	// Sent is the site's wall clock at publishing, in Unix milliseconds:
	// against the hub's store time it gives the site's clock offset, at
	// the site (ClockSubject) and in the fleet view.
	Sent int64 `json:"t,omitempty"`
	// Config is the site's remote config state (docs/FLEET-CONFIG.md);
	// absent when remote_config is off.
	Config *fleetconfig.Report `json:"cfg,omitempty"`
}

// StatusSubject is where a site's heartbeats go.
func StatusSubject(prefix, site string) string { return prefix + "." + site + ".status" }

// ClockSubject is where the hub's status stream republishes each stored
// heartbeat (hubops.StatusStreamConfig's RePublish), with the hub's store
// time in the Nats-Time-Stamp header: the site learns the hub's clock
// through its own subjects, which the recommended per-site permissions
// already allow, without $SYS or any hub JetStream API.
func ClockSubject(prefix, site string) string { return prefix + "." + site + ".clock" }

// MaxClockOffset is how far a site's clock may be from the hub's before
// its reading timestamps are called wrong, by the site and by the fleet
// view alike: well above the error of the measurement (half a heartbeat
// round trip), well below what misorders a day's readings. Being
// unsynchronised alone is no fault: a container without NTP whose clock
// agrees with the hub is fine.
const MaxClockOffset = 30 * time.Second

// HealthState is the site's health as `edge-agent status` reports it and
// its heartbeat carries it.
type HealthState string

// Health states. "Down" is reserved for a site that is not collecting data;
// a WAN outage is "degraded", because the buffer is doing its job.
const (
	Healthy  HealthState = "healthy"
	Degraded HealthState = "degraded"
	Down     HealthState = "down"
)

// LinkState is the link as status, metrics and the heartbeat show it. The
// link (uplink) defines its values: the fleet view only carries them.
type LinkState string

// ReasonClass says what kind of problem keeps the link or the forwarder
// from working: what a technician must fix differs for each. Empty means
// none. The link (uplink) defines its values.
type ReasonClass string
