package sensors

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

func gpioPin() *gpiotest.Pin {
	return &gpiotest.Pin{N: "GPIO17", EdgesChan: make(chan gpio.Level, 16)}
}

func gpioOpts(t *testing.T, o GPIOOptions) *GPIOOptions {
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	return &o
}

// The GPIO tests run in a synctest bubble: time moves only when every
// goroutine waits, so a debounce is exactly as long as configured and
// synctest.Wait says the driver has taken every edge it was given.
func TestGPIOLevelDebounceAndMissedEdge(t *testing.T) {
	synctest.Test(t, testGPIOLevelDebounceAndMissedEdge)
}

func testGPIOLevelDebounceAndMissedEdge(t *testing.T) {
	p := gpioPin()
	d, err := newGPIO(p, gpioOpts(t, GPIOOptions{Pin: "GPIO17", Mode: "level", Pull: "up"}), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	read := func() map[string]Value {
		v := mustRead(t, d)
		return v
	}
	if v := read(); v["state"] != (Value{V: 1}) || v["changes"].V != 0 {
		t.Fatalf("pulled up, closed contact open: %v", v)
	}

	// The door closes with contact bounce: five edges inside the debounce.
	for _, l := range []gpio.Level{gpio.Low, gpio.High, gpio.Low, gpio.High, gpio.Low} {
		p.EdgesChan <- l
	}
	synctest.Wait()
	select {
	case <-d.Changed():
		t.Fatal("change signalled before the contact settled")
	default:
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case <-d.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("no change signalled after the debounce")
	}
	if v := read(); v["state"] != (Value{V: 0}) || v["changes"].V != 1 {
		t.Fatalf("after bounce: %v (want one change)", v)
	}

	// An edge the kernel never delivered: the periodic read notices.
	p.Lock()
	p.L = gpio.High
	p.Unlock()
	if v := read(); v["state"] != (Value{V: 1, Flag: "missed_edge"}) || v["changes"].V != 2 {
		t.Fatalf("missed edge: %v", v)
	}
	if v := read(); v["state"].Flag != "" {
		t.Fatalf("flag must clear once reconciled: %v", v)
	}
}

func TestGPIOInvert(t *testing.T) {
	p := gpioPin()
	d, err := newGPIO(p, gpioOpts(t, GPIOOptions{Pin: "GPIO17", Mode: "level", Pull: "up", Invert: true}), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if v, _ := d.Read(context.Background()); v["state"].V != 0 {
		t.Fatalf("inverted high: %v", v)
	}
}

func TestGPIOCounterDebounceAndRate(t *testing.T) { synctest.Test(t, testGPIOCounterDebounceAndRate) }

func testGPIOCounterDebounceAndRate(t *testing.T) {
	p := gpioPin()
	t0 := time.Now()
	d, err := newGPIO(p, gpioOpts(t, GPIOOptions{Pin: "GPIO27", Mode: "counter", Pull: "up", Edge: "falling", UnitsPerPulse: 0.001, Unit: "kWh"}), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	count := func() uint64 { d.mu.Lock(); defer d.mu.Unlock(); return d.count }

	// One pulse that bounces: the clock does not move, so every edge after
	// the first is inside the 10ms debounce.
	for range 5 {
		p.EdgesChan <- gpio.Low
	}
	synctest.Wait()
	if count() != 1 {
		t.Fatalf("count %d after one bouncing pulse, want 1", count())
	}
	// Two real pulses, well apart.
	for i := 1; i <= 2; i++ {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * time.Second)))
		p.EdgesChan <- gpio.Low
		synctest.Wait()
		if count() != uint64(1+i) {
			t.Fatalf("count %d after pulse %d, want %d", count(), i, 1+i)
		}
	}
	if count() != 3 {
		t.Fatalf("count %d, want 3 (bounce counted?)", count())
	}
	time.Sleep(time.Until(t0.Add(30 * time.Minute)))
	v := mustRead(t, d)
	// 3 pulses of 0.001 kWh in half an hour: 0.006 kWh/h.
	if v["count"].V != 3 || v["total"] != (Value{V: 0.003, Unit: "kWh"}) || v["rate"] != (Value{V: 0.006, Unit: "kWh/h"}) {
		t.Fatalf("got %v", v)
	}
	time.Sleep(time.Until(t0.Add(60 * time.Minute)))
	if v, _ := d.Read(context.Background()); v["rate"].V != 0 || v["count"].V != 3 {
		t.Fatalf("no pulses in the next interval: %v", v)
	}
}

func TestGPIOOptionErrors(t *testing.T) {
	for _, c := range []struct {
		o    GPIOOptions
		want string
	}{
		{GPIOOptions{Mode: "level", Pull: "up"}, "pin: required"},
		{GPIOOptions{Pin: "GPIO4", Mode: "toggle", Pull: "up"}, "mode: \"toggle\""},
		{GPIOOptions{Pin: "GPIO4", Mode: "level", Pull: "sideways"}, "pull: \"sideways\""},
		{GPIOOptions{Pin: "GPIO4", Mode: "counter", Pull: "up", Edge: "both"}, "edge: \"both\""},
		{GPIOOptions{Pin: "GPIO4", Mode: "level", Pull: "up", Debounce: 2 * time.Second}, "debounce"},
	} {
		if err := c.o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
	// This machine has no GPIO controller: the error says so.
	if _, err := openPin("GPIO17"); err == nil || !strings.Contains(err.Error(), "gpiochip") {
		t.Fatalf("openPin on a machine without GPIO: %v", err)
	}
}
