package sensors

import (
	"context"
	"fmt"
	"strings"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
)

// BMX280Options configures a Bosch BME280 (temperature, humidity,
// pressure) or BMP280 (no humidity) on I2C.
type BMX280Options struct {
	I2COptions `yaml:",inline"`
	// Oversampling per measurement: 1, 2, 4, 8 or 16 (more = less noise,
	// longer conversion); 0 turns pressure or humidity off.
	OversampleTemperature int `yaml:"oversample_temperature"`
	OversamplePressure    int `yaml:"oversample_pressure"`
	OversampleHumidity    int `yaml:"oversample_humidity"`
	// Filter is the chip's IIR filter coefficient (0 off, 2, 4, 8, 16); it
	// needs standby (continuous mode) to have an effect.
	Filter  int           `yaml:"filter"`
	Standby time.Duration `yaml:"standby"`
}

var oversampling = map[int]bmxx80.Oversampling{0: bmxx80.Off, 1: bmxx80.O1x, 2: bmxx80.O2x, 4: bmxx80.O4x, 8: bmxx80.O8x, 16: bmxx80.O16x}
var filters = map[int]bmxx80.Filter{0: bmxx80.NoFilter, 2: bmxx80.F2, 4: bmxx80.F4, 8: bmxx80.F8, 16: bmxx80.F16}

// Validate implements the options check.
func (o *BMX280Options) Validate() error {
	if err := o.validate(0x76, 0x77); err != nil {
		return err
	}
	for _, k := range []struct {
		key string
		v   int
	}{{"oversample_temperature", o.OversampleTemperature}, {"oversample_pressure", o.OversamplePressure}, {"oversample_humidity", o.OversampleHumidity}} {
		if _, ok := oversampling[k.v]; !ok {
			return fmt.Errorf("%s: %d is not one of 0, 1, 2, 4, 8, 16", k.key, k.v)
		}
	}
	if o.OversampleTemperature == 0 {
		return fmt.Errorf("oversample_temperature: 0 is not allowed: pressure and humidity are compensated with temperature")
	}
	if _, ok := filters[o.Filter]; !ok {
		return fmt.Errorf("filter: %d is not one of 0, 2, 4, 8, 16", o.Filter)
	}
	if o.Filter != 0 && o.Standby <= 0 {
		return fmt.Errorf("filter: needs standby (e.g. 500ms): the chip filters only in continuous mode")
	}
	return nil
}

func (o *BMX280Options) opts() *bmxx80.Opts {
	return &bmxx80.Opts{
		Temperature: oversampling[o.OversampleTemperature],
		Pressure:    oversampling[o.OversamplePressure],
		Humidity:    oversampling[o.OversampleHumidity],
		Filter:      filters[o.Filter],
		Standby:     o.Standby,
	}
}

type bmx280 struct {
	bus  i2c.BusCloser
	dev  *bmxx80.Dev
	addr uint16
	chip string
}

func init() {
	for _, name := range []string{"bme280", "bmp280"} {
		Register(Registration{
			Name: name,
			Options: func() any {
				return &BMX280Options{I2COptions: I2COptions{Bus: "/dev/i2c-1", Address: 0x76},
					OversampleTemperature: 4, OversamplePressure: 4, OversampleHumidity: 4}
			},
			New: func(c Config, o any, _ Env) (Driver, error) {
				opts := o.(*BMX280Options)
				bus, err := openI2C(opts.I2COptions)
				if err != nil {
					return nil, err
				}
				d, err := newBMX280(bus, name, opts)
				if err != nil {
					_ = bus.Close()
					return nil, err
				}
				return d, nil
			},
			Sample: strings.ReplaceAll(bmx280Sample, "DRIVER", name),
		})
	}
}

const bmx280Sample = `# Bosch BME280 (temperature, humidity, pressure) or BMP280 (no humidity) on I2C.
# Metrics: temperature (C), pressure (hPa), humidity (%RH, BME280 only).
- name: cold-room
  driver: DRIVER
  interval: 10s
  bus: /dev/i2c-1            # enable with raspi-config; the agent's user needs group i2c
  address: 0x76              # 0x76 (SDO to GND) or 0x77 (SDO to VCC)
  oversample_temperature: 4  # 1, 2, 4, 8, 16
  oversample_pressure: 4     # 0 (off), 1, 2, 4, 8, 16
  oversample_humidity: 4     # 0 (off), 1, 2, 4, 8, 16; ignored on a BMP280
  # filter: 4                # IIR filter 2..16, with standby: continuous mode
  # standby: 500ms
  # alert_above: 8           # alerts.cold-room when temperature > 8 C ...
  # hysteresis: 0.5          # ... cleared below 7.5 C
`

// newBMX280 initialises the chip on an open bus (tests pass a recording).
// The chip id decides: a driver name that does not match the chip is an
// error, because a BMP280 silently has no humidity.
func newBMX280(bus i2c.BusCloser, driver string, o *BMX280Options) (*bmx280, error) {
	dev, err := bmxx80.NewI2C(bus, o.Address, o.opts())
	if err != nil {
		return nil, i2cErr(strings.ToUpper(driver), o.Address, "init", err)
	}
	chip, _, _ := strings.Cut(dev.String(), "{")
	if !strings.EqualFold(chip, driver) {
		_ = dev.Halt()
		return nil, fmt.Errorf("address 0x%02x answers as a %s, not a %s: use driver: %s", o.Address, chip, strings.ToUpper(driver), strings.ToLower(chip))
	}
	return &bmx280{bus: bus, dev: dev, addr: o.Address, chip: chip}, nil
}

func (d *bmx280) Read(ctx context.Context) (map[string]Value, error) {
	var e physic.Env
	if err := d.dev.Sense(&e); err != nil {
		return nil, i2cErr(d.chip, d.addr, "read", err)
	}
	out := map[string]Value{
		"temperature": {V: round(e.Temperature.Celsius(), 2), Unit: "C"},
	}
	if e.Pressure != 0 {
		out["pressure"] = Value{V: round(float64(e.Pressure)/float64(100*physic.Pascal), 2), Unit: "hPa"}
	}
	if d.chip == "BME280" && e.Humidity != 0 {
		out["humidity"] = Value{V: round(float64(e.Humidity)/float64(physic.PercentRH), 2), Unit: "%RH"}
	}
	return out, nil
}

func (d *bmx280) Close() error {
	_ = d.dev.Halt()
	return d.bus.Close()
}
