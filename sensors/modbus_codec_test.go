package sensors

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"
)

// Each order is the datasheet's letters for the bytes on the wire: the
// same 32-bit and 64-bit values laid out four ways decode alike.
func TestModbusOrders(t *testing.T) {
	f := math.Float32bits(123456.0) // 0x47F12000
	wire32 := map[string][]uint16{
		"ABCD": {0x47F1, 0x2000}, "CDAB": {0x2000, 0x47F1},
		"BADC": {0xF147, 0x0020}, "DCBA": {0x0020, 0xF147},
	}
	for order, regs := range wire32 {
		if got := decodeRaw("float32", order, 0, regs); got != 123456 {
			t.Errorf("float32 %s %04x = %v", order, regs, got)
		}
		if got := decodeRaw("uint32", order, 0, regs); got != float64(f) {
			t.Errorf("uint32 %s = %v", order, got)
		}
	}
	// 64-bit: Telegraf's convention, the same swaps over four words.
	wire64 := map[string][]uint16{
		"ABCD": {0x0102, 0x0304, 0x0506, 0x0708}, "ABCDEFGH": {0x0102, 0x0304, 0x0506, 0x0708},
		"CDAB": {0x0708, 0x0506, 0x0304, 0x0102}, "GHEFCDAB": {0x0708, 0x0506, 0x0304, 0x0102},
		"BADC": {0x0201, 0x0403, 0x0605, 0x0807}, "BADCFEHG": {0x0201, 0x0403, 0x0605, 0x0807},
		"DCBA": {0x0807, 0x0605, 0x0403, 0x0201}, "HGFEDCBA": {0x0807, 0x0605, 0x0403, 0x0201},
	}
	for order, regs := range wire64 {
		if got := decodeRaw("uint64", order, 0, regs); got != float64(0x0102030405060708) {
			t.Errorf("uint64 %s = %x", order, uint64(got))
		}
	}
	for _, c := range []struct {
		typ, order string
		regs       []uint16
		want       float64
	}{
		{"int16", "ABCD", []uint16{0xFFFE}, -2},
		{"int16", "BA", []uint16{0xFEFF}, -2},
		{"uint16", "DCBA", []uint16{0x3412}, 0x1234},
		{"int32", "CDAB", []uint16{0xFFFE, 0xFFFF}, -2},
		{"int64", "ABCD", []uint16{0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE}, -2},
		{"float64", "ABCD", []uint16{0x3FC0, 0, 0, 0}, 0.125},
		{"float64", "DCBA", []uint16{0, 0, 0, 0xC03F}, 0.125},
		{"bool", "ABCD", []uint16{0x0008}, 1},
	} {
		if got := decodeRaw(c.typ, c.order, 3, c.regs); c.typ == "bool" && got != c.want {
			t.Errorf("bit 3 of %04x = %v", c.regs, got)
		} else if got := decodeRaw(c.typ, c.order, 0, c.regs); c.typ != "bool" && got != c.want {
			t.Errorf("%s %s %04x = %v, want %v", c.typ, c.order, c.regs, got, c.want)
		}
	}
}

var fuzzTypes = []string{"int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64", "bool"}
var fuzzOrders = []string{"ABCD", "CDAB", "BADC", "DCBA"}

// FuzzModbusDecode: any registers decode without panic, and every integer
// or float decoded writes back to the same registers (a write of a value
// just read never changes the device), whatever the order.
func FuzzModbusDecode(f *testing.F) {
	f.Add([]byte{0x47, 0xF1, 0x20, 0x00, 1, 2, 3, 4}, uint8(4), uint8(1), uint8(0))
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFE, 0, 0, 0, 0}, uint8(5), uint8(3), uint8(15))
	f.Add([]byte{0x7F, 0xC0, 0, 1, 0, 0, 0, 0}, uint8(7), uint8(2), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, ti, oi, bit uint8) {
		typ, order := fuzzTypes[int(ti)%len(fuzzTypes)], fuzzOrders[int(oi)%len(fuzzOrders)]
		n := modbusTypeWords[typ]
		if len(data) < 2*n {
			return
		}
		regs := make([]uint16, n)
		for i := range regs {
			regs[i] = binary.BigEndian.Uint16(data[2*i:])
		}
		raw := decodeRaw(typ, order, int(bit%16), regs)
		if typ == "bool" {
			if raw != 0 && raw != 1 {
				t.Fatalf("bit decoded as %v", raw)
			}
			return
		}
		if math.IsNaN(raw) || math.IsInf(raw, 0) {
			return
		}
		// A 64-bit integer beyond 2^53 loses digits as a float64: the
		// round trip holds for the float64 it became.
		back, err := encodeRaw(typ, order, raw)
		if err != nil {
			if (typ == "int64" || typ == "uint64") && math.Abs(raw) >= 1<<63 {
				return
			}
			t.Fatalf("%s %s %04x decoded to %v, which does not encode: %v", typ, order, regs, raw, err)
		}
		if again := decodeRaw(typ, order, 0, back); again != raw {
			t.Fatalf("%s %s: %v wrote back as %04x, which reads %v", typ, order, raw, back, again)
		}
		if math.Abs(raw) < 1<<53 && !slices.Equal(back, regs) && !(raw == 0 && typ[0] == 'f') {
			t.Fatalf("%s %s: %04x read %v and writes %04x", typ, order, regs, raw, back)
		}
	})
}

// FuzzModbusValue: whatever a value's keys hold, validation either
// refuses them with an error or yields a value whose registers lie inside
// the address space and inside one request.
func FuzzModbusValue(f *testing.F) {
	f.Add("input", 30001, "float32", "CDAB", 0, false)
	f.Add("holding", 465535, "float64", "GHEFCDAB", -1, true)
	f.Add("coil", 9999, "", "", 0, true)
	f.Add("holding", 12, "bool", "BA", 15, false)
	f.Fuzz(func(t *testing.T, table string, addr int, typ, order string, bit int, writable bool) {
		v := ModbusValue{Metric: "m", Table: table, Address: addr, Type: typ, Order: order, Writable: writable}
		if bit >= 0 {
			v.Bit = &bit
		}
		if v.validate(maxReadRegisters) != nil {
			return
		}
		if int(v.addr)+v.words() > 65536 || v.words() < 1 {
			t.Fatalf("%+v accepted with %d words at %d", v, v.words(), v.addr)
		}
		plan := planRequests([]ModbusValue{v}, maxReadRegisters, 0)
		if len(plan) != 1 || int(plan[0].count) != v.words() || plan[0].start != v.addr {
			t.Fatalf("%+v planned as %+v", v, plan)
		}
		if v.Writable && (v.Table == tableInput || v.Table == tableDiscrete || v.Bit != nil) {
			t.Fatalf("%+v accepted as writable", v)
		}
		// The effective config (defaults filled in) validates again to the
		// same value: check-config's output is a config that loads.
		again := ModbusValue{Metric: v.Metric, Table: v.Table, Address: v.Address, Type: v.Type, Order: v.Order,
			Scale: v.Scale, Offset: v.Offset, Unit: v.Unit, Bit: v.Bit, Writable: v.Writable}
		if err := again.validate(maxReadRegisters); err != nil || again.addr != v.addr || again.Scale != v.Scale || again.Order != v.Order {
			t.Fatalf("%+v: its effective form does not validate alike: %v", v, err)
		}
	})
}
