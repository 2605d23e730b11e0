package sensors

import (
	"context"
	"fmt"
	"slices"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ads1x15"
)

// ADS1x15Options configures a TI ADS1115 (16 bit) or ADS1015 (12 bit) ADC
// on I2C, one metric per channel, each scaled linearly to engineering
// units (e.g. a 4-20 mA probe over a 150 ohm shunt: 0.6-3.0 V -> 0-10 bar).
type ADS1x15Options struct {
	I2COptions `yaml:",inline"`
	Chip       string          `yaml:"chip"`
	Channels   []ADCChannelOpt `yaml:"channels"`
}

// ADCChannelOpt is one single-ended input.
type ADCChannelOpt struct {
	Channel int    `yaml:"channel"` // 0-3, single-ended against GND
	Metric  string `yaml:"metric"`
	Unit    string `yaml:"unit"`
	// MaxVoltage picks the gain: 6.144, 4.096, 2.048, 1.024, 0.512, 0.256.
	MaxVoltage float64 `yaml:"max_voltage"`
	// DataRate in samples/s (ADS1115: 8..860, ADS1015: 128..3300); slower
	// is less noisy, and a read waits one conversion.
	DataRate int `yaml:"data_rate"`
	// In and Out map volts to units linearly; empty: the metric is volts.
	// A reading more than 2.5% of the span outside In is flagged
	// under_range/over_range (a 4-20 mA loop at 0 mA is a broken wire).
	In  []float64 `yaml:"in"`
	Out []float64 `yaml:"out"`
}

var adcGains = []float64{6.144, 4.096, 2.048, 1.024, 0.512, 0.256}
var adcRates = map[string][]int{
	"ads1115": {8, 16, 32, 64, 128, 250, 475, 860},
	"ads1015": {128, 250, 490, 920, 1600, 2400, 3300},
}

// Validate implements the options check.
func (o *ADS1x15Options) Validate() error {
	if err := o.validate(0x48, 0x49, 0x4a, 0x4b); err != nil {
		return err
	}
	rates, ok := adcRates[o.Chip]
	if !ok {
		return fmt.Errorf("chip: %q: want ads1115 or ads1015", o.Chip)
	}
	if len(o.Channels) == 0 {
		return fmt.Errorf("channels: at least one, e.g. [{channel: 0, metric: pressure, unit: bar, in: [0.6, 3.0], out: [0, 10]}]")
	}
	seen := map[string]bool{}
	for i := range o.Channels {
		c := &o.Channels[i]
		key := fmt.Sprintf("channels[%d]", i)
		if c.Channel < 0 || c.Channel > 3 {
			return fmt.Errorf("%s.channel: %d: want 0-3", key, c.Channel)
		}
		if c.Metric == "" {
			c.Metric = fmt.Sprintf("ch%d", c.Channel)
		}
		if seen[c.Metric] {
			return fmt.Errorf("%s.metric: %q used twice", key, c.Metric)
		}
		seen[c.Metric] = true
		if c.MaxVoltage == 0 {
			c.MaxVoltage = 4.096
		}
		if !slices.Contains(adcGains, c.MaxVoltage) {
			return fmt.Errorf("%s.max_voltage: %g: want one of %v", key, c.MaxVoltage, adcGains)
		}
		if c.DataRate == 0 {
			c.DataRate = 128
		}
		if !slices.Contains(rates, c.DataRate) {
			return fmt.Errorf("%s.data_rate: %d: the %s supports %v", key, c.DataRate, o.Chip, rates)
		}
		switch {
		case len(c.In) == 0 && len(c.Out) == 0:
			if c.Unit == "" {
				c.Unit = "V"
			}
		case len(c.In) != 2 || len(c.Out) != 2 || c.In[0] == c.In[1]:
			return fmt.Errorf("%s: in and out are two-point ranges such as in: [0.6, 3.0], out: [0, 10]", key)
		case c.In[0] < 0 || c.In[1] > c.MaxVoltage || c.In[0] > c.MaxVoltage:
			return fmt.Errorf("%s.in: %v must lie within 0..max_voltage (%g V)", key, c.In, c.MaxVoltage)
		}
	}
	return nil
}

type adcPin struct {
	opt ADCChannelOpt
	pin ads1x15.PinADC
}

type ads1x15Driver struct {
	bus  i2c.BusCloser
	chip string
	addr uint16
	pins []adcPin
}

func init() {
	Register(Registration{
		Name: "ads1x15",
		Options: func() any {
			return &ADS1x15Options{I2COptions: I2COptions{Bus: "/dev/i2c-1", Address: 0x48}, Chip: "ads1115"}
		},
		New: func(c Config, o any, _ Env) (Driver, error) {
			opts := o.(*ADS1x15Options)
			bus, err := openI2C(opts.I2COptions)
			if err != nil {
				return nil, err
			}
			d, err := newADS1x15(bus, opts)
			if err != nil {
				_ = bus.Close()
				return nil, err
			}
			return d, nil
		},
		Sample: `# TI ADS1115 (16 bit) / ADS1015 (12 bit) ADC on I2C; one metric per channel.
- name: tank-pressure
  driver: ads1x15
  interval: 5s
  bus: /dev/i2c-1
  address: 0x48            # 0x48-0x4B (ADDR pin)
  chip: ads1115            # or ads1015
  channels:
    - channel: 0           # A0 against GND
      metric: pressure
      unit: bar
      max_voltage: 4.096   # gain: 6.144 4.096 2.048 1.024 0.512 0.256 (full scale, V)
      data_rate: 128       # samples/s; ADS1115 8..860, ADS1015 128..3300
      in: [0.6, 3.0]       # 4-20 mA over a 150 ohm shunt ...
      out: [0, 10]         # ... is 0-10 bar; under 4 mA is flagged under_range
    - {channel: 1, metric: supply, unit: V}   # no in/out: volts
  # alert_metric: pressure
  # alert_above: 8.5
`,
	})
}

// newADS1x15 prepares one periph pin per channel on an open bus. The chip
// has no id register, so a wrong address shows as a NACK at the first read.
func newADS1x15(bus i2c.BusCloser, o *ADS1x15Options) (*ads1x15Driver, error) {
	var dev *ads1x15.Dev
	var err error
	popts := &ads1x15.Opts{I2cAddress: o.Address}
	if o.Chip == "ads1015" {
		dev, err = ads1x15.NewADS1015(bus, popts)
	} else {
		dev, err = ads1x15.NewADS1115(bus, popts)
	}
	if err != nil {
		return nil, i2cErr(o.Chip, o.Address, "init", err)
	}
	d := &ads1x15Driver{bus: bus, chip: o.Chip, addr: o.Address}
	for _, c := range o.Channels {
		maxV := physic.ElectricPotential(c.MaxVoltage*1000) * physic.MilliVolt
		pin, err := dev.PinForChannel(ads1x15.Channel0+ads1x15.Channel(c.Channel), maxV, physic.Frequency(c.DataRate)*physic.Hertz, ads1x15.BestQuality)
		if err != nil {
			return nil, fmt.Errorf("%s channel %d: %w", o.Chip, c.Channel, err)
		}
		d.pins = append(d.pins, adcPin{opt: c, pin: pin})
	}
	return d, nil
}

func (d *ads1x15Driver) Read(ctx context.Context) (map[string]Value, error) {
	out := make(map[string]Value, len(d.pins))
	for _, p := range d.pins {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := p.pin.Read()
		if err != nil {
			return nil, i2cErr(d.chip, d.addr, fmt.Sprintf("read channel %d", p.opt.Channel), err)
		}
		out[p.opt.Metric] = p.opt.scale(float64(s.V) / float64(physic.Volt))
	}
	return out, nil
}

// scale maps volts to units and flags readings outside the input range.
func (c ADCChannelOpt) scale(volts float64) Value {
	if len(c.In) != 2 {
		return Value{V: round(volts, 4), Unit: c.Unit}
	}
	lo, hi := min(c.In[0], c.In[1]), max(c.In[0], c.In[1])
	v := Value{V: round(c.Out[0]+(volts-c.In[0])*(c.Out[1]-c.Out[0])/(c.In[1]-c.In[0]), 4), Unit: c.Unit}
	margin := 0.025 * (hi - lo)
	switch {
	case volts < lo-margin:
		v.Flag = "under_range"
	case volts > hi+margin:
		v.Flag = "over_range"
	}
	return v
}

func (d *ads1x15Driver) Close() error { return d.bus.Close() }
