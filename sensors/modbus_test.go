package sensors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// meterYAML maps the simulated meter as a user would from its datasheet:
// float32 input registers in CDAB, holding registers of every type, bits
// of a status register, a coil and a discrete input.
const meterYAML = `
- name: meter1
  driver: modbus
  interval: 1s
  url: tcp://%s
  unit_id: 1
  request_timeout: 200ms
  values:
    - {metric: voltage_l1, table: input, address: 0, type: float32, order: CDAB, unit: V}
    - {metric: voltage_l2, table: input, address: 30003, type: float32, order: CDAB, unit: V}
    - {metric: voltage_l3, table: input, address: 4, type: float32, order: cdab, unit: V}
    - {metric: current_l1, table: input, address: 6, type: float32, order: CDAB, unit: A}
    - {metric: current_l2, table: input, address: 8, type: float32, order: CDAB, unit: A}
    - {metric: current_l3, table: input, address: 10, type: float32, order: CDAB, unit: A}
    - {metric: power_total, table: input, address: 52, type: float32, order: CDAB, unit: W}
    - {metric: frequency, table: input, address: 70, type: float32, order: CDAB, unit: Hz}
    - {metric: energy_total, table: input, address: 342, type: float32, order: CDAB, unit: kWh}
    - {metric: flow, table: holding, address: 40011, type: int16, scale: 0.1, unit: m3/h}
    - {metric: setpoint, table: holding, address: 11, type: int16, scale: 0.1, unit: C, writable: true}
    - {metric: running, table: holding, address: 12, type: bool, bit: 0}
    - {metric: alarm, table: holding, address: 12, type: bool, bit: 3}
    - {metric: counter, table: holding, address: 20, type: uint32}
    - {metric: total64, table: holding, address: 24, type: int64}
    - {metric: precise, table: holding, address: 28, type: float64, order: ABCDEFGH}
    - {metric: flow_raw, table: holding, address: 10, type: uint16, scale: 2, offset: -100}
    - {metric: pump, table: coil, address: 0, writable: true}
    - {metric: door, table: discrete, address: 0}
`

func startSim(t *testing.T, units ...uint8) (*ModbusSim, string) {
	t.Helper()
	sim := NewModbusSim(units...)
	addr, err := sim.ServeTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim, addr
}

func modbusCfgs(t *testing.T, text string) []Config {
	t.Helper()
	var cfgs []Config
	if err := yaml.Unmarshal([]byte(text), &cfgs); err != nil {
		t.Fatal(err)
	}
	if err := ValidateAll(cfgs); err != nil {
		t.Fatal(err)
	}
	return cfgs
}

func openModbus(t *testing.T, c Config) *modbusDriver {
	t.Helper()
	d, err := newModbusDriver(c.Options.(*ModbusOptions))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// The meter's datasheet values come out of every type, order, scale and
// bit, in as few requests as the map allows.
func TestModbusMeterTCP(t *testing.T) {
	sim, addr := startSim(t)
	c := modbusCfgs(t, fmt.Sprintf(meterYAML, addr))[0]
	d := openModbus(t, c)
	got, err := d.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"voltage_l1": 230.1, "voltage_l2": 229.8, "voltage_l3": 231, "current_l1": 5.2, "current_l2": 4.9, "current_l3": 5.1,
		"power_total": 3500.6, "frequency": 50, "energy_total": 12400.25, "flow": 12.3, "setpoint": -4.5,
		"running": 1, "alarm": 1, "counter": 123456, "total64": 9e9, "precise": 0.125, "flow_raw": 146, "pump": 1, "door": 0,
	}
	for k, w := range want {
		if got[k].V != w {
			t.Errorf("%s = %v, want %v", k, got[k].V, w)
		}
	}
	if len(got) != len(want) || got["voltage_l1"].Unit != "V" || got["flow"].Unit != "m3/h" {
		t.Errorf("values %v", got)
	}
	// input 0-11, 52-53, 70-71, 342-343; holding 10-12, 20-21, 24-31;
	// one coil, one discrete input.
	if n := sim.Requests(); n != 9 {
		t.Errorf("one read took %d requests, want 9 (coalesced)", n)
	}
	if len(d.plan) != 9 {
		t.Errorf("plan %+v", d.plan)
	}
}

// A gap bridges unmapped registers: fewer requests, and a device that
// refuses holes answers exception 2, named with the table and registers.
func TestModbusGapAndException(t *testing.T) {
	sim, addr := startSim(t)
	text := strings.Replace(fmt.Sprintf(meterYAML, addr), "  values:", "  max_gap: 8\n  values:", 1)
	d := openModbus(t, modbusCfgs(t, text)[0])
	_, err := d.Read(context.Background())
	if err == nil || !strings.Contains(err.Error(), "holding registers 10-31 (40011-40032)") || !strings.Contains(err.Error(), "illegal data address") {
		t.Fatalf("read across holes: %v", err)
	}
	if d.events["exceptions"] != 1 || d.events["retries"] != 0 {
		t.Errorf("events %v: an exception is counted and not retried", d.events)
	}
	// Device busy on the energy register: the error names it.
	sim.SetFault(func(_ uint8, fc byte, a, _ uint16) (byte, bool) {
		if fc == 4 && a == 342 {
			return 6, false
		}
		return 0, false
	})
	d2 := openModbus(t, modbusCfgs(t, fmt.Sprintf(meterYAML, addr))[0])
	_, err = d2.Read(context.Background())
	if err == nil || !strings.Contains(err.Error(), "input registers 342-343 (30343-30344)") || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("busy: %v", err)
	}
}

// A device that does not answer times out per request, is retried a
// bounded number of times, and degrades only its own sensor: the meter on
// the same gateway keeps publishing. The gateway is shared, so the good
// sensor's timeout covers a wait for the dead one's attempts.
func TestModbusTimeoutDegradesOnlyThatDevice(t *testing.T) {
	_, addr := startSim(t, 1)
	text := fmt.Sprintf(`
- {name: good, driver: modbus, interval: 300ms, url: "tcp://%[1]s", unit_id: 1, request_timeout: 30ms, values: [{metric: v, table: input, address: 0, type: float32, order: CDAB}]}
- {name: dead, driver: modbus, interval: 200ms, url: "tcp://%[1]s", unit_id: 7, request_timeout: 30ms, retries: 2, values: [{metric: v, table: input, address: 0, type: float32}]}
`, addr)
	pub := &memPub{}
	s, err := NewSampler(modbusCfgs(t, text), Options{Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	runSampler(t, s)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if !(pub.count("telemetry.good") >= 3 && health(s, "dead").Errors >= 2) {
			return errors.New("still waiting for the good meter publishing while the dead one times out")
		}
		return nil
	})
	h := health(s, "dead")
	if h.OK || !strings.Contains(h.LastError, "unit 7") || !strings.Contains(h.LastError, "no answer within 30ms (3 attempts)") {
		t.Errorf("dead: %+v", h)
	}
	if h.Events["timeouts"] < 3 || h.Events["retries"] < 2 || h.Events["exceptions"] != 0 {
		t.Errorf("dead events %v: want each attempt counted", h.Events)
	}
	if g := health(s, "good"); !g.OK || g.LastValues["v"].V != 230.1 {
		t.Errorf("good: %+v", g)
	}
}

// Writes reach only values declared writable; the device's own refusal
// and out-of-range values are errors that name the value.
func TestModbusWrites(t *testing.T) {
	sim, addr := startSim(t)
	text := strings.Replace(fmt.Sprintf(meterYAML, addr), "{metric: flow, table: holding, address: 40011, type: int16, scale: 0.1, unit: m3/h}",
		"{metric: flow, table: holding, address: 40011, type: int16, scale: 0.1, unit: m3/h, writable: true}", 1)
	s, err := NewSampler(modbusCfgs(t, text), Options{Publisher: &memPub{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Write(ctx, "meter1", "setpoint", 21.5); err != nil {
		t.Fatal(err)
	}
	if r, _ := sim.Reg(tableHolding, SimSetpoint); r != 215 {
		t.Errorf("setpoint register %d, want 215", r)
	}
	if err := s.Write(ctx, "meter1", "pump", 0); err != nil {
		t.Fatal(err)
	}
	if b, _ := sim.Bit(tableCoil, SimPump); b {
		t.Error("pump coil still on")
	}
	for _, c := range []struct {
		metric string
		v      float64
		want   string
	}{
		{"voltage_l1", 1, "meter1.voltage_l1 (input registers 0-1 (30001-30002)) is not writable"},
		{"alarm", 1, "meter1.alarm (holding registers 12 (40013)) is not writable"},
		{"nope", 1, `no metric "nope"`},
		{"setpoint", 5000, "outside int16's range"},
		{"pump", 2, "write 0 or 1"},
		{"flow", 1, "write holding registers 10 (40011): illegal data address"},
	} {
		if err := s.Write(ctx, "meter1", c.metric, c.v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("write %s=%g: %v, want %q", c.metric, c.v, err, c.want)
		}
	}
	if err := s.Write(ctx, "ghost", "x", 1); err == nil || !strings.Contains(err.Error(), `no sensor "ghost"`) {
		t.Errorf("unknown sensor: %v", err)
	}
	if h := health(s, "meter1"); h.Writes != 8 || h.WriteErrors != 6 {
		t.Errorf("writes %d errors %d, want 8 and 6", h.Writes, h.WriteErrors)
	}
	if r, _ := sim.Reg(tableHolding, SimFlow); r != 123 {
		t.Errorf("refused write changed flow: %d", r)
	}
}

// Config mistakes name the key path and say what to write instead.
func TestModbusConfigErrors(t *testing.T) {
	base := "- {name: m, driver: modbus, url: %q, values: [%s]}\n"
	ok := "{metric: v, table: input, address: 0}"
	for _, c := range []struct{ url, vals, want string }{
		{"tcp://h:502", "{metric: v, table: input, address: 40001}", "sensors[0].values[0].address (line 1): 40001 is in the holding registers numbering (4xxxx) but table is input: either table: holding, or the input registers number (30001 = address 0)"},
		{"tcp://h:502", "{metric: v, table: holding, address: 30010}", "30010 is in the input registers numbering (3xxxx) but table is holding"},
		{"tcp://h:502", "{metric: v, table: holding, address: 40000}", "holding registers numbers start at 40001"},
		{"tcp://h:502", "{metric: v, table: holding, address: 440001}", ""},
		{"tcp://h:502", "{metric: v, table: holding, address: 465536, type: float32}", "runs past the last address"},
		{"tcp://h:502", ok + ", {metric: w, table: input, adress: 3}", "sensors[0].values[1].adress (line 1): unknown key; known keys: address, bit,"},
		{"tcp://h:502", "{metric: v, table: input, address: 0, type: float}", "values[0].type"},
		{"tcp://h:502", "{metric: v, table: input, address: 0, type: float32, order: BA}", `values[0].order (line 1): "BA" does not fit float32`},
		{"tcp://h:502", "{metric: v, table: input, address: 0, type: bool}", "needs bit: 0-15"},
		{"tcp://h:502", "{metric: v, table: coil, address: 0, type: int16}", "coils hold single bits"},
		{"tcp://h:502", "{metric: v, table: input, address: 0, writable: true}", "input registers are read-only"},
		{"tcp://h:502", "{metric: v, table: holding, address: 0, type: bool, bit: 1, writable: true}", "read-modify-write"},
		{"tcp://h:502", ok + ", {metric: v, table: coil, address: 1}", `values[1].metric (line 1): "v" is already used by values[0]`},
		{"tcp://h:502", "{metric: v.x, table: coil, address: 1}", "NATS token"},
		{"tcp://h:502", "{metric: v, table: holdings, address: 1}", "want holding, input, coil or discrete"},
		{"rtu:///dev/ttyUSB0?baud=9601", ok, "baud=9601"},
		{"rtu:///dev/ttyUSB0?parity=X", ok, "parity=X: want N, E or O"},
		{"rtu://dev/ttyUSB0", ok, "three slashes"},
		{"rtu-over-tcp://gw", ok, "give it (rtu-over-tcp://host:4001)"},
		{"udp://h:502", ok, `scheme "udp"`},
		{"tcp://h:502/x", ok, "nothing after the port"},
	} {
		var cfgs []Config
		if err := yaml.Unmarshal(fmt.Appendf(nil, base, c.url, c.vals), &cfgs); err != nil {
			t.Fatal(err)
		}
		err := ValidateAll(cfgs)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s: %v", c.url, c.vals, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s:\n got %v\nwant %q", c.url, c.vals, err, c.want)
		}
	}
	var cfgs []Config
	_ = yaml.Unmarshal([]byte(`
- {name: a, driver: modbus, url: 'rtu:///dev/ttyUSB0?baud=9600', values: [{metric: v, table: input, address: 0}]}
- {name: b, driver: modbus, url: 'rtu:///dev/ttyUSB0?baud=19200', unit_id: 2, values: [{metric: v, table: input, address: 0}]}
`), &cfgs)
	if err := ValidateAll(cfgs); err == nil || !strings.Contains(err.Error(), "sensors[1].url (line 3): /dev/ttyUSB0 is also used by sensors[0] (a) with other settings (rtu 9600 baud, 8N1, request_timeout 1s)") {
		t.Errorf("one bus, two baud rates: %v", err)
	}
	cfgs = nil
	_ = yaml.Unmarshal([]byte("- {name: m, driver: modbus, url: 'rtu:///dev/ttyUSB0', unit_id: 0, values: [{metric: v, table: input, address: 0}]}"), &cfgs)
	if err := ValidateAll(cfgs); err == nil || !strings.Contains(err.Error(), "unit_id: 0: want 1-247 on rtu") {
		t.Errorf("unit 0 on rtu: %v", err)
	}
}

// Requests never exceed the protocol's limits, however the map is laid
// out, and a bounded gap is honoured.
func TestModbusPlanLimits(t *testing.T) {
	var vals []ModbusValue
	for a := range 300 {
		vals = append(vals, ModbusValue{Metric: fmt.Sprint("r", a), Table: tableHolding, Type: "uint16", addr: uint16(a)})
	}
	for a := range 4100 {
		vals = append(vals, ModbusValue{Metric: fmt.Sprint("c", a), Table: tableCoil, Type: "bool", addr: uint16(a)})
	}
	vals = append(vals, ModbusValue{Metric: "far", Table: tableHolding, Type: "float64", addr: 310})
	plan := planRequests(vals, maxReadRegisters, 5)
	var got []string
	for _, r := range plan {
		got = append(got, fmt.Sprintf("%s %d+%d", r.table, r.start, r.count))
	}
	want := "coil 0+2000 coil 2000+2000 coil 4000+100 holding 0+125 holding 125+125 holding 250+50 holding 310+4"
	if strings.Join(got, " ") != want {
		t.Errorf("plan %v\nwant %s", got, want)
	}
	if plan := planRequests(vals[:300], 40, 0); len(plan) != 8 || plan[0].count != 40 {
		t.Errorf("max_registers 40: %d requests", len(plan))
	}
}

// The worked example in docs/MODBUS.md is a valid config, and its request
// count is what the text says.
func TestModbusDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/MODBUS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(doc), "```yaml\n")
	block, _, _ := strings.Cut(rest, "```")
	var file struct {
		Sensors []Config `yaml:"sensors"`
	}
	if err := yaml.Unmarshal([]byte(block), &file); err != nil {
		t.Fatal(err)
	}
	if err := ValidateAll(file.Sensors); err != nil {
		t.Fatal(err)
	}
	o := file.Sensors[0].Options.(*ModbusOptions)
	var got []string
	for _, r := range planRequests(o.Values, o.MaxRegisters, o.MaxGap) {
		got = append(got, modbusSpan(r.table, r.start, r.count))
	}
	if want := "input registers 0-7 (30001-30008),input registers 52-53 (30053-30054),input registers 70-71 (30071-30072),input registers 342-343 (30343-30344)"; strings.Join(got, ",") != want {
		t.Errorf("requests %v", got)
	}
}

// A gateway that drops the connection (restart, idle timeout) costs one
// retry, not a failed read: the broken connection is closed and redialled.
func TestModbusReconnect(t *testing.T) {
	sim, addr := startSim(t)
	d := openModbus(t, modbusCfgs(t, fmt.Sprintf(`- {name: m, driver: modbus, url: "tcp://%s", values: [{metric: v, table: input, address: 0, type: float32, order: CDAB}]}`, addr))[0])
	if _, err := d.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = sim.Close()
	if _, err := sim.ServeTCP(addr); err != nil {
		t.Fatal(err)
	}
	v, err := d.Read(context.Background())
	if err != nil || v["v"].V != 230.1 {
		t.Fatalf("read after the gateway restarted: %v %v", v, err)
	}
	if ev := d.TakeEvents(); ev["io"] != 1 || ev["retries"] != 1 {
		t.Errorf("events %v: want one io error and one retry", ev)
	}
}
