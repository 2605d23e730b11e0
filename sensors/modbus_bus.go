package sensors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"time"

	"github.com/simonvetter/modbus"
)

// modbusBus is one transport (a serial port, or a TCP connection to a
// device or a serial gateway) shared by every sensor that names it: a
// serial port can be opened once, and a gateway often accepts only a few
// connections. Requests on it are serialised, so devices on one RS-485 bus
// take turns and the RTU transport keeps the inter-frame gap between them.
type modbusBus struct {
	t modbusTransport
	// sem serialises requests; a channel so that waiting honours ctx.
	sem    chan struct{}
	client *modbus.ModbusClient // nil until opened, and after a broken link
	refs   int
}

var (
	modbusBusesMu sync.Mutex
	modbusBuses   = map[string]*modbusBus{}
)

// acquireModbusBus returns the shared bus for t, refusing a second sensor
// that names the same port or address with other settings: one of the two
// would silently talk at the wrong baud rate.
func acquireModbusBus(t modbusTransport) (*modbusBus, error) {
	modbusBusesMu.Lock()
	defer modbusBusesMu.Unlock()
	if b, ok := modbusBuses[t.key]; ok {
		if b.t.settings() != t.settings() {
			return nil, fmt.Errorf("%s is already in use by another sensor with other settings (%s): sensors sharing a port or gateway share its settings (url, request_timeout)", t.key, b.t.settings())
		}
		b.refs++
		return b, nil
	}
	b := &modbusBus{t: t, sem: make(chan struct{}, 1), refs: 1}
	modbusBuses[t.key] = b
	return b, nil
}

// release drops one user; the last one closes the transport, once a
// request still running (abandoned by the sampler) is done. The bus stays
// registered until then, so a sensor reopening at once reuses it: a second
// open of a serial port whose first close is pending would have its
// settings undone by that close.
func (b *modbusBus) release() {
	modbusBusesMu.Lock()
	b.refs--
	last := b.refs == 0
	modbusBusesMu.Unlock()
	if !last {
		return
	}
	go func() {
		b.sem <- struct{}{}
		defer func() { <-b.sem }()
		modbusBusesMu.Lock()
		defer modbusBusesMu.Unlock()
		if b.refs == 0 {
			b.closeClient()
			delete(modbusBuses, b.t.key)
		}
	}()
}

func (b *modbusBus) closeClient() {
	if b.client != nil {
		_ = b.client.Close()
		b.client = nil
	}
}

const serialEnable = "plug in the USB-RS485 adapter (`ls /dev/serial/by-id/` names it stably)"

// quietLog keeps the library from writing to stdout: errors reach status
// through the driver.
var quietLog = log.New(io.Discard, "", 0)

// open connects lazily, under sem, so a gateway that is down costs nothing
// until it is used and recovers without a restart.
func (b *modbusBus) open() error {
	if b.client != nil {
		return nil
	}
	t := b.t
	if t.scheme == "rtu" {
		if err := deviceAccess(t.path, "dialout", serialEnable); err != nil {
			return err
		}
	}
	c, err := modbus.NewClient(&modbus.ClientConfiguration{
		URL: t.clientURL, Speed: t.baud, DataBits: t.dataBits, Parity: t.parity, StopBits: t.stopBits,
		Timeout: t.timeout, Logger: quietLog,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", t.url, err)
	}
	if err := c.Open(); err != nil {
		if t.scheme == "rtu" {
			return accessError(t.path, "dialout", serialEnable, err)
		}
		return fmt.Errorf("connect %s: %w (is the device or gateway on, and port %s open?)", t.key, err, t.port())
	}
	b.client = c
	return nil
}

// modbusEvents counts what a bus saw for one sensor (timeouts, CRC errors,
// exceptions, retries); the sampler adds them to the sensor's health.
type modbusEvents map[string]uint64

// do runs fn against unit under the bus lock, retrying what a retry can
// cure (a timeout, a corrupted frame) up to retries times. A Modbus
// exception is the device's answer and is not retried. A broken TCP
// connection is closed so the next attempt reconnects; a serial port stays
// open, since the other devices on it are fine.
func (b *modbusBus) do(ctx context.Context, unit uint8, retries int, ev modbusEvents, fn func(c *modbus.ModbusClient) error) error {
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-b.sem }()
	var err error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			ev["retries"]++
		}
		if err = ctx.Err(); err != nil {
			return err
		}
		if err = b.open(); err != nil {
			return err
		}
		if err = b.client.SetUnitId(unit); err != nil {
			return err
		}
		err = fn(b.client)
		switch kind := modbusErrKind(err); kind {
		case "":
			return nil
		case "exception":
			ev["exceptions"]++
			return err
		default:
			ev[kind]++
			if kind == "io" || (b.t.scheme != "rtu" && kind == "timeouts") {
				// A late answer would otherwise be read as the reply
				// to the next request.
				b.closeClient()
			}
		}
	}
	return err
}

// modbusErrKind sorts a request's error: "" (none), "exception" (the
// device answered with a Modbus exception), "timeouts", "crc_errors"
// (corrupted or foreign frames) or "io" (the port or socket failed).
func modbusErrKind(err error) string {
	var me modbus.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, modbus.ErrRequestTimedOut), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeouts"
	case errors.Is(err, modbus.ErrBadCRC), errors.Is(err, modbus.ErrShortFrame), errors.Is(err, modbus.ErrProtocolError),
		errors.Is(err, modbus.ErrBadUnitId), errors.Is(err, modbus.ErrBadTransactionId), errors.Is(err, modbus.ErrUnknownProtocolId):
		return "crc_errors"
	case errors.As(err, &me) && modbusExceptions[me] != "":
		return "exception"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeouts"
	}
	return "io"
}

// modbusExceptions says what each exception means for the person reading
// status.
var modbusExceptions = map[modbus.Error]string{
	modbus.ErrIllegalFunction:         "exception 1: the device does not support this function on this table; check table",
	modbus.ErrIllegalDataAddress:      "exception 2: the device has no such register; check address and table against its register map (0-based, or 30001/40001 numbering)",
	modbus.ErrIllegalDataValue:        "exception 3: the device refused the request's values (count or value out of its range)",
	modbus.ErrServerDeviceFailure:     "exception 4: the device failed while answering",
	modbus.ErrAcknowledge:             "exception 5: accepted, still processing",
	modbus.ErrServerDeviceBusy:        "exception 6: the device is busy; retried at the next read",
	modbus.ErrMemoryParityError:       "exception 8: the device's memory parity check failed",
	modbus.ErrGWPathUnavailable:       "exception 10: the gateway has no path to this unit; check the gateway's configuration",
	modbus.ErrGWTargetFailedToRespond: "exception 11: the gateway got no answer from this unit: check unit_id and the serial side (wiring, baud, parity)",
}

// modbusErr names what failed: the device, the table and registers, and
// what to check.
func modbusErr(t modbusTransport, unit uint8, what string, retries int, err error) error {
	var me modbus.Error
	switch kind := modbusErrKind(err); {
	case kind == "exception" && errors.As(err, &me):
		return fmt.Errorf("%s unit %d: %s: %s (%s)", t.key, unit, what, me, modbusExceptions[me])
	case kind == "timeouts":
		return fmt.Errorf("%s unit %d: %s: no answer within %s (%d attempts): check unit_id, %s", t.key, unit, what, t.timeout, retries+1, t.checkLine())
	case kind == "crc_errors":
		return fmt.Errorf("%s unit %d: %s: %v (%d attempts): a corrupted or foreign frame: check %s", t.key, unit, what, err, retries+1, t.checkLine())
	}
	return fmt.Errorf("%s unit %d: %s: %w", t.key, unit, what, err)
}

// modbusSpan names registers as datasheets do: the table, the 0-based
// addresses and, for register tables, the traditional numbers.
func modbusSpan(table string, start, count uint16) string {
	end := int(start) + int(count) - 1
	s := fmt.Sprintf("%s %d", tableName[table], start)
	if count > 1 {
		s += fmt.Sprintf("-%d", end)
	}
	if p, ok := tablePrefix[table]; ok && end < 9999 {
		base := p*10000 + 1
		s += fmt.Sprintf(" (%d", base+int(start))
		if count > 1 {
			s += fmt.Sprintf("-%d", base+end)
		}
		s += ")"
	}
	return s
}

// modbusTimeoutDefault is the per-request timeout when none is set: a
// healthy device answers in tens of milliseconds.
const modbusTimeoutDefault = time.Second
