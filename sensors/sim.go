package sensors

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
)

// SimOptions configures the simulated sensor used by `make run`, demos and
// tests: a deterministic, seeded walk so runs can be compared.
type SimOptions struct {
	Seed uint64 `yaml:"seed"`
	// Metric names and their base values; default a cold-room temperature.
	Base map[string]float64 `yaml:"base"`
	Unit string             `yaml:"unit"`
	// Amplitude of the daily-looking sine swing added to each base.
	Amplitude float64 `yaml:"amplitude"`
	// FailEvery makes every Nth read fail, to exercise error paths.
	FailEvery int `yaml:"fail_every"`
}

// Validate implements the options check.
func (o *SimOptions) Validate() error {
	if o.FailEvery < 0 {
		return fmt.Errorf("fail_every must not be negative")
	}
	return nil
}

type simDriver struct {
	mu   sync.Mutex
	opts SimOptions
	rng  *rand.Rand
	n    int
}

func init() {
	Register(Registration{
		Name:    "sim",
		Options: func() any { return &SimOptions{Seed: 1, Amplitude: 2} },
		New: func(c Config, o any, _ Env) (Driver, error) {
			opts := *o.(*SimOptions)
			if len(opts.Base) == 0 {
				opts.Base, opts.Unit = map[string]float64{"temperature": 4.0}, "C"
			}
			return &simDriver{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, uint64(len(c.Name))))}, nil
		},
		Sample: `# Simulated sensor: deterministic readings for demos and tests.
- name: demo
  driver: sim
  interval: 1s
  seed: 42                 # same seed, same readings
  base: {temperature: 4.0} # metric -> base value
  unit: C
  amplitude: 2             # sine swing around the base
  # fail_every: 10         # every 10th read fails (exercise error paths)
`,
	})
}

func (d *simDriver) Read(ctx context.Context) (map[string]Value, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	if d.opts.FailEvery > 0 && d.n%d.opts.FailEvery == 0 {
		return nil, fmt.Errorf("sim: injected failure on read %d", d.n)
	}
	out := make(map[string]Value, len(d.opts.Base))
	for k, b := range d.opts.Base {
		v := b + d.opts.Amplitude*math.Sin(float64(d.n)/30) + (d.rng.Float64()-0.5)*0.1
		out[k] = Value{V: math.Round(v*100) / 100, Unit: d.opts.Unit}
	}
	return out, nil
}

func (d *simDriver) Close() error { return nil }
