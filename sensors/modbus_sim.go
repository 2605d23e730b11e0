package sensors

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ModbusSim is a Modbus device in memory, for the demo and tests: a
// three-phase energy meter laid out as the Eastron SDM630's input registers
// (float32, stored here word-swapped, CDAB, as Carlo Gavazzi meters and
// many PLCs send them), plus holding registers of every type, status bits
// and coils. It answers Modbus TCP (Serve) and, through Handle, any framing
// a test wraps around the PDU (RTU).
type ModbusSim struct {
	mu    sync.Mutex
	units map[uint8]bool
	bits  map[string]map[uint16]bool
	regs  map[string]map[uint16]uint16
	// writable are the holding registers and coils a write may set; others
	// answer exception 2, as a meter does for its measurements.
	writable map[string]map[uint16]bool
	fault    func(unit uint8, fc byte, addr, qty uint16) (exception byte, silent bool)
	requests atomic.Int64
	live     time.Time
	ln       net.Listener
	conns    map[net.Conn]bool
}

// The simulated meter's map (0-based addresses); docs/MODBUS.md reads it.
const (
	SimVoltageL1   = 0   // input, float32 CDAB, V
	SimCurrentL1   = 6   // input, float32 CDAB, A
	SimPowerTotal  = 52  // input, float32 CDAB, W
	SimFrequency   = 70  // input, float32 CDAB, Hz
	SimEnergyTotal = 342 // input, float32 CDAB, kWh
	SimFlow        = 10  // holding, int16, 0.1 m3/h
	SimSetpoint    = 11  // holding, int16, 0.1 C, writable
	SimStatus      = 12  // holding, uint16 bits: 0 running, 3 alarm
	SimCounter     = 20  // holding, uint32 ABCD
	SimTotal64     = 24  // holding, int64 ABCD
	SimPrecise     = 28  // holding, float64 ABCD
	SimPump        = 0   // coil, writable
	SimDoor        = 0   // discrete
)

// NewModbusSim returns the meter answering unit ids units (default 1),
// with datasheet-like values.
func NewModbusSim(units ...uint8) *ModbusSim {
	if len(units) == 0 {
		units = []uint8{1}
	}
	s := &ModbusSim{
		units:    map[uint8]bool{},
		bits:     map[string]map[uint16]bool{tableCoil: {}, tableDiscrete: {}},
		regs:     map[string]map[uint16]uint16{tableInput: {}, tableHolding: {}},
		writable: map[string]map[uint16]bool{tableCoil: {SimPump: true}, tableHolding: {SimSetpoint: true}},
	}
	for _, u := range units {
		s.units[u] = true
	}
	for i, v := range []float32{230.1, 229.8, 231.0, 5.2, 4.9, 5.1, 1196.5, 1126.0, 1178.1} {
		s.SetFloat32(uint16(2*i), v)
	}
	s.SetFloat32(SimPowerTotal, 3500.6)
	s.SetFloat32(SimFrequency, 50.0)
	s.SetFloat32(72, 12345.6) // import kWh
	s.SetFloat32(SimEnergyTotal, 12400.25)
	h := s.regs[tableHolding]
	h[SimFlow] = 123 // 12.3 m3/h
	setpoint := int16(-45)
	h[SimSetpoint] = uint16(setpoint)               // -4.5 C
	h[SimStatus] = 1<<0 | 1<<3                      // running, alarm
	h[SimCounter], h[SimCounter+1] = 0x0001, 0xE240 // 123456
	for i, r := range bytesRegs(binary.BigEndian.AppendUint64(nil, uint64(9_000_000_000)), "ABCD") {
		h[SimTotal64+uint16(i)] = r
	}
	for i, r := range bytesRegs(binary.BigEndian.AppendUint64(nil, math.Float64bits(0.125)), "ABCD") {
		h[SimPrecise+uint16(i)] = r
	}
	s.bits[tableCoil][SimPump], s.bits[tableCoil][1] = true, false
	s.bits[tableDiscrete][SimDoor] = false
	return s
}

// SetFloat32 stores an input register pair as the meter does (CDAB).
func (s *ModbusSim) SetFloat32(addr uint16, v float32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range bytesRegs(binary.BigEndian.AppendUint32(nil, math.Float32bits(v)), "CDAB") {
		s.regs[tableInput][addr+uint16(i)] = r
	}
}

// Reg and Bit read the device's memory (tests check writes with them).
func (s *ModbusSim) Reg(table string, addr uint16) (uint16, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.regs[table][addr]
	return v, ok
}

// Bit reads a coil or a discrete input.
func (s *ModbusSim) Bit(table string, addr uint16) (bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.bits[table][addr]
	return v, ok
}

// Requests counts the requests the device has seen.
func (s *ModbusSim) Requests() int64 { return s.requests.Load() }

// SetFault makes the device misbehave: for each request, a non-zero
// exception is answered instead, and silent drops the request unanswered
// (a timeout). nil restores it.
func (s *ModbusSim) SetFault(f func(unit uint8, fc byte, addr, qty uint16) (exception byte, silent bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// Live makes the readings move as a running meter's do: the voltage
// wanders and the energy counter grows with the power drawn.
func (s *ModbusSim) Live() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live = time.Now()
}

func (s *ModbusSim) tick() {
	if s.live.IsZero() {
		return
	}
	el := time.Since(s.live).Seconds()
	put := func(addr uint16, v float32) {
		for i, r := range bytesRegs(binary.BigEndian.AppendUint32(nil, math.Float32bits(v)), "CDAB") {
			s.regs[tableInput][addr+uint16(i)] = r
		}
	}
	put(SimVoltageL1, float32(math.Round((230.1+1.5*math.Sin(el/20))*10)/10))
	put(SimEnergyTotal, float32(math.Round((12400.25+el*3500.6/3.6e6)*1000)/1000))
}

// Handle answers one request PDU (function code and data) for unit; nil
// means no answer (another unit's request, or an injected silence).
func (s *ModbusSim) Handle(unit uint8, pdu []byte) []byte {
	s.requests.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.units[unit] || len(pdu) < 1 {
		return nil
	}
	fc := pdu[0]
	exc := func(code byte) []byte { return []byte{fc | 0x80, code} }
	if len(pdu) < 5 {
		return exc(3)
	}
	addr, qty := binary.BigEndian.Uint16(pdu[1:]), binary.BigEndian.Uint16(pdu[3:])
	if s.fault != nil {
		code, silent := s.fault(unit, fc, addr, qty)
		if silent {
			return nil
		}
		if code != 0 {
			return exc(code)
		}
	}
	s.tick()
	span := func(n, limit uint16) bool { return n >= 1 && n <= limit && int(addr)+int(n) <= 65536 }
	switch fc {
	case 1, 2:
		table := map[byte]string{1: tableCoil, 2: tableDiscrete}[fc]
		if !span(qty, maxReadBits) {
			return exc(3)
		}
		out := make([]byte, 2+(qty+7)/8)
		out[0], out[1] = fc, byte((qty+7)/8)
		for i := range qty {
			b, ok := s.bits[table][addr+i]
			if !ok {
				return exc(2)
			}
			if b {
				out[2+i/8] |= 1 << (i % 8)
			}
		}
		return out
	case 3, 4:
		table := map[byte]string{3: tableHolding, 4: tableInput}[fc]
		if !span(qty, maxReadRegisters) {
			return exc(3)
		}
		out := []byte{fc, byte(2 * qty)}
		for i := range qty {
			r, ok := s.regs[table][addr+i]
			if !ok {
				return exc(2)
			}
			out = binary.BigEndian.AppendUint16(out, r)
		}
		return out
	case 5:
		if qty != 0xFF00 && qty != 0 {
			return exc(3)
		}
		if !s.writable[tableCoil][addr] {
			return exc(2)
		}
		s.bits[tableCoil][addr] = qty == 0xFF00
		return pdu[:5]
	case 6:
		if !s.writable[tableHolding][addr] {
			return exc(2)
		}
		s.regs[tableHolding][addr] = qty
		return pdu[:5]
	case 16:
		if !span(qty, 123) || len(pdu) != 6+2*int(qty) {
			return exc(3)
		}
		for i := range qty {
			if !s.writable[tableHolding][addr+i] {
				return exc(2)
			}
		}
		for i := range qty {
			s.regs[tableHolding][addr+i] = binary.BigEndian.Uint16(pdu[6+2*i:])
		}
		return pdu[:5]
	}
	return exc(1)
}

// ServeTCP answers Modbus TCP on addr ("127.0.0.1:0" picks a port) until
// Close; it returns the address it listens on.
func (s *ModbusSim) ServeTCP(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.ln, s.conns = ln, map[net.Conn]bool{}
	s.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			go s.serveConn(c)
		}
	}()
	return ln.Addr().String(), nil
}

// serveConn reads MBAP-framed requests: transaction id, protocol 0,
// length, unit, PDU.
func (s *ModbusSim) serveConn(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	var hdr [7]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[4:]))
		if binary.BigEndian.Uint16(hdr[2:]) != 0 || n < 2 || n > 254 {
			return
		}
		pdu := make([]byte, n-1)
		if _, err := io.ReadFull(c, pdu); err != nil {
			return
		}
		res := s.Handle(hdr[6], pdu)
		if res == nil {
			continue
		}
		out := append([]byte(nil), hdr[:4]...)
		out = binary.BigEndian.AppendUint16(out, uint16(len(res)+1))
		out = append(out, hdr[6])
		if _, err := c.Write(append(out, res...)); err != nil && !errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Close stops listening and drops the connections: the device is gone.
func (s *ModbusSim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	for c := range s.conns {
		_ = c.Close()
	}
	return s.ln.Close()
}
