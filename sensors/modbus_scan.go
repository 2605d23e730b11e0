package sensors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/simonvetter/modbus"
)

// ModbusUnit is a unit id that answered a scan's probe.
type ModbusUnit struct {
	ID int
	// Answer is what it said to a read of holding register 0: a value, or
	// an exception (a device is there; its map starts elsewhere).
	Answer string
}

// ModbusScan is what ScanModbus found on one bus.
type ModbusScan struct {
	URL     string
	Units   []ModbusUnit
	Probed  int // ids asked before the time ran out
	Asked   int // ids the command line named
	Elapsed time.Duration
}

// ScanModbus asks each unit id on url for holding register 0, once, with
// timeout per id, until ctx ends: any answer, even an exception, means a
// device. It opens the bus itself, so on a serial port the agent must not
// be reading it at the same time.
func ScanModbus(ctx context.Context, url string, ids []int, timeout time.Duration) (ModbusScan, error) {
	r := ModbusScan{URL: url, Asked: len(ids)}
	t, err := parseModbusURL(url, timeout)
	if err != nil {
		return r, err
	}
	b, err := acquireModbusBus(t)
	if err != nil {
		return r, err
	}
	defer b.release()
	start := time.Now()
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		var regs []uint16
		err := b.do(ctx, uint8(id), 0, modbusEvents{}, func(c *modbus.ModbusClient) (err error) {
			regs, err = c.ReadRegisters(0, 1, modbus.HOLDING_REGISTER)
			return err
		})
		if ctx.Err() != nil {
			break
		}
		r.Probed++
		var me modbus.Error
		switch kind := modbusErrKind(err); {
		case kind == "":
			r.Units = append(r.Units, ModbusUnit{ID: id, Answer: fmt.Sprintf("holding register 0 = %d (0x%04x)", regs[0], regs[0])})
		case kind == "exception" && errors.As(err, &me):
			r.Units = append(r.Units, ModbusUnit{ID: id, Answer: fmt.Sprintf("%s (a device is there; its register map starts elsewhere)", me)})
		case kind == "io":
			r.Elapsed = time.Since(start)
			return r, modbusErr(t, uint8(id), "probe", 0, err)
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// ParseUnitIDs reads "1-10,17" into ids, in order, each 0-255.
func ParseUnitIDs(s string) ([]int, error) {
	var ids []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(lo)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b > 255 || a > b {
			return nil, fmt.Errorf("unit ids %q: want ids 0-255 such as 1-10,17", s)
		}
		for id := a; id <= b; id++ {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// WriteText prints what answered and a config snippet for it.
func (r ModbusScan) WriteText(w io.Writer) {
	for _, u := range r.Units {
		fmt.Fprintf(w, "Modbus %s unit %d answers: %s\n", r.URL, u.ID, u.Answer)
	}
	fmt.Fprintf(w, "Modbus %s: probed %d of %d unit ids in %s; %d answered\n", r.URL, r.Probed, r.Asked, r.Elapsed.Round(time.Millisecond), len(r.Units))
	if r.Probed < r.Asked {
		fmt.Fprintln(w, "  (time ran out: give more with --max-time, or fewer ids with --ids)")
	}
	if len(r.Units) == 0 {
		fmt.Fprintln(w, "  nothing answered: check unit ids, wiring, baud and parity (a serial url takes ?baud=9600&parity=N&stop=1)")
		return
	}
	fmt.Fprintf(w, "\n# Config snippet for agent.yaml (map the values from the device's datasheet; `edge-agent sensors sample modbus` documents every key):\nsensors:\n")
	for _, u := range r.Units {
		fmt.Fprintf(w, "  - {name: modbus-%d, driver: modbus, url: %q, unit_id: %d, interval: 10s, values: [{metric: reg0, table: holding, address: 0}]}\n", u.ID, r.URL, u.ID)
	}
}
