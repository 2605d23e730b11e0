package wire

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
)

// TestHeartbeatJSON pins the heartbeat's bytes on the wire: the fleet view,
// older agents and operators' dashboards parse these keys, so a renamed
// field or tag, or a typed field that encodes differently, must fail here.
// The expected strings are what the type encoded to before it moved here
// from package uplink.
func TestHeartbeatJSON(t *testing.T) {
	full := Heartbeat{Schema: HeartbeatSchema, Site: "s1", Server: "s1-0123abcd", Instance: "i1", Version: "1.2.3",
		Uptime: 3600, Interval: 30, State: Degraded, Link: "connected", Reason: "tls", Reconnects: 4,
		UpSince: 1700000000, LastOutage: 120, Backlog: map[string]uint64{"ALERTS": 2, "TELEMETRY": 500},
		Evicted: 5, Lost: 6, SensorsOK: 3, Failing: []string{"door"}, DiskUsed: 1 << 20, DiskFree: 1 << 30,
		Clock: "synchronised", Dup: true, Twin: "s1-99aa00ff/i2", Warnings: []string{"clock", "sensor:door"},
		Sent: 1700000123456, Config: &fleetconfig.Report{DesiredRev: 9, AppliedRev: 8, State: "applied", AgentVersion: "1.2.3", At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	for _, c := range []struct {
		name string
		hb   Heartbeat
		want string
	}{
		{"every field", full, `{"v":1,"site":"s1","srv":"s1-0123abcd","inst":"i1","ver":"1.2.3","up":3600,"hb":30,"st":"degraded","link":"connected","rc":"tls","rcn":4,"lup":1700000000,"lout":120,"bl":{"ALERTS":2,"TELEMETRY":500},"ev":5,"ls":6,"s_ok":3,"s_fail":["door"],"disk":1048576,"free":1073741824,"clk":"synchronised","dup":true,"twin":"s1-99aa00ff/i2","w":["clock","sensor:door"],"t":1700000123456,"cfg":{"desired_rev":9,"applied_rev":8,"state":"applied","agent_version":"1.2.3","at":"2026-01-02T03:04:05Z"}}`},
		{"zero", Heartbeat{}, `{"v":0,"site":"","srv":"","inst":"","ver":"","up":0,"hb":0,"st":"","link":"","s_ok":0,"disk":0,"free":0,"clk":""}`},
	} {
		got, err := json.Marshal(c.hb)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%s: heartbeat JSON changed:\n got %s\nwant %s", c.name, got, c.want)
		}
		var back Heartbeat
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if again, _ := json.Marshal(back); string(again) != c.want {
			t.Errorf("%s: decoding and encoding again gives\n %s", c.name, again)
		}
	}
}

// TestSubjects pins the subjects sites publish on and the hub's tables
// capture.
func TestSubjects(t *testing.T) {
	if got := StatusSubject("edge", "s1"); got != "edge.s1.status" {
		t.Errorf("StatusSubject = %q", got)
	}
	if got := ClockSubject("edge", "s1"); got != "edge.s1.clock" {
		t.Errorf("ClockSubject = %q", got)
	}
}
