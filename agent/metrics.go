package agent

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edge-agent/edge-agent/uplink"
)

// metricsHandler serves GET /metrics in the Prometheus text format. It is
// written by hand from the same Status the CLI shows: one source of truth,
// and no client library registry to keep in sync with the parts.
func (a *Agent) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		writeMetrics(w, a.Status(r.Context()), SuppressedLogLines(a.log))
	})
	return mux
}

// promWriter writes metric families; each family's HELP and TYPE come once,
// before its samples, as the format requires.
type promWriter struct{ w io.Writer }

func (p promWriter) family(name, typ, help string) {
	fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// sample writes one line; labels are name/value pairs.
func (p promWriter) sample(name string, v float64, labels ...string) {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=\"%s\"", labels[i], escapeLabel(labels[i+1]))
		}
		b.WriteByte('}')
	}
	fmt.Fprintf(p.w, "%s %s\n", b.String(), strconv.FormatFloat(v, 'g', -1, 64))
}

func (p promWriter) one(name, typ, help string, v float64, labels ...string) {
	p.family(name, typ, help)
	p.sample(name, v, labels...)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// writeMetrics renders s. Names follow Prometheus conventions: base units
// (bytes, seconds), _total for counters.
func writeMetrics(w io.Writer, s Status, suppressedLogs uint64) {
	p := promWriter{w}
	p.one("edge_agent_build_info", "gauge", "Version of the running agent, and its site.", 1,
		"version", s.Version, "commit", s.Commit, "goarch", runtime.GOARCH, "site", s.Site)
	p.one("edge_agent_start_time_seconds", "gauge", "When the agent started, unix seconds.", float64(s.Started.UnixNano())/1e9)
	code, warnings := s.Health()
	p.one("edge_agent_health", "gauge", "0 healthy, 1 degraded, 2 down (the exit code of `edge-agent status`).", float64(code))
	p.one("edge_agent_warnings", "gauge", "Warnings `edge-agent status` shows.", float64(len(warnings)))

	if u := s.Uplink; u != nil {
		p.family("edge_agent_link_state", "gauge", "Leaf link to the hub: 1 for the current state.")
		var cur uplink.LinkState
		if u.Link != nil {
			cur = u.Link.State
		}
		for _, st := range []uplink.LinkState{uplink.StateConnected, uplink.StateConnecting, uplink.StateDisconnected} {
			p.sample("edge_agent_link_state", b2f(st == cur), "state", string(st))
		}
		p.one("edge_agent_duplicate_site", "gauge", "1 while another device is heard publishing as this site, or the hub evicted this leaf for a duplicate server name.", b2f(u.DuplicateSite != ""))
		if u.Link != nil {
			p.one("edge_agent_link_reconnects_total", "counter", "Leaf reconnects this boot.", float64(u.Link.Reconnects))
			p.one("edge_agent_link_sent_bytes_total", "counter", "Bytes sent towards the hub this boot, as they left for the WAN (after compression and TLS).", float64(u.Link.SentBytes))
			writeLinkTimes(p, u.Link, s.Time)
		}
		if f := u.Forwarder; f != nil {
			p.family("edge_agent_forwarded_total", "counter", "Messages the hub acknowledged, per local stream, this boot.")
			for _, k := range slices.Sorted(maps.Keys(f.Forwarded)) {
				p.sample("edge_agent_forwarded_total", float64(f.Forwarded[k]), "stream", k)
			}
			p.one("edge_agent_forward_rejected_total", "counter", "Messages that can never be forwarded (too large for the hub, a wildcard subject): skipped.", float64(f.Rejected))
			p.one("edge_agent_forward_dropped_duplicate_total", "counter", "New readings the hub dropped as duplicates of another message with the same id: not at the hub.", float64(f.DroppedDuplicate))
			p.one("edge_agent_forward_stalls_total", "counter", "Times forwarding stalled waiting for hub acks.", float64(f.Stalls))
			p.one("edge_agent_forward_rate", "gauge", "Recent hub-acked messages per second.", f.RatePerSec)
			p.one("edge_agent_forward_window", "gauge", "Messages the forwarder may have in flight now (adapts to the hub).", float64(f.Window))
			p.one("edge_agent_forward_hub_busy_total", "counter", "Times the hub stream answered 429 too many requests and the window was halved.", float64(f.HubBusy))
		}
	}

	lanes := []struct {
		name, typ, help string
		v               func(LaneStatus) float64
	}{
		{"edge_agent_backlog_messages", "gauge", "Unforwarded messages per local stream.", func(l LaneStatus) float64 { return float64(l.Messages) }},
		{"edge_agent_backlog_bytes", "gauge", "Unforwarded bytes per local stream.", func(l LaneStatus) float64 { return float64(l.Bytes) }},
		{"edge_agent_backlog_oldest_age_seconds", "gauge", "Age of the oldest unforwarded message.", func(l LaneStatus) float64 {
			if l.Oldest.IsZero() || l.Messages == 0 {
				return 0
			}
			return s.Time.Sub(l.Oldest).Seconds()
		}},
		{"edge_agent_evicted_unforwarded_total", "counter", "Messages stream limits evicted before they were forwarded.", func(l LaneStatus) float64 { return float64(l.Evicted) }},
		{"edge_agent_buffer_lost_readings_total", "counter", "Readings damage took from a local stream before they were forwarded (acknowledging the loss does not reset it).", func(l LaneStatus) float64 { return float64(l.Lost) }},
		{"edge_agent_expired_by_age_total", "counter", "Messages buffer.max_age purged this run (aged on agent time, not the wall clock).", func(l LaneStatus) float64 { return float64(l.ExpiredByAge) }},
	}
	for _, m := range lanes {
		if len(s.Backlog) == 0 {
			break
		}
		p.family(m.name, m.typ, m.help)
		for _, l := range s.Backlog {
			p.sample(m.name, m.v(l), "stream", l.Stream)
		}
	}

	if len(s.Sensors) > 0 {
		p.family("edge_agent_sensor_value", "gauge", "Last value read, per sensor and metric.")
		for _, se := range s.Sensors {
			for _, k := range slices.Sorted(maps.Keys(se.LastValues)) {
				v := se.LastValues[k]
				p.sample("edge_agent_sensor_value", v.V, "sensor", se.Name, "metric", k, "unit", v.Unit)
			}
		}
		sensorFams := []struct {
			name, typ, help string
			v               func(SensorStatus) float64
		}{
			{"edge_agent_sensor_ok", "gauge", "1 if the last read succeeded.", func(se SensorStatus) float64 { return b2f(se.OK) }},
			{"edge_agent_sensor_errors_total", "counter", "Failed reads or publishes.", func(se SensorStatus) float64 { return float64(se.Errors) }},
			{"edge_agent_sensor_published_total", "counter", "Readings stored locally.", func(se SensorStatus) float64 { return float64(se.Published) }},
			{"edge_agent_sensor_writes_total", "counter", "Writes requested on cmd.modbus.<sensor>.<metric>, done or refused.", func(se SensorStatus) float64 { return float64(se.Writes) }},
			{"edge_agent_sensor_write_errors_total", "counter", "Writes refused or failed.", func(se SensorStatus) float64 { return float64(se.WriteErrors) }},
			{"edge_agent_sensor_last_read_timestamp_seconds", "gauge", "Unix time of the last successful read (0: none).", func(se SensorStatus) float64 { return unixOrZero(se.LastRead) }},
		}
		for _, m := range sensorFams {
			p.family(m.name, m.typ, m.help)
			for _, se := range s.Sensors {
				p.sample(m.name, m.v(se), "sensor", se.Name, "driver", se.Driver)
			}
		}
		p.family("edge_agent_sensor_bus_events_total", "counter", "What a sensor's bus saw, per event (modbus: timeouts, crc_errors, exceptions, io, retries).")
		for _, se := range s.Sensors {
			for _, k := range slices.Sorted(maps.Keys(se.Events)) {
				p.sample("edge_agent_sensor_bus_events_total", float64(se.Events[k]), "sensor", se.Name, "event", k)
			}
		}
	}

	st := s.Store
	p.one("edge_agent_store_bytes", "gauge", "Bytes the store uses on disk (JetStream and state.db).", float64(st.Bytes))
	p.one("edge_agent_store_max_bytes", "gauge", "buffer.max_bytes.", float64(st.MaxBytes))
	p.one("edge_agent_disk_free_bytes", "gauge", "Free bytes on the store's filesystem.", float64(st.DiskFree))
	p.one("edge_agent_disk_total_bytes", "gauge", "Size of the store's filesystem.", float64(st.DiskTotal))
	p.one("edge_agent_streams_recreated_total", "counter", "Agent streams recreated this boot after something deleted them.", float64(st.RecreatedStreams))
	p.one("edge_agent_store_sync_always", "gauge", "1 if every write is fsynced before its ack (buffer.sync: always).", b2f(st.Sync == "always"))
	p.one("edge_agent_clock_synchronised", "gauge", "1 if the kernel reports the clock synchronised.", b2f(s.Clock.State == ClockSynced))
	p.one("edge_agent_clock_before_build", "gauge", "1 if the wall clock reads a time before this build's date: every reading is stamped wrong.", b2f(!s.Clock.Floor.IsZero() && s.Clock.Wall.Before(s.Clock.Floor)))
	if o := s.Clock.HubOffset; o != nil {
		p.one("edge_agent_clock_hub_offset_seconds", "gauge", "This clock minus the hub's, measured on the last heartbeat round trip.", *o)
	}
	if age := st.Age; age != nil {
		p.one("edge_agent_clock_jumps_total", "counter", "Wall-clock jumps seen this run.", float64(age.Jumps))
		p.one("edge_agent_agent_time_seconds", "gauge", "Agent time: what buffer.max_age is measured on.", age.AgentTime.Seconds())
	}
	p.one("edge_agent_local_clients", "gauge", "Local client connections.", float64(s.Clients))
	p.one("edge_agent_log_lines_suppressed_total", "counter", "Repeated log lines the rate limiter left out.", float64(suppressedLogs))
}

// writeLinkTimes writes the outage's times as status shows them: an alert
// on "leaf down for N minutes" reads edge_agent_link_down_seconds, which a
// failed attempt does not reset.
func writeLinkTimes(p promWriter, l *uplink.LinkStatus, now time.Time) {
	down, next := 0.0, 0.0
	if l.State != uplink.StateConnected && !l.DownSince.IsZero() {
		down = now.Sub(l.DownSince).Seconds()
	}
	if !l.NextAttempt.IsZero() {
		next = max(l.NextAttempt.Sub(now).Seconds(), 0)
	}
	p.one("edge_agent_link_down_seconds", "gauge", "Seconds since the link to the hub dropped (since the agent started if it never connected); 0 while connected.", down)
	p.one("edge_agent_link_last_up_timestamp_seconds", "gauge", "Unix time the link was last up, i.e. when it dropped (0: connected now, or never connected this boot).", unixOrZero(l.LastUp))
	p.one("edge_agent_link_attempts_since_down", "gauge", "Failed connection attempts since the link dropped.", float64(l.Attempts))
	p.one("edge_agent_link_next_attempt_seconds", "gauge", "Seconds until the next connection attempt (0: connected or an attempt is under way).", next)
	p.one("edge_agent_link_last_outage_seconds", "gauge", "How long the link was down before its current connection (0: down now, or no drop this boot).", l.LastOutage.Seconds())
}

func unixOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
