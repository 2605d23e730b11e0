//go:build linux

package sensors

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and the path of its slave: the
// driver opens the slave as it would /dev/ttyUSB0, the test's responder
// plays the RS-485 devices on the master.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/dev/pts/%d", n)
	// The master reads EIO whenever no slave is open (between the
	// driver's access check and its open, or across a reopen): hold one.
	s, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return m, path
}

func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// rtuBus answers RTU frames on a pty master (or a serial server's TCP
// connection) with a ModbusSim per the frames' unit ids. It records when each request started arriving and when
// each answer was sent, and can corrupt answers.
type rtuBus struct {
	m   io.ReadWriter
	sim *ModbusSim

	mu       sync.Mutex
	corrupt  int // answers still to send with a bad CRC
	badReqs  int // requests that arrived with a bad CRC (interleaved frames)
	gaps     []time.Duration
	lastSent time.Time
	units    []uint8
}

func (b *rtuBus) serve() {
	for {
		head := make([]byte, 2)
		if _, err := io.ReadFull(b.m, head); err != nil {
			return
		}
		arrived := time.Now()
		var rest []byte
		switch head[1] {
		case 15, 16:
			rest = make([]byte, 5)
			if _, err := io.ReadFull(b.m, rest); err != nil {
				return
			}
			data := make([]byte, int(rest[4])+2)
			if _, err := io.ReadFull(b.m, data); err != nil {
				return
			}
			rest = append(rest, data...)
		default:
			rest = make([]byte, 6)
			if _, err := io.ReadFull(b.m, rest); err != nil {
				return
			}
		}
		frame := append(head, rest...)
		body := frame[:len(frame)-2]
		b.mu.Lock()
		if !b.lastSent.IsZero() {
			b.gaps = append(b.gaps, arrived.Sub(b.lastSent))
		}
		b.units = append(b.units, frame[0])
		if binary.LittleEndian.Uint16(frame[len(frame)-2:]) != crc16(body) {
			b.badReqs++
			b.mu.Unlock()
			continue
		}
		b.mu.Unlock()
		res := b.sim.Handle(frame[0], body[1:])
		if res == nil {
			continue
		}
		out := append([]byte{frame[0]}, res...)
		out = binary.LittleEndian.AppendUint16(out, crc16(out))
		b.mu.Lock()
		if b.corrupt > 0 {
			b.corrupt--
			out[len(out)-1] ^= 0x55
		}
		b.mu.Unlock()
		if _, err := b.m.Write(out); err != nil {
			return
		}
		b.mu.Lock()
		b.lastSent = time.Now()
		b.mu.Unlock()
	}
}

func startRTU(t *testing.T, units ...uint8) (*rtuBus, string) {
	m, path := openPTY(t)
	b := &rtuBus{m: m, sim: NewModbusSim(units...)}
	go b.serve()
	return b, path
}

const rtuMeter = `
- name: meter%[2]d
  driver: modbus
  url: rtu://%[1]s?baud=9600&parity=N&stop=1
  unit_id: %[2]d
  request_timeout: 300ms
  retries: %[3]d
  values:
    - {metric: voltage_l1, table: input, address: 0, type: float32, order: CDAB, unit: V}
    - {metric: energy_total, table: input, address: 342, type: float32, order: CDAB, unit: kWh}
    - {metric: setpoint, table: holding, address: 11, type: int16, scale: 0.1, writable: true}
    - {metric: pump, table: coil, address: 0, writable: true}
`

// Two meters on one RS-485 bus: their requests never interleave (every
// frame's CRC checks), each waits out the inter-frame gap after the other's
// answer, and writes share the bus with reads.
func TestModbusRTUSharedBus(t *testing.T) {
	bus, path := startRTU(t, 1, 2)
	cfgs := modbusCfgs(t, fmt.Sprintf(rtuMeter, path, 1, 0)+fmt.Sprintf(rtuMeter, path, 2, 0))
	d1, d2 := openModbus(t, cfgs[0]), openModbus(t, cfgs[1])
	if d1.bus != d2.bus {
		t.Fatal("two sensors on one port got two buses")
	}
	s, err := NewSampler(cfgs, Options{Publisher: &memPub{}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for _, d := range []*modbusDriver{d1, d2} {
		wg.Go(func() {
			for range 5 {
				v, err := d.Read(context.Background())
				if err == nil && (v["voltage_l1"].V != 230.1 || v["energy_total"].V != 12400.25 || v["pump"].V != 1) {
					err = fmt.Errorf("unit %d read %v", d.unit, v)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		if err := s.Write(context.Background(), "meter2", "setpoint", 19.5); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if r, _ := bus.sim.Reg(tableHolding, SimSetpoint); r != 195 {
		t.Errorf("setpoint over RTU: %d", r)
	}
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if bus.badReqs != 0 {
		t.Errorf("%d requests arrived corrupted: frames interleaved", bus.badReqs)
	}
	// t3.5 at 9600 baud is 4.0 ms (11 bits a character, as the RTU spec
	// frames it); the answer's timestamp is taken after the write returns,
	// possibly after the client saw it, hence the margin.
	for i, g := range bus.gaps {
		if g < 3500*time.Microsecond {
			t.Errorf("request %d came %s after the previous answer: less than the inter-frame gap", i+1, g)
		}
	}
	seen := map[uint8]int{}
	for _, u := range bus.units {
		seen[u]++
	}
	if seen[1] != 20 || seen[2] != 21 {
		t.Errorf("requests per unit %v, want 20 and 21 (5 reads of 4 requests, plus a write)", seen)
	}
}

// A corrupted answer is retried (and counted); without retries it fails
// naming what to check. A device that never answers times out without
// disturbing the next one on the bus.
func TestModbusRTUFaults(t *testing.T) {
	bus, path := startRTU(t, 1)
	d := openModbus(t, modbusCfgs(t, fmt.Sprintf(rtuMeter, path, 1, 1))[0])
	bus.mu.Lock()
	bus.corrupt = 1
	bus.mu.Unlock()
	v, err := d.Read(context.Background())
	if err != nil || v["voltage_l1"].V != 230.1 {
		t.Fatalf("read after one bad CRC with a retry: %v %v", v, err)
	}
	if ev := d.TakeEvents(); ev["crc_errors"] != 1 || ev["retries"] != 1 {
		t.Errorf("events %v, want one crc error and one retry", ev)
	}

	cfgs := modbusCfgs(t, fmt.Sprintf(rtuMeter, path, 1, 0)+fmt.Sprintf(rtuMeter, path, 9, 0))
	_ = d.Close()
	one, dead := openModbus(t, cfgs[0]), openModbus(t, cfgs[1])
	bus.mu.Lock()
	bus.corrupt = 1
	bus.mu.Unlock()
	if _, err := one.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "bad crc (1 attempts)") || !strings.Contains(err.Error(), "baud, parity and stop bits") {
		t.Errorf("bad CRC without retries: %v", err)
	}
	if _, err := dead.Read(context.Background()); err == nil || !strings.Contains(err.Error(), path+" unit 9: read coils 0: no answer within 300ms") {
		t.Errorf("silent unit: %v", err)
	}
	if v, err := one.Read(context.Background()); err != nil || v["energy_total"].V != 12400.25 {
		t.Errorf("unit 1 after unit 9's timeout: %v %v", v, err)
	}
}

// Opening the port names the fix: a missing adapter, or the group to join.
func TestModbusRTUOpenErrors(t *testing.T) {
	d := openModbus(t, modbusCfgs(t, "- {name: m, driver: modbus, url: 'rtu:///dev/ttyEA-missing', values: [{metric: v, table: input, address: 0}]}")[0])
	if _, err := d.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "/dev/ttyEA-missing does not exist") {
		t.Errorf("missing adapter: %v", err)
	}
	if os.Geteuid() == 0 {
		t.Skip("root opens any device: permission denied cannot be provoked")
	}
	p := filepath.Join(t.TempDir(), "ttyUSB0")
	if err := os.WriteFile(p, nil, 0); err != nil {
		t.Fatal(err)
	}
	b := &modbusBus{t: modbusTransport{scheme: "rtu", path: p, key: p}, sem: make(chan struct{}, 1)}
	if err := b.open(); err == nil || !strings.Contains(err.Error(), "add the agent's user to group dialout") {
		t.Errorf("permission denied: %v", err)
	}
}

// RTU over TCP: the same frames through a serial server's TCP port.
func TestModbusRTUOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	sim := NewModbusSim()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// serve ends when the driver's release closes the connection.
			go (&rtuBus{m: c, sim: sim}).serve()
		}
	}()
	text := strings.Replace(fmt.Sprintf(rtuMeter, "X", 1, 0), "rtu://X?baud=9600&parity=N&stop=1", "rtu-over-tcp://"+ln.Addr().String(), 1)
	d := openModbus(t, modbusCfgs(t, text)[0])
	v, err := d.Read(context.Background())
	if err != nil || v["voltage_l1"].V != 230.1 || v["setpoint"].V != -4.5 || v["pump"].V != 1 {
		t.Fatalf("rtu-over-tcp read: %v %v", v, err)
	}
}
