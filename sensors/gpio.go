package sensors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	_ "periph.io/x/host/v3/gpioioctl" // GPIO character device (/dev/gpiochip*)
)

// GPIOOptions configures one input line.
//
// mode level: a contact (door, float switch). The state is published on
// every debounced change and at each interval.
//
// mode counter: pulses (S0 energy/water meters). Publishes the count since
// the driver opened and the rate over the last interval.
type GPIOOptions struct {
	Pin  string `yaml:"pin"`  // line name, e.g. GPIO17 (BCM numbering on a Pi)
	Mode string `yaml:"mode"` // level | counter
	Pull string `yaml:"pull"` // up | down | none
	// Edge counted in counter mode: falling (S0 pulls the line low), rising.
	Edge string `yaml:"edge"`
	// Debounce: level mode waits this long for the contact to settle;
	// counter mode ignores edges closer than this to the last counted one.
	Debounce time.Duration `yaml:"debounce"`
	Invert   bool          `yaml:"invert"` // level: report 1 when the line is low
	// UnitsPerPulse and Unit turn pulses into a quantity (1000 imp/kWh:
	// 0.001 kWh); the rate is then unit/h.
	UnitsPerPulse float64 `yaml:"units_per_pulse"`
	Unit          string  `yaml:"unit"`
}

// Validate implements the options check.
func (o *GPIOOptions) Validate() error {
	if o.Pin == "" {
		return errors.New("pin: required, e.g. GPIO17; `edge-agent sensors scan` lists the lines")
	}
	if _, ok := pulls[o.Pull]; !ok {
		return fmt.Errorf("pull: %q: want up, down or none", o.Pull)
	}
	switch o.Mode {
	case "level":
		if o.Debounce == 0 {
			o.Debounce = 50 * time.Millisecond
		}
	case "counter":
		if o.Debounce == 0 {
			o.Debounce = 10 * time.Millisecond
		}
		if o.Edge != "falling" && o.Edge != "rising" {
			return fmt.Errorf("edge: %q: want falling or rising", o.Edge)
		}
		if o.UnitsPerPulse < 0 {
			return errors.New("units_per_pulse: must not be negative")
		}
	default:
		return fmt.Errorf("mode: %q: want level or counter", o.Mode)
	}
	if o.Debounce < 0 || o.Debounce > time.Second {
		return fmt.Errorf("debounce: %s: want 0..1s", o.Debounce)
	}
	return nil
}

var pulls = map[string]gpio.Pull{"up": gpio.PullUp, "down": gpio.PullDown, "none": gpio.Float}

func init() {
	Register(Registration{
		Name:    "gpio",
		Options: func() any { return &GPIOOptions{Mode: "level", Pull: "up", Edge: "falling"} },
		New: func(c Config, o any, _ Env) (Driver, error) {
			opts := o.(*GPIOOptions)
			p, err := openPin(opts.Pin)
			if err != nil {
				return nil, err
			}
			return newGPIO(p, opts, c.Interval)
		},
		Sample: `# A GPIO input through the kernel's GPIO character device (/dev/gpiochip*).
# The agent's user needs group gpio.
# mode level: a contact; metrics state (0/1) and changes; published on every
# debounced change and at each interval.
- name: cold-room-door
  driver: gpio
  interval: 60s
  pin: GPIO17              # line name (BCM numbering on a Raspberry Pi)
  mode: level
  pull: up                 # up | down | none; a contact to GND with pull-up reads 1 when open
  debounce: 50ms
  # invert: true           # report 1 when the line is low
  alert_metric: state
  alert_above: 0.5         # alerts.cold-room-door while the door is open
# mode counter: S0 pulse output of an energy or water meter; metrics count
# (since the agent opened the line), rate (per hour), total (count x units_per_pulse).
- name: main-meter
  driver: gpio
  interval: 60s
  pin: GPIO27
  mode: counter
  pull: up
  edge: falling            # S0 pulls the line low for each pulse
  debounce: 10ms           # edges closer than this to the last one are bounce
  units_per_pulse: 0.001   # 1000 imp/kWh
  unit: kWh
`,
	})
}

var periphInit = sync.OnceValue(func() error {
	_, err := driverreg.Init()
	return err
})

// openPin finds a line by name. Permission problems on the chip devices
// are reported first: they are why a name would be missing.
func openPin(name string) (gpio.PinIO, error) {
	chips, _ := filepath.Glob("/dev/gpiochip*")
	if len(chips) == 0 {
		return nil, fmt.Errorf("GPIO pin %s: this device has no /dev/gpiochip*: no GPIO controller (or the kernel lacks CONFIG_GPIO_CDEV)", name)
	}
	for _, c := range chips {
		if err := deviceAccess(c, "gpio", "the GPIO controller is missing"); err != nil {
			if errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), "permission denied") {
				return nil, err
			}
		}
	}
	if err := periphInit(); err != nil {
		return nil, fmt.Errorf("GPIO: %w", err)
	}
	if p := gpioreg.ByName(name); p != nil {
		return p, nil
	}
	var names []string
	for _, p := range gpioreg.All() {
		names = append(names, p.Name())
	}
	sort.Strings(names)
	if len(names) > 12 {
		names = append(names[:12], "...")
	}
	return nil, fmt.Errorf("GPIO pin %q not found; lines: %s (`edge-agent sensors scan` lists them all)", name, strings.Join(names, " "))
}

type gpioDriver struct {
	pin  gpio.PinIn
	opts GPIOOptions

	changed chan struct{}
	stop    chan struct{}
	done    chan struct{}

	mu       sync.Mutex
	stable   gpio.Level
	changes  uint64
	count    uint64
	lastEdge time.Time
	// rate bookkeeping: count and time at the previous Read.
	prevCount uint64
	prevRead  time.Time
}

// newGPIO configures the line and starts watching edges until Close.
func newGPIO(p gpio.PinIn, o *GPIOOptions, iv time.Duration) (*gpioDriver, error) {
	edge := gpio.BothEdges
	if o.Mode == "counter" {
		edge = map[string]gpio.Edge{"falling": gpio.FallingEdge, "rising": gpio.RisingEdge}[o.Edge]
	}
	if err := p.In(pulls[o.Pull], edge); err != nil {
		return nil, fmt.Errorf("GPIO %s: configure as input with edge detection: %w (is the line used by another program or an overlay?)", p.Name(), err)
	}
	d := &gpioDriver{pin: p, opts: *o, changed: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	d.stable = p.Read()
	d.prevRead = time.Now()
	go d.watch()
	return d, nil
}

// watch consumes edges. WaitForEdge has a timeout so Close is noticed.
func (d *gpioDriver) watch() {
	defer close(d.done)
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		if !d.pin.WaitForEdge(100 * time.Millisecond) {
			continue
		}
		if d.opts.Mode == "counter" {
			d.countEdge()
		} else {
			d.settle()
		}
	}
}

// countEdge counts an edge unless it follows the last counted one within
// the debounce time (contact bounce on the meter's output).
func (d *gpioDriver) countEdge() {
	t := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.lastEdge.IsZero() && t.Sub(d.lastEdge) < d.opts.Debounce {
		return
	}
	d.lastEdge = t
	d.count++
}

// settle waits out the bounce, swallowing the edges it produces, then
// takes the line's level as the new state.
func (d *gpioDriver) settle() {
	deadline := time.After(d.opts.Debounce)
	for {
		select {
		case <-d.stop:
			return
		case <-deadline:
			d.mu.Lock()
			l := d.pin.Read()
			changed := l != d.stable
			if changed {
				d.stable = l
				d.changes++
			}
			d.mu.Unlock()
			if changed {
				select {
				case d.changed <- struct{}{}:
				default:
				}
			}
			return
		default:
		}
		d.pin.WaitForEdge(time.Millisecond)
	}
}

func (d *gpioDriver) Changed() <-chan struct{} { return d.changed }

func (d *gpioDriver) Read(ctx context.Context) (map[string]Value, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.Mode == "counter" {
		t := time.Now()
		n := d.count
		out := map[string]Value{"count": {V: float64(n), Unit: "pulses"}}
		if dt := t.Sub(d.prevRead).Hours(); dt > 0 && !d.prevRead.IsZero() {
			rate := float64(n-d.prevCount) / dt
			unit := "pulses/h"
			if d.opts.UnitsPerPulse > 0 {
				rate *= d.opts.UnitsPerPulse
				unit = d.opts.Unit + "/h"
			}
			out["rate"] = Value{V: round(rate, 4), Unit: unit}
		}
		if d.opts.UnitsPerPulse > 0 {
			out["total"] = Value{V: round(float64(n)*d.opts.UnitsPerPulse, 6), Unit: d.opts.Unit}
		}
		d.prevCount, d.prevRead = n, t
		return out, nil
	}
	// The periodic read reconciles: a level that differs from the tracked
	// state means an edge was lost (kernel event queue overflow, or a change
	// shorter than the debounce); take the line's word for it and say so.
	v := Value{}
	if l := d.pin.Read(); l != d.stable {
		d.stable = l
		d.changes++
		v.Flag = "missed_edge"
	}
	v.V = 0
	if (d.stable == gpio.High) != d.opts.Invert {
		v.V = 1
	}
	return map[string]Value{"state": v, "changes": {V: float64(d.changes)}}, nil
}

func (d *gpioDriver) Close() error {
	close(d.stop)
	<-d.done
	return d.pin.Halt()
}
