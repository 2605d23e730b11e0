package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/sensors"
	"github.com/edge-agent/edge-agent/uplink"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// goldenNow is the fixed "now" of every fixture, so goldens never drift.
var goldenNow = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func ago(d time.Duration) time.Time { return goldenNow.Add(-d) }

// healthyStatus is a typical 5-sensor site with the uplink up.
func healthyStatus() Status {
	sens := []SensorStatus{
		{Health: sensors.Health{Name: "ambient", Driver: "bme280", OK: true, LastRead: ago(4 * time.Second), Published: 8640,
			LastValues: map[string]sensors.Value{"temperature": {V: 21.4, Unit: "C"}, "humidity": {V: 41, Unit: "%"}}}, Interval: 10 * time.Second},
		{Health: sensors.Health{Name: "freezer", Driver: "ds18b20", OK: true, LastRead: ago(2 * time.Second), Published: 8640,
			LastValues: map[string]sensors.Value{"temperature": {V: -18.25, Unit: "C"}}}, Interval: 10 * time.Second},
		{Health: sensors.Health{Name: "fridge", Driver: "ds18b20", OK: true, LastRead: ago(7 * time.Second), Published: 8640,
			LastValues: map[string]sensors.Value{"temperature": {V: 3.9, Unit: "C"}}}, Interval: 10 * time.Second},
		{Health: sensors.Health{Name: "door", Driver: "gpio", OK: true, LastRead: ago(time.Second), Published: 86400,
			LastValues: map[string]sensors.Value{"open": {V: 0}}}, Interval: time.Second},
		{Health: sensors.Health{Name: "gateway", Driver: "system", OK: true, LastRead: ago(12 * time.Second), Published: 1440,
			LastValues: map[string]sensors.Value{"cpu_temp": {V: 48.3, Unit: "C"}}}, Interval: time.Minute},
	}
	return Status{
		Schema: StatusSchema, Running: true, Version: "1.4.2", Commit: "3f9c2a7d1e",
		Time: goldenNow, Started: ago(3*24*time.Hour + 4*time.Hour + 12*time.Minute),
		Site: "store-0042", Domain: "store-0042",
		Uplink: &UplinkStatus{
			Link: &uplink.LinkStatus{State: uplink.StateConnected, Hub: "tls://hub-1.example.com:7422", Since: ago(26 * time.Hour),
				LastConnected: ago(26 * time.Hour), RTT: 38 * time.Millisecond, Compression: server.CompressionS2Fast, Reconnects: 2, SentBytes: 43_212_345},
			Forwarder: &uplink.ForwarderStatus{Forwarded: map[string]uint64{"ALERTS": 3, "TELEMETRY": 114020}, RatePerSec: 1.3, LastAck: ago(time.Second)},
		},
		Backlog: []LaneStatus{{Stream: "ALERTS"}, {Stream: "TELEMETRY", Messages: 2, Bytes: 412, Oldest: ago(time.Second)}},
		Sensors: sens,
		Store:   StoreStatus{Dir: "/var/lib/edge-agent", Bytes: 84 << 20, MaxBytes: 1 << 30, DiskFree: 11 << 30, DiskTotal: 14 << 30, Sync: "always"},
		Clock:   ClockStatus{State: ClockSynced},
		Clients: 3,
	}
}

// siteUplink is the fixtures' uplink config: user/password over TLS.
func siteUplink() *uplink.Config {
	c := uplink.DefaultConfig()
	c.HubURLs, c.User, c.Password = []string{"tls://hub-1.example.com:7422"}, "store-0042", "s3cret"
	c.TLS.CAFile = "/etc/edge-agent/hub-ca.pem"
	return &c
}

func wanDown(class uplink.ReasonClass, reason string) Status {
	s := healthyStatus()
	// Down 2h 5m after a connection that lasted three days; the times come
	// from the model, as the link sets them, not from waiting.
	down := ago(2*time.Hour + 5*time.Minute)
	s.Uplink.Link = &uplink.LinkStatus{State: uplink.StateDisconnected, Hub: "tls://hub-1.example.com:7422", ReasonClass: class, Reason: reason,
		Since: down, DownSince: down, LastUp: down, LastConnected: ago(3*24*time.Hour + 2*time.Hour), Attempts: 131,
		NextAttempt: goldenNow.Add(41*time.Second + 300*time.Millisecond), Reconnects: 41, Fix: uplink.FixFor(siteUplink(), class, reason)}
	s.Uplink.Forwarder.RatePerSec, s.Uplink.Forwarder.LastAck = 0, ago(2*time.Hour+5*time.Minute)
	s.Backlog = []LaneStatus{{Stream: "ALERTS", Messages: 1, Bytes: 230, Oldest: ago(40 * time.Minute)},
		{Stream: "TELEMETRY", Messages: 9510, Bytes: 1961 << 10, Oldest: ago(2*time.Hour + 5*time.Minute)}}
	return s
}

// statusFixtures are the situations a technician meets; each has a golden.
func statusFixtures() map[string]Status {
	m := map[string]Status{
		"healthy":  healthyStatus(),
		"wan-dns":  wanDown(uplink.ReasonDNS, "DNS: hub-1.example.com not found"),
		"wan-tcp":  wanDown(uplink.ReasonTCP, "TCP: connection refused by 203.0.113.7:7422"),
		"wan-tls":  wanDown(uplink.ReasonTLS, "TLS: certificate expired 3 days ago"),
		"wan-auth": wanDown(uplink.ReasonAuth, "auth: authorization violation"),
		// Finding 1 and 3 of issue 18: the reasons as the link words them
		// for these faults (TestLinkReasons produces them from real hubs).
		"hub-refusing":    wanDown(uplink.ReasonTCP, "TCP: connection refused hub-1.example.com:7422"),
		"wan-unplugged":   wanDown(uplink.ReasonTCP, "TCP: no answer from hub-1.example.com:7422 within 5s (firewall, routing or hub down)"),
		"tls-client-cert": wanDown(uplink.ReasonTLS, "TLS: the hub requires a client certificate and uplink.tls.cert_file is not set (hub hub-1.example.com:7422: remote error: tls: certificate required)"),
		"wrong-password":  wanDown(uplink.ReasonAuth, "auth: the hub refused this site's user/password (authorization violation)"),
		"never-connected": wanDown(uplink.ReasonTCP, "TCP: connection refused hub-1.example.com:7422"),
		"standalone":      healthyStatus(),
		"sensor-fail":     healthyStatus(),
		"disk-full":       healthyStatus(),
		"evicted-wan":     wanDown(uplink.ReasonTCP, "TCP: i/o timeout dialing 203.0.113.7:7422"),
		"clock-unsync":    healthyStatus(),
		"clock-offset":    healthyStatus(),
		"clock-1970":      healthyStatus(),
		"clock-jump":      healthyStatus(),
		"duplicate":       healthyStatus(),
		"hub-busy":        healthyStatus(),
		"hub-lan-2.9":     healthyStatus(),
		"drain-ramp":      healthyStatus(),
		"lost-damage":     wanDown(uplink.ReasonTCP, "TCP: connection refused by 203.0.113.7:7422"),
	}
	d := m["duplicate"]
	d.Uplink = &UplinkStatus{Link: d.Uplink.Link, Forwarder: d.Uplink.Forwarder,
		DuplicateSite: describeTwin(uplink.Twin{Server: "store-0042-9f2c11ab", Instance: "Q7ZP"})}
	m["duplicate"] = d

	s := m["standalone"]
	s.Uplink = nil
	s.Backlog = []LaneStatus{{Stream: "ALERTS"}, {Stream: "TELEMETRY", Messages: 120, Bytes: 24 << 10, Oldest: ago(20 * time.Minute)}}
	m["standalone"] = s

	s = m["sensor-fail"]
	s.Sensors = append([]SensorStatus(nil), s.Sensors...)
	s.Sensors[1].OK, s.Sensors[1].LastError, s.Sensors[1].Errors = false, "ds18b20: read /sys/bus/w1/devices/28-0316a2794cff/w1_slave: no such device", 37
	s.Sensors[1].LastRead = ago(6*time.Minute + 10*time.Second)
	s.Sensors[4].LastRead = ago(5 * time.Minute) // ok but stale: interval 1m
	m["sensor-fail"] = s

	s = m["disk-full"]
	s.Store.DiskFree = 12 << 20
	m["disk-full"] = s

	s = m["evicted-wan"]
	s.Backlog[1].Evicted = 1200
	m["evicted-wan"] = s

	s = m["hub-busy"]
	fw := *s.Uplink.Forwarder
	fw.RatePerSec, fw.InFlight, fw.Window, fw.HubBusy = 2210.4, 48, 48, 12
	fw.ReasonClass, fw.LastError = uplink.ReasonHubBusy, "the hub stream is overloaded (too many requests (code 429, err_code 10167)): resending from the cursor with half the window"
	s.Uplink = &UplinkStatus{Link: s.Uplink.Link, Forwarder: &fw}
	s.Backlog = []LaneStatus{{Stream: "ALERTS"}, {Stream: "TELEMETRY", Messages: 81230, Bytes: 16 << 20, Oldest: ago(3 * time.Hour), Drain: 37 * time.Second}}
	m["hub-busy"] = s

	// An old hub in the back office: no leaf compression, no round trip
	// to speak of.
	s = m["hub-lan-2.9"]
	link := *s.Uplink.Link
	link.Compression, link.RTT = server.CompressionNotSupported, 300*time.Microsecond
	oldFw := *s.Uplink.Forwarder
	oldFw.Mode = uplink.ModePerMessage // no fast batches before nats-server 2.14
	s.Uplink = &UplinkStatus{Link: &link, Forwarder: &oldFw}
	m["hub-lan-2.9"] = s

	// Back from a hub outage, with a fleet tuned to reconnect.min 30s:
	// alerts have gone, telemetry waits its turn.
	s = m["drain-ramp"]
	rampLink, rampFw := *s.Uplink.Link, *s.Uplink.Forwarder
	rampLink.Since = ago(6 * time.Second)
	rampFw.Forwarded = map[string]uint64{"ALERTS": 3}
	rampFw.RatePerSec, rampFw.InFlight, rampFw.LastAck, rampFw.HeldUntil = 0.3, 0, ago(5*time.Second), goldenNow.Add(17*time.Second+400*time.Millisecond)
	s.Uplink = &UplinkStatus{Link: &rampLink, Forwarder: &rampFw}
	s.Backlog = []LaneStatus{{Stream: "ALERTS"}, {Stream: "TELEMETRY", Messages: 52110, Bytes: 10 << 20, Oldest: ago(47 * time.Minute)}}
	m["drain-ramp"] = s

	// Never up since the agent started 3d 4h ago: the outage counts from
	// the start, and the attempt in progress has no next time yet.
	s = m["never-connected"]
	nc := *s.Uplink.Link
	nc.Since, nc.DownSince, nc.LastUp, nc.LastConnected, nc.NextAttempt, nc.State, nc.Reconnects = s.Started, s.Started, time.Time{}, time.Time{}, time.Time{}, uplink.StateConnecting, 0
	s.Uplink = &UplinkStatus{Link: &nc, Forwarder: s.Uplink.Forwarder}
	m["never-connected"] = s

	// A damaged block file found at start, the hub unreachable: 40
	// acknowledged readings never reached it, until the technician runs
	// `edge-agent buffer ack-loss`.
	s = m["lost-damage"]
	s.Backlog[1].Lost = 40
	s.Store.Losses = []buffer.Loss{{Stream: "TELEMETRY", From: 2511, To: 2550, Count: 40, Cause: "unreadable records in block file 1.blk", Time: ago(2 * time.Hour), Boot: 7}}
	m["lost-damage"] = s

	// No NTP (a container), but the clock agrees with the hub's: fine.
	s = m["clock-unsync"]
	s.Clock.State = ClockUnsynced
	agree := 0.2
	s.Clock.HubOffset, s.Clock.HubMeasured = &agree, ago(12*time.Second)
	m["clock-unsync"] = s

	s = m["clock-offset"]
	s.Clock.State = ClockUnsynced
	ahead := 312.4
	s.Clock.HubOffset, s.Clock.HubMeasured = &ahead, ago(12*time.Second)
	m["clock-offset"] = s

	// A Pi without RTC, booted without network: 1970.
	s = m["clock-1970"]
	s.Clock.State = ClockUnsynced
	s.Clock.Wall, s.Clock.Floor = time.Date(1970, 1, 1, 0, 3, 12, 0, time.UTC), time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	m["clock-1970"] = s

	s = m["clock-jump"]
	s.Clock.Jump = &buffer.ClockJump{Size: 720 * time.Hour, At: ago(20 * time.Minute)}
	s.Clock.TestClock = TestClockEnv + "=/tmp/chaos/clock (offset 720h0m0s)"
	s.Store.Age = &buffer.AgeStatus{MaxAge: 720 * time.Hour, AgentTime: 90 * time.Hour, Checkpoints: 125, Jump: s.Clock.Jump, Jumps: 1}
	m["clock-jump"] = s
	return m
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "status-"+name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./agent -run Golden -update` to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (rerun with -update if intended)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestStatusGolden(t *testing.T) {
	wantCode := map[string]int{
		"healthy": ExitHealthy, "standalone": ExitHealthy,
		"wan-dns": ExitDegraded, "wan-tcp": ExitDegraded, "wan-tls": ExitDegraded, "wan-auth": ExitDegraded,
		"hub-refusing": ExitDegraded, "wan-unplugged": ExitDegraded, "tls-client-cert": ExitDegraded, "wrong-password": ExitDegraded, "never-connected": ExitDegraded,
		"sensor-fail": ExitDegraded, "evicted-wan": ExitDegraded, "clock-unsync": ExitHealthy, "clock-offset": ExitDegraded, "clock-1970": ExitDown, "clock-jump": ExitDegraded,
		"hub-busy":  ExitDegraded, // forwarding goes on, slower: the warning says why
		"disk-full": ExitDown, "duplicate": ExitDown, "lost-damage": ExitDown,
	}
	for name, s := range statusFixtures() {
		t.Run(name, func(t *testing.T) {
			code, _ := s.Health()
			if code != wantCode[name] {
				t.Errorf("Health() = %d, want %d", code, wantCode[name])
			}
			var b bytes.Buffer
			RenderStatus(&b, s, goldenNow, false)
			out := b.Bytes()
			if n := bytes.Count(out, []byte("\n")); n > 24 {
				t.Errorf("%d lines: does not fit one screen (24)", n)
			}
			if bytes.ContainsAny(out, "\x1b✓✗") {
				t.Error("colour or symbols written to a non-terminal")
			}
			checkGolden(t, name, out)
		})
	}
	t.Run("tty", func(t *testing.T) {
		var b bytes.Buffer
		RenderStatus(&b, statusFixtures()["sensor-fail"], goldenNow, true)
		if !strings.Contains(b.String(), ansiYellow) || !strings.Contains(b.String(), "✓") {
			t.Error("no colour or symbols on a terminal")
		}
		checkGolden(t, "tty", b.Bytes())
	})
}

func TestStatusWarningsWorstFirst(t *testing.T) {
	s := statusFixtures()["sensor-fail"]
	s.Store.DiskFree = 0
	s.Uplink = wanDown(uplink.ReasonAuth, "auth: authorization violation").Uplink
	code, w := s.Health()
	if code != ExitDown {
		t.Fatalf("code %d, want %d", code, ExitDown)
	}
	if w[0].Severity != SevCritical || w[0].Component != "store" {
		t.Errorf("first warning %+v, want the critical store warning", w[0])
	}
	for i := 1; i < len(w); i++ {
		if w[i].Severity == SevCritical {
			t.Errorf("critical warning %d after a lesser one: %+v", i, w)
		}
	}
	if len(w) != 4 { // disk, uplink, failing sensor, stale sensor
		t.Errorf("%d warnings, want 4: %+v", len(w), w)
	}
}

func TestNotRunningGolden(t *testing.T) {
	cause := &os.PathError{Op: "dial", Path: "/run/edge-agent/agent.sock", Err: syscall.ECONNREFUSED}
	snap := wanDown(uplink.ReasonTLS, "TLS: certificate expired 3 days ago")
	var b bytes.Buffer
	RenderNotRunning(&b, "/run/edge-agent/agent.sock", cause, &snap, nil, goldenNow.Add(3*time.Hour), false)
	checkGolden(t, "not-running", b.Bytes())
	if n := bytes.Count(b.Bytes(), []byte("\n")); n > 30 {
		t.Errorf("%d lines", n)
	}

	b.Reset()
	RenderNotRunning(&b, "/run/edge-agent/agent.sock", cause, nil, errors.New("state db /var/lib/edge-agent/state.db: no such file or directory (has the agent ever run with this state_dir?)"), goldenNow, false)
	checkGolden(t, "not-running-no-state", b.Bytes())
}

func TestStatusJSONRoundTrip(t *testing.T) {
	for name, s := range statusFixtures() {
		code, w := s.Health()
		s.State, s.Warnings = StateName(code), w
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back Status
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		// Times lose their monotonic reading and location in JSON.
		b2, _ := json.Marshal(back)
		if !bytes.Equal(b, b2) {
			t.Errorf("%s: JSON does not round-trip:\n%s\n%s", name, b, b2)
		}
		if !reflect.DeepEqual(back.Warnings, w) {
			t.Errorf("%s: warnings changed", name)
		}
		if c, _ := back.Health(); c != code {
			t.Errorf("%s: health %d after round trip, want %d", name, c, code)
		}
	}
}
