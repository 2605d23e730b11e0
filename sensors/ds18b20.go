package sensors

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DS18B20Options configures a Maxim DS18B20 1-Wire thermometer read
// through the Linux w1-gpio/w1-therm sysfs interface (dtoverlay=w1-gpio).
type DS18B20Options struct {
	// ID is the device directory, e.g. 28-0316a2799aff; empty picks the
	// only 28-* device present (an error if there are several).
	ID string `yaml:"id"`
	// Root is where w1 devices appear; tests point it at a fake tree.
	Root string `yaml:"root"`
}

// Validate implements the options check.
func (o *DS18B20Options) Validate() error {
	if o.ID != "" && !strings.HasPrefix(o.ID, "28-") {
		return fmt.Errorf("id: %q: a DS18B20 id starts with 28- (family code); `edge-agent sensors scan` lists them", o.ID)
	}
	return nil
}

// powerOnReset is what a DS18B20 reports when it was reset (brown-out,
// loose power wire) and has not converted since: never a real reading in a
// store.
const powerOnReset = 85000

type ds18b20 struct{ file string }

func init() {
	Register(Registration{
		Name:    "ds18b20",
		Options: func() any { return &DS18B20Options{Root: "/sys/bus/w1/devices"} },
		New: func(c Config, o any, _ Env) (Driver, error) {
			opts := o.(*DS18B20Options)
			id, err := opts.pick()
			if err != nil {
				return nil, err
			}
			return &ds18b20{file: filepath.Join(opts.Root, id, "w1_slave")}, nil
		},
		Sample: `# Maxim DS18B20 1-Wire thermometer via the kernel's w1-therm driver.
# Enable: dtoverlay=w1-gpio (data on GPIO4, 4.7k pull-up to 3.3V) in
# /boot/firmware/config.txt, reboot; devices appear in /sys/bus/w1/devices/28-*.
# Metric: temperature (C). A conversion takes ~750 ms: keep interval >= 2s.
- name: freezer
  driver: ds18b20
  interval: 30s
  id: 28-0316a2799aff      # omit when there is exactly one sensor on the bus
  # alert_above: -15
  # hysteresis: 1
`,
	})
}

func (o *DS18B20Options) pick() (string, error) {
	if o.ID != "" {
		if _, err := os.Stat(filepath.Join(o.Root, o.ID)); err != nil {
			return "", fmt.Errorf("1-Wire device %s not found in %s: check wiring and the 4.7k pull-up; `edge-agent sensors scan` lists what is present", o.ID, o.Root)
		}
		return o.ID, nil
	}
	ids, _ := filepath.Glob(filepath.Join(o.Root, "28-*"))
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("no DS18B20 (28-*) in %s: enable 1-Wire with dtoverlay=w1-gpio in /boot/firmware/config.txt and check wiring", o.Root)
	case 1:
		return filepath.Base(ids[0]), nil
	}
	for i := range ids {
		ids[i] = filepath.Base(ids[i])
	}
	return "", fmt.Errorf("%d DS18B20 on the bus (%s): set id to the one this sensor is", len(ids), strings.Join(ids, ", "))
}

// Read parses w1_slave:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
func (d *ds18b20) Read(ctx context.Context) (map[string]Value, error) {
	b, err := os.ReadFile(d.file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w (device gone from the bus?)", d.file, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("%s: short read %q", d.file, b)
	}
	if !strings.HasSuffix(strings.TrimSpace(lines[0]), "YES") {
		return nil, fmt.Errorf("%s: CRC check failed (%q): noise on the 1-Wire line; check the pull-up and cable length", d.file, strings.TrimSpace(lines[0]))
	}
	_, t, ok := strings.Cut(lines[1], "t=")
	if !ok {
		return nil, fmt.Errorf("%s: no t= in %q", d.file, lines[1])
	}
	milli, err := strconv.Atoi(strings.TrimSpace(t))
	if err != nil {
		return nil, fmt.Errorf("%s: bad temperature %q", d.file, t)
	}
	if milli == powerOnReset {
		return nil, fmt.Errorf("%s: 85.000 C is the power-on reset value, not a reading: the sensor lost power (check the supply wire or use 3-wire mode)", d.file)
	}
	return map[string]Value{"temperature": {V: float64(milli) / 1000, Unit: "C"}}, nil
}

func (d *ds18b20) Close() error { return nil }
