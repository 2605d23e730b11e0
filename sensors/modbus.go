package sensors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edge-agent/edge-agent/internal/confkit"
	"github.com/simonvetter/modbus"
	"go.yaml.in/yaml/v3"
)

// ModbusOptions configures one Modbus device (one unit id) on TCP, on an
// RS-485 port (RTU) or behind a serial server (RTU over TCP).
type ModbusOptions struct {
	URL    string `yaml:"url"`
	UnitID int    `yaml:"unit_id"`
	// RequestTimeout bounds one request; Retries more attempts follow a
	// timeout or a corrupted frame, never a Modbus exception.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	Retries        int           `yaml:"retries"`
	// MaxRegisters caps one read (the protocol allows 125; some devices
	// fewer). MaxGap is how many unmapped registers a read may span to join
	// two values (0: only adjacent ones are joined).
	MaxRegisters int           `yaml:"max_registers"`
	MaxGap       int           `yaml:"max_gap"`
	Values       []ModbusValue `yaml:"values"`

	t modbusTransport
}

// ModbusValue is one metric: where it lives on the device and how to
// decode it.
type ModbusValue struct {
	Metric  string `yaml:"metric"`
	Table   string `yaml:"table"`
	Address int    `yaml:"address"`
	Type    string `yaml:"type,omitempty"`
	Order   string `yaml:"order,omitempty"`
	// Scale and Offset give the value in its unit: raw*scale + offset.
	Scale  float64 `yaml:"scale,omitempty"`
	Offset float64 `yaml:"offset,omitempty"`
	Unit   string  `yaml:"unit,omitempty"`
	// Bit picks one bit (0 = least significant) of a register, type bool.
	Bit      *int `yaml:"bit,omitempty"`
	Writable bool `yaml:"writable,omitempty"`

	addr    uint16
	line    int
	unknown *yaml.Node
}

var modbusValueKeys = fieldKeys(reflect.TypeOf(ModbusValue{}))

// UnmarshalYAML remembers the entry's line and any unknown key, so that
// Validate can name values[i].key: a typo such as "adress" must not read
// register 0.
func (v *ModbusValue) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errors.New("a value is a mapping such as {metric: voltage_l1, table: input, address: 0, type: float32}")
	}
	type plain ModbusValue
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*v = ModbusValue(p)
	v.line = n.Line
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !modbusValueKeys[n.Content[i].Value] {
			v.unknown = n.Content[i]
			break
		}
	}
	return nil
}

func (v *ModbusValue) words() int {
	if isBitTable(v.Table) {
		return 1
	}
	return modbusTypeWords[v.Type]
}

func (v *ModbusValue) bit() int {
	if v.Bit == nil {
		return 0
	}
	return *v.Bit
}

// modbusTransport is a parsed url: how to reach the bus and with which
// settings.
type modbusTransport struct {
	url       string
	scheme    string // tcp, rtu, rtu-over-tcp
	key       string // the bus identity: host:port or the device path
	path      string
	clientURL string
	baud      uint
	dataBits  uint
	parity    uint
	stopBits  uint
	timeout   time.Duration
}

func (t modbusTransport) port() string {
	_, p, _ := net.SplitHostPort(t.key)
	return p
}

// checkLine is what to check when a device does not answer cleanly.
func (t modbusTransport) checkLine() string {
	if t.scheme == "tcp" {
		return "that the device answers Modbus TCP on this port"
	}
	return "wiring (A/B swapped? termination?), baud, parity and stop bits against the device's settings"
}

var modbusParity = map[string]uint{"N": modbus.PARITY_NONE, "E": modbus.PARITY_EVEN, "O": modbus.PARITY_ODD}

func parityName(p uint) string {
	for k, v := range modbusParity {
		if v == p {
			return k
		}
	}
	return "?"
}

// modbusBauds are the rates the serial layer can set.
var modbusBauds = []uint{1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400}

func parseModbusURL(raw string, timeout time.Duration) (modbusTransport, error) {
	t := modbusTransport{url: raw, timeout: timeout}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return t, fmt.Errorf("%q: want tcp://host:502, rtu:///dev/ttyUSB0?baud=9600&parity=N&stop=1 or rtu-over-tcp://host:port", raw)
	}
	t.scheme = u.Scheme
	switch u.Scheme {
	case "tcp", "rtu-over-tcp":
		if u.Host == "" || u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return t, fmt.Errorf("%q: want %s://host:port (nothing after the port)", raw, u.Scheme)
		}
		t.key = u.Host
		if u.Port() == "" {
			if u.Scheme == "rtu-over-tcp" {
				return t, fmt.Errorf("%q: a serial server has no standard port: give it (rtu-over-tcp://host:4001)", raw)
			}
			t.key = net.JoinHostPort(u.Hostname(), "502")
		}
		t.clientURL = "tcp://" + t.key
		if u.Scheme == "rtu-over-tcp" {
			t.clientURL = "rtuovertcp://" + t.key
		}
		return t, nil
	case "rtu":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/dev/") {
			return t, fmt.Errorf("%q: want rtu:///dev/ttyUSB0 (three slashes: the device path is absolute)", raw)
		}
		t.path, t.key, t.clientURL = u.Path, u.Path, "rtu://"+u.Path
		t.baud, t.dataBits, t.parity, t.stopBits = 9600, 8, modbus.PARITY_NONE, 1
		for k, vs := range u.Query() {
			v := vs[len(vs)-1]
			n, nerr := strconv.ParseUint(v, 10, 32)
			switch k {
			case "baud":
				if nerr != nil || !slices.Contains(modbusBauds, uint(n)) {
					return t, fmt.Errorf("%q: baud=%s: want one of %v", raw, v, modbusBauds)
				}
				t.baud = uint(n)
			case "data":
				if nerr != nil || n < 7 || n > 8 {
					return t, fmt.Errorf("%q: data=%s: want 7 or 8", raw, v)
				}
				t.dataBits = uint(n)
			case "stop":
				if nerr != nil || n < 1 || n > 2 {
					return t, fmt.Errorf("%q: stop=%s: want 1 or 2", raw, v)
				}
				t.stopBits = uint(n)
			case "parity":
				p, ok := modbusParity[strings.ToUpper(v)]
				if !ok {
					return t, fmt.Errorf("%q: parity=%s: want N, E or O", raw, v)
				}
				t.parity = p
			default:
				return t, fmt.Errorf("%q: unknown setting %q: known are baud, parity, stop, data", raw, k)
			}
		}
		return t, nil
	}
	return t, fmt.Errorf("%q: scheme %q: want tcp, rtu or rtu-over-tcp", raw, u.Scheme)
}

// SharedBus identifies the port or gateway and its settings, so that
// ValidateAll refuses two sensors that open one bus differently.
func (o *ModbusOptions) SharedBus() (string, string) { return o.t.key, o.t.settings() }

// settings is what sensors sharing the bus must agree on.
func (t modbusTransport) settings() string {
	if t.scheme == "rtu" {
		return fmt.Sprintf("rtu %d baud, %d%s%d, request_timeout %s", t.baud, t.dataBits, parityName(t.parity), t.stopBits, t.timeout)
	}
	return fmt.Sprintf("%s, request_timeout %s", t.scheme, t.timeout)
}

// Validate implements the options check; errors name values[i].key.
func (o *ModbusOptions) Validate() error {
	if o.RequestTimeout < 10*time.Millisecond || o.RequestTimeout > 30*time.Second {
		return fmt.Errorf("request_timeout: %s: want 10ms to 30s", o.RequestTimeout)
	}
	t, err := parseModbusURL(o.URL, o.RequestTimeout)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	o.t = t
	lo, hi := 1, 247
	if t.scheme == "tcp" {
		// Modbus TCP devices often answer unit 0 or 255 ("this device").
		lo, hi = 0, 255
	}
	if o.UnitID < lo || o.UnitID > hi {
		return fmt.Errorf("unit_id: %d: want %d-%d on %s (0 is broadcast on a serial bus: nobody answers)", o.UnitID, lo, hi, t.scheme)
	}
	if o.Retries < 0 || o.Retries > 5 {
		return fmt.Errorf("retries: %d: want 0-5", o.Retries)
	}
	if o.MaxRegisters < 1 || o.MaxRegisters > maxReadRegisters {
		return fmt.Errorf("max_registers: %d: want 1-%d (the protocol's limit per read)", o.MaxRegisters, maxReadRegisters)
	}
	if o.MaxGap < 0 || o.MaxGap > maxReadRegisters {
		return fmt.Errorf("max_gap: %d: want 0-%d", o.MaxGap, maxReadRegisters)
	}
	if len(o.Values) == 0 {
		return fmt.Errorf("values: at least one, e.g. [{metric: voltage_l1, table: input, address: 0, type: float32, order: CDAB, unit: V}]")
	}
	seen := map[string]int{}
	for i := range o.Values {
		if err := o.Values[i].validate(o.MaxRegisters); err != nil {
			err.Key = fmt.Sprintf("values[%d].%s", i, err.Key)
			return err
		}
		v := &o.Values[i]
		if j, dup := seen[v.Metric]; dup {
			return &confkit.FieldError{Key: fmt.Sprintf("values[%d].metric", i), Line: v.line, Msg: fmt.Sprintf("%q is already used by values[%d]", v.Metric, j)}
		}
		seen[v.Metric] = i
	}
	return nil
}

func (v *ModbusValue) validate(maxRegs int) *confkit.FieldError {
	bad := func(key, format string, a ...any) *confkit.FieldError {
		return &confkit.FieldError{Key: key, Line: v.line, Msg: fmt.Sprintf(format, a...)}
	}
	if v.unknown != nil {
		known := make([]string, 0, len(modbusValueKeys))
		for k := range modbusValueKeys {
			known = append(known, k)
		}
		slices.Sort(known)
		return &confkit.FieldError{Key: v.unknown.Value, Line: v.unknown.Line, Msg: "unknown key; known keys: " + strings.Join(known, ", ")}
	}
	if !nameRE.MatchString(v.Metric) {
		return bad("metric", "%q must be a NATS token ([A-Za-z0-9_-]+): it names the write subject cmd.modbus.<sensor>.<metric>", v.Metric)
	}
	if _, ok := tableName[v.Table]; !ok {
		return bad("table", "%q: want holding, input, coil or discrete", v.Table)
	}
	if isBitTable(v.Table) {
		if v.Type == "" {
			v.Type = "bool"
		}
		switch {
		case v.Type != "bool":
			return bad("type", "%s: %s hold single bits: type bool", v.Type, tableName[v.Table])
		case v.Order != "" || v.Bit != nil || v.Scale != 0 || v.Offset != 0:
			return bad("table", "%s hold single bits: order, bit, scale and offset do not apply", tableName[v.Table])
		}
	} else {
		if v.Type == "" {
			v.Type = "uint16"
		}
		if _, ok := modbusTypeWords[v.Type]; !ok {
			return bad("type", "%q: want bool, int16, uint16, int32, uint32, int64, uint64, float32 or float64", v.Type)
		}
		if v.Order == "" {
			v.Order = "ABCD"
		}
		v.Order = strings.ToUpper(v.Order)
		if _, ok := modbusOrders[v.Order]; !ok || !orderFits(v.Order, v.words()) {
			return bad("order", "%q does not fit %s: want ABCD (big-endian), CDAB (word-swapped), BADC (byte-swapped) or DCBA (little-endian)", v.Order, v.Type)
		}
		switch {
		case v.Type == "bool" && (v.Bit == nil || *v.Bit < 0 || *v.Bit > 15):
			return bad("bit", "type bool on a register needs bit: 0-15 (0 = least significant)")
		case v.Type != "bool" && v.Bit != nil:
			return bad("bit", "applies to type bool only")
		case v.Type == "bool" && (v.Scale != 0 || v.Offset != 0):
			return bad("scale", "a bit is 0 or 1: scale and offset do not apply")
		case v.words() > maxRegs:
			return bad("type", "%s spans %d registers, more than max_registers (%d)", v.Type, v.words(), maxRegs)
		}
		if v.Scale == 0 && v.Type != "bool" {
			v.Scale = 1
		}
	}
	a, err := resolveAddress(v.Table, v.Address)
	if err != nil {
		return bad("address", "%v", err)
	}
	if int(a)+v.words() > 65536 {
		return bad("address", "%d: a %s there runs past the last address (65535)", v.Address, v.Type)
	}
	v.addr = a
	if v.Writable {
		switch {
		case v.Table == tableInput || v.Table == tableDiscrete:
			return bad("writable", "%s are read-only in Modbus; only holding registers and coils can be written", tableName[v.Table])
		case v.Bit != nil:
			return bad("writable", "a bit of a register cannot be written safely (read-modify-write races the device); map a coil or a whole register")
		}
	}
	return nil
}

func init() {
	Register(Registration{
		Name: "modbus",
		Options: func() any {
			return &ModbusOptions{UnitID: 1, RequestTimeout: modbusTimeoutDefault, Retries: 1, MaxRegisters: maxReadRegisters}
		},
		New: func(c Config, o any, _ Env) (Driver, error) {
			return newModbusDriver(o.(*ModbusOptions))
		},
		Write:  writeModbus,
		Sample: modbusSample,
	})
}

const modbusSample = `# Modbus TCP, RTU (RS-485) or RTU over TCP (serial server): one device, one unit id.
# Values are read in as few requests as possible (adjacent addresses joined, at
# most max_registers each); sensors on one port or gateway take turns on it.
# Writes: a local app (or the hub via edge.<site>.cmd.>) requests
# cmd.modbus.<sensor>.<metric> with {"value": 1}; only writable values accept.
# An Eastron SDM630-style three-phase energy meter:
- name: meter1
  driver: modbus
  interval: 5s
  url: tcp://127.0.0.1:502          # rtu:///dev/ttyUSB0?baud=9600&parity=N&stop=1&data=8
                                    # (the agent's user needs group dialout),
                                    # rtu-over-tcp://gateway:4001
  unit_id: 1                        # 1-247 (TCP also 0 and 255)
  # request_timeout: 1s             # per request; retries more after a timeout or a bad CRC
  # retries: 1
  # max_registers: 125              # fewer if the device refuses long reads
  # max_gap: 0                      # unmapped registers a read may span to join values
  values:
    # table: holding, input, coil, discrete. address: 0-based, or the
    # datasheet's 30001/40001 numbering (must match the table).
    # type: bool, int16, uint16, int32, uint32, int64, uint64, float32, float64.
    # order: ABCD (big-endian), CDAB (word-swapped), BADC, DCBA (little-endian).
    - {metric: voltage_l1, table: input, address: 0, type: float32, order: CDAB, unit: V}
    - {metric: current_l1, table: input, address: 6, type: float32, order: CDAB, unit: A}
    - {metric: power_total, table: input, address: 52, type: float32, order: CDAB, unit: W}
    - {metric: energy_total, table: input, address: 342, type: float32, order: CDAB, unit: kWh}
    - {metric: flow, table: holding, address: 40011, type: int16, scale: 0.1, unit: m3/h}
    - {metric: alarm, table: holding, address: 12, type: bool, bit: 3}
    - {metric: pump, table: coil, address: 0, writable: true}
  # alert_metric: power_total       # alerts.meter1 above 20 kW ...
  # alert_above: 20000
`

type modbusDriver struct {
	bus    *modbusBus
	opts   *ModbusOptions
	unit   uint8
	plan   []modbusRequest
	events modbusEvents
}

func newModbusDriver(o *ModbusOptions) (*modbusDriver, error) {
	b, err := acquireModbusBus(o.t)
	if err != nil {
		return nil, err
	}
	return &modbusDriver{bus: b, opts: o, unit: uint8(o.UnitID), plan: planRequests(o.Values, o.MaxRegisters, o.MaxGap), events: modbusEvents{}}, nil
}

func (d *modbusDriver) Read(ctx context.Context) (map[string]Value, error) {
	out := make(map[string]Value, len(d.opts.Values))
	for _, r := range d.plan {
		var regs []uint16
		var bits []bool
		err := d.bus.do(ctx, d.unit, d.opts.Retries, d.events, func(c *modbus.ModbusClient) (err error) {
			switch r.table {
			case tableCoil:
				bits, err = c.ReadCoils(r.start, r.count)
			case tableDiscrete:
				bits, err = c.ReadDiscreteInputs(r.start, r.count)
			case tableInput:
				regs, err = c.ReadRegisters(r.start, r.count, modbus.INPUT_REGISTER)
			case tableHolding:
				regs, err = c.ReadRegisters(r.start, r.count, modbus.HOLDING_REGISTER)
			}
			return err
		})
		if err != nil {
			return nil, modbusErr(d.opts.t, d.unit, "read "+modbusSpan(r.table, r.start, r.count), d.opts.Retries, err)
		}
		for _, v := range r.vals {
			off := int(v.addr - r.start)
			if bits != nil {
				out[v.Metric] = Value{V: b2f(bits[off]), Unit: v.Unit}
				continue
			}
			out[v.Metric] = Value{V: v.scaled(regs[off : off+v.words()]), Unit: v.Unit}
		}
	}
	return out, nil
}

// scaled decodes a value and applies scale and offset, keeping the digits
// the device sent: a float32 230.1 stays 230.1, not 230.10000610351562.
func (v *ModbusValue) scaled(regs []uint16) float64 {
	raw := decodeRaw(v.Type, v.Order, v.bit(), regs)
	if v.Type == "float32" {
		raw, _ = strconv.ParseFloat(strconv.FormatFloat(raw, 'g', -1, 32), 64)
	}
	if v.Type == "bool" || v.Scale == 1 && v.Offset == 0 {
		return raw
	}
	x := raw*v.Scale + v.Offset
	if math.IsInf(x, 0) || math.IsNaN(x) || x == 0 {
		return x
	}
	// Twelve significant digits drop the binary noise of the scale (0.1)
	// and keep every digit a 64-bit register has that a float64 can hold.
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 12, 64), 64)
	return r
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TakeEvents hands the sampler what the bus saw since the last call.
func (d *modbusDriver) TakeEvents() map[string]uint64 {
	ev := d.events
	d.events = modbusEvents{}
	return ev
}

func (d *modbusDriver) Close() error {
	d.bus.release()
	return nil
}

// writeModbus sets one writable value. It opens the sensor's bus itself
// (shared with the sensor's reads, so they take turns) and needs no open
// driver: a write works even while the sensor's reads back off.
func writeModbus(ctx context.Context, c Config, o any, metric string, value float64) error {
	opts := o.(*ModbusOptions)
	i := slices.IndexFunc(opts.Values, func(v ModbusValue) bool { return v.Metric == metric })
	if i < 0 {
		return fmt.Errorf("sensor %s has no metric %q", c.Name, metric)
	}
	v := &opts.Values[i]
	if !v.Writable {
		return fmt.Errorf("%s.%s (%s) is not writable: only values with writable: true in the config can be set", c.Name, metric, modbusSpan(v.Table, v.addr, uint16(v.words())))
	}
	var regs []uint16
	if v.Table != tableCoil {
		var err error
		if regs, err = encodeRaw(v.Type, v.Order, (value-v.Offset)/v.Scale); err != nil {
			return fmt.Errorf("%s.%s: %w", c.Name, metric, err)
		}
	} else if value != 0 && value != 1 {
		return fmt.Errorf("%s.%s is a coil: write 0 or 1 (or true/false), not %g", c.Name, metric, value)
	}
	b, err := acquireModbusBus(opts.t)
	if err != nil {
		return err
	}
	defer b.release()
	err = b.do(ctx, uint8(opts.UnitID), opts.Retries, modbusEvents{}, func(cl *modbus.ModbusClient) error {
		switch {
		case v.Table == tableCoil:
			return cl.WriteCoil(v.addr, value == 1)
		case len(regs) == 1:
			return cl.WriteRegister(v.addr, regs[0])
		}
		return cl.WriteRegisters(v.addr, regs)
	})
	if err != nil {
		return modbusErr(opts.t, uint8(opts.UnitID), "write "+modbusSpan(v.Table, v.addr, uint16(v.words())), opts.Retries, err)
	}
	return nil
}
