package sensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
)

// Modbus tables and the numbering prefix each has in the traditional
// one-based register numbers (40001 is holding register 0).
const (
	tableCoil     = "coil"
	tableDiscrete = "discrete"
	tableInput    = "input"
	tableHolding  = "holding"
)

var tablePrefix = map[string]int{tableDiscrete: 1, tableInput: 3, tableHolding: 4}

// tableName is how errors name a table: as datasheets do.
var tableName = map[string]string{
	tableCoil: "coils", tableDiscrete: "discrete inputs",
	tableInput: "input registers", tableHolding: "holding registers",
}

func isBitTable(table string) bool { return table == tableCoil || table == tableDiscrete }

// modbusTypeWords is the number of 16-bit registers each type spans; bool
// spans one register when it is a bit of a register.
var modbusTypeWords = map[string]int{
	"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
	"int64": 4, "uint64": 4, "float64": 4,
}

// modbusOrders maps every accepted spelling to (swap words, swap bytes).
// The four-letter names describe a 32-bit value; for 16-bit values only the
// byte swap applies and for 64-bit values the same swaps apply to all four
// words, as Telegraf documents it (CDAB on 64 bits is GHEFCDAB).
var modbusOrders = map[string][2]bool{
	"ABCD": {false, false}, "CDAB": {true, false}, "BADC": {false, true}, "DCBA": {true, true},
	"AB": {false, false}, "BA": {false, true},
	"ABCDEFGH": {false, false}, "GHEFCDAB": {true, false}, "BADCFEHG": {false, true}, "HGFEDCBA": {true, true},
}

// orderFits says whether an order's spelling suits a type's width: the
// two- and eight-letter names only fit their own width, so a map copied from
// a datasheet that says "BA" on a float is caught.
func orderFits(order string, words int) bool {
	switch len(order) {
	case 2:
		return words == 1
	case 8:
		return words == 4
	}
	return true
}

// resolveAddress turns a configured address into the protocol's 0-based
// one. 0-9999 are protocol addresses; five- and six-digit numbers are the
// traditional one-based numbers (30001, 400001) and must carry the prefix of
// the configured table: a 4xxxx number on an input table is a mix-up the
// user has to settle, not guess.
func resolveAddress(table string, a int) (uint16, error) {
	if a >= 0 && a < 10000 {
		return uint16(a), nil
	}
	var prefix, n, first int
	switch {
	case a >= 10000 && a <= 99999:
		prefix, n, first = a/10000, a%10000, a/10000*10000+1
	case a >= 100000 && a <= 465536:
		prefix, n, first = a/100000, a%100000, a/100000*100000+1
	default:
		return 0, fmt.Errorf("%d is out of range: want a 0-based address 0-9999, or a register number such as %s", a, example(table))
	}
	want, numbered := tablePrefix[table]
	for t, p := range tablePrefix {
		if p == prefix && t != table {
			return 0, fmt.Errorf("%d is in the %s numbering (%dxxxx) but table is %s: either table: %s, or the %s number (%s)", a, tableName[t], p, table, t, tableName[table], example(table))
		}
	}
	if !numbered || prefix != want {
		return 0, fmt.Errorf("%d: addresses from 10000 up are read as one-based register numbers (%s), and %d is none; a protocol address above 9999 is written in six digits (holding address 40000 is 440001)", a, example(table), a)
	}
	if n == 0 || n > 65536 {
		return 0, fmt.Errorf("%d: %s numbers start at %d (= address 0)", a, tableName[table], first)
	}
	return uint16(n - 1), nil
}

func example(table string) string {
	if p, ok := tablePrefix[table]; ok {
		return fmt.Sprintf("%d0001 = address 0", p)
	}
	return "coils have no five-digit numbering: give the 0-based address"
}

// regBytes lays registers out as the bytes of the value, most significant
// first, undoing the device's word and byte order.
func regBytes(regs []uint16, order string) []byte {
	sw := modbusOrders[order]
	b := make([]byte, 2*len(regs))
	for i, r := range regs {
		j := i
		if sw[0] {
			j = len(regs) - 1 - i
		}
		if sw[1] {
			r = r<<8 | r>>8
		}
		binary.BigEndian.PutUint16(b[2*j:], r)
	}
	return b
}

// bytesRegs is regBytes' inverse, for writes.
func bytesRegs(b []byte, order string) []uint16 {
	sw := modbusOrders[order]
	n := len(b) / 2
	regs := make([]uint16, n)
	for i := range regs {
		j := i
		if sw[0] {
			j = n - 1 - i
		}
		r := binary.BigEndian.Uint16(b[2*j:])
		if sw[1] {
			r = r<<8 | r>>8
		}
		regs[i] = r
	}
	return regs
}

// decodeRaw turns a value's registers into its unscaled number. bit picks
// one bit of a register (0 = least significant) for type bool.
func decodeRaw(typ, order string, bit int, regs []uint16) float64 {
	b := regBytes(regs, order)
	switch typ {
	case "bool":
		return float64(binary.BigEndian.Uint16(b) >> bit & 1)
	case "int16":
		return float64(int16(binary.BigEndian.Uint16(b)))
	case "uint16":
		return float64(binary.BigEndian.Uint16(b))
	case "int32":
		return float64(int32(binary.BigEndian.Uint32(b)))
	case "uint32":
		return float64(binary.BigEndian.Uint32(b))
	case "float32":
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
	case "int64":
		return float64(int64(binary.BigEndian.Uint64(b)))
	case "uint64":
		return float64(binary.BigEndian.Uint64(b))
	case "float64":
		return math.Float64frombits(binary.BigEndian.Uint64(b))
	}
	panic("sensors: modbus type not validated: " + typ)
}

// modbusIntRange is the values each integer type holds, for writes. The
// upper bounds of the 64-bit types are the float64 just below 2^63 and
// 2^64: those powers of two themselves do not fit.
var modbusIntRange = map[string][2]float64{
	"int16": {math.MinInt16, math.MaxInt16}, "uint16": {0, math.MaxUint16},
	"int32": {math.MinInt32, math.MaxInt32}, "uint32": {0, math.MaxUint32},
	"int64": {math.MinInt64, math.Nextafter(math.MaxInt64, 0)}, "uint64": {0, math.Nextafter(math.MaxUint64, 0)},
}

// encodeRaw is decodeRaw's inverse for writes: it refuses a value the type
// cannot hold rather than wrapping it (writing 70000 to a uint16 setpoint
// must not set 4464).
func encodeRaw(typ, order string, raw float64) ([]uint16, error) {
	if math.IsNaN(raw) || math.IsInf(raw, 0) {
		return nil, fmt.Errorf("%g is not a number a register can hold", raw)
	}
	b := make([]byte, 2*modbusTypeWords[typ])
	switch typ {
	case "float32":
		if math.Abs(raw) > math.MaxFloat32 {
			return nil, fmt.Errorf("%g is outside float32's range", raw)
		}
		binary.BigEndian.PutUint32(b, math.Float32bits(float32(raw)))
	case "float64":
		binary.BigEndian.PutUint64(b, math.Float64bits(raw))
	default:
		rng, ok := modbusIntRange[typ]
		if !ok {
			return nil, fmt.Errorf("type %s cannot be written", typ)
		}
		r := math.Round(raw)
		if r < rng[0] || r > rng[1] {
			return nil, fmt.Errorf("%g is outside %s's range %g..%g", raw, typ, rng[0], rng[1])
		}
		// Two's complement in 64 bits, then the type's low bytes; a uint64
		// above 2^63 does not fit int64, so it converts directly.
		v := uint64(int64(r))
		if typ == "uint64" {
			v = uint64(r)
		}
		var full [8]byte
		binary.BigEndian.PutUint64(full[:], v)
		copy(b, full[8-len(b):])
	}
	return bytesRegs(b, order), nil
}

// modbusRequest is one read: a span of one table that covers one or more
// values.
type modbusRequest struct {
	table string
	start uint16
	count uint16
	vals  []*ModbusValue
}

// Protocol limits per read request: 125 registers (function codes 3 and 4)
// and 2000 bits (function codes 1 and 2).
const (
	maxReadRegisters = 125
	maxReadBits      = 2000
)

// planRequests coalesces values into as few reads as the limits allow:
// values of one table are sorted by address and joined while the span
// stays within maxSpan (registers) or the bit limit, and the hole between
// them is at most maxGap addresses (read and discarded: some devices
// refuse a read that covers an unmapped address, hence a bounded gap).
func planRequests(vals []ModbusValue, maxSpan, maxGap int) []modbusRequest {
	byTable := map[string][]*ModbusValue{}
	for i := range vals {
		v := &vals[i]
		byTable[v.Table] = append(byTable[v.Table], v)
	}
	var out []modbusRequest
	for _, table := range []string{tableCoil, tableDiscrete, tableInput, tableHolding} {
		vs := byTable[table]
		sort.SliceStable(vs, func(i, j int) bool { return vs[i].addr < vs[j].addr })
		limit := maxSpan
		if isBitTable(table) {
			limit = maxReadBits
		}
		var cur *modbusRequest
		for _, v := range vs {
			start, end := int(v.addr), int(v.addr)+v.words()
			if cur != nil {
				cs, ce := int(cur.start), int(cur.start)+int(cur.count)
				if start-ce <= maxGap && max(ce, end)-cs <= limit {
					cur.count = uint16(max(ce, end) - cs)
					cur.vals = append(cur.vals, v)
					continue
				}
				out = append(out, *cur)
			}
			cur = &modbusRequest{table: table, start: v.addr, count: uint16(end - start), vals: []*ModbusValue{v}}
		}
		if cur != nil {
			out = append(out, *cur)
		}
	}
	return out
}
