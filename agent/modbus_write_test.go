package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/sensors"
)

func writeReq(t *testing.T, nc *nats.Conn, subject, body string) WriteReply {
	t.Helper()
	m, err := nc.Request(subject, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	var r WriteReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("reply %s: %v", m.Data, err)
	}
	return r
}

// modbusSimAndHub serves a simulated meter on loopback for the test and
// runs an in-process hub.
func modbusSimAndHub(t *testing.T) (sim *sensors.ModbusSim, addr string, hub *server.Server) {
	t.Helper()
	sim = sensors.NewModbusSim()
	addr, err := sim.ServeTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim, addr, testkit.RunServer(t, testkit.HubOpts(t))
}

// A Modbus meter's readings flow, a local app and the hub set writable
// values through cmd.modbus.<sensor>.<metric>, anything else is refused
// with its name, and every write is counted.
func TestModbusWritesThroughNATS(t *testing.T) {
	sim, addr, hub := modbusSimAndHub(t)
	a := startAgent(t, fmt.Sprintf(`uplink:
  hub_urls: [%s]
sensors:
  - name: meter
    driver: modbus
    interval: 100ms
    url: tcp://%s
    values:
      - {metric: voltage_l1, table: input, address: 30001, type: float32, order: CDAB, unit: V}
      - {metric: setpoint, table: holding, address: 11, type: int16, scale: 0.1, unit: C, writable: true}
      - {metric: pump, table: coil, address: 0, writable: true}
`, leafURL(t, hub, "nats"), addr))
	lc := connect(t, a.ClientURL())
	testkit.WaitFor(t, 10*time.Second, func() error {
		h := a.SensorHealth()
		if !(len(h) == 1 && h[0].LastValues["voltage_l1"].V == 230.1) {
			return errors.New("still waiting for a meter reading")
		}
		return nil
	})

	if r := writeReq(t, lc, "cmd.modbus.meter.setpoint", `{"value": 21.5}`); !r.OK || r.Value != 21.5 {
		t.Fatalf("local write: %+v", r)
	}
	if v, _ := sim.Reg("holding", sensors.SimSetpoint); v != 215 {
		t.Errorf("setpoint register %d, want 215", v)
	}
	for subject, want := range map[string]string{
		"cmd.modbus.meter.voltage_l1": "meter.voltage_l1 (input registers 0-1 (30001-30002)) is not writable",
		"cmd.modbus.meter.flow":       `no metric "flow"`,
		"cmd.modbus.boiler.setpoint":  `no sensor "boiler"`,
	} {
		if r := writeReq(t, lc, subject, "1"); r.OK || !strings.Contains(r.Error, want) {
			t.Errorf("%s: %+v, want %q", subject, r, want)
		}
	}
	if r := writeReq(t, lc, "cmd.modbus.meter.pump", `"on"`); r.OK || !strings.Contains(r.Error, `want {"value": 21.5}`) {
		t.Errorf("bad payload: %+v", r)
	}

	// The hub reaches the same write through edge.<site>.cmd.>.
	hc := connect(t, hub.ClientURL())
	interest(t, hub, "edge.s1.cmd.modbus.meter.pump")
	if r := writeReq(t, hc, "edge.s1.cmd.modbus.meter.pump", "false"); !r.OK {
		t.Fatalf("hub write: %+v", r)
	}
	if on, _ := sim.Bit("coil", sensors.SimPump); on {
		t.Error("pump still on after the hub's write")
	}
	h := a.SensorHealth()[0]
	// The unknown sensor and the bad payload have no sensor to count on:
	// they are logged.
	if h.Writes != 4 || h.WriteErrors != 2 {
		t.Errorf("writes %d, errors %d: want 4 and 2", h.Writes, h.WriteErrors)
	}
	var out strings.Builder
	RenderStatus(&out, a.Status(context.Background()), time.Now(), false)
	if !strings.Contains(out.String(), "writes=4 (2 refused or failed)") {
		t.Errorf("status text lacks the writes:\n%s", out.String())
	}
	logs := a.logs.String()
	for _, want := range []string{"msg=write component=sensors sensor=meter metric=pump value=0", `msg="write refused" component=sensors sensor=boiler`, `msg="write refused" subject=cmd.modbus.meter.pump`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(logs)
	}
}

// uplink.deny_imports turns the hub's reach off: its write request never
// arrives, while local apps still write.
func TestModbusWritesHubDenied(t *testing.T) {
	sim, addr, hub := modbusSimAndHub(t)
	a := startAgent(t, fmt.Sprintf(`uplink:
  hub_urls: [%s]
  deny_imports: ["edge.s1.cmd.modbus.>"]
sensors:
  - {name: meter, driver: modbus, interval: 1s, url: "tcp://%s", values: [{metric: pump, table: coil, address: 0, writable: true}]}
`, leafURL(t, hub, "nats"), addr))
	hc := connect(t, hub.ClientURL())
	interest(t, hub, "edge.s1.cmd.modbus.meter.pump")
	if m, err := hc.Request("edge.s1.cmd.modbus.meter.pump", []byte("0"), 2*time.Second); err == nil {
		t.Fatalf("hub write crossed deny_imports: %s", m.Data)
	}
	if on, _ := sim.Bit("coil", sensors.SimPump); !on {
		t.Fatal("the hub's denied write switched the pump off")
	}
	if r := writeReq(t, connect(t, a.ClientURL()), "cmd.modbus.meter.pump", "0"); !r.OK {
		t.Fatalf("local write with the hub denied: %+v", r)
	}
}

// Bus events show on the sensor's status line, in name order.
func TestStatusShowsBusEvents(t *testing.T) {
	var out strings.Builder
	RenderStatus(&out, Status{Sensors: []SensorStatus{{Health: sensors.Health{
		Name: "meter", Driver: "modbus", LastError: "unit 9: read coils 0: no answer", Errors: 2,
		Events: map[string]uint64{"timeouts": 4, "retries": 2},
	}}}}, time.Now(), false)
	if !strings.Contains(out.String(), "no answer (2 errors)  retries=2  timeouts=4") {
		t.Errorf("status text:\n%s", out.String())
	}
}
