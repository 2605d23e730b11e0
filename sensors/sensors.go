// Package sensors reads the site's own hardware (GPIO, I2C, 1-Wire, the
// gateway itself) through drivers that register by name, and samples them
// into the local TELEMETRY/ALERTS streams so that a failing sensor degrades
// only itself.
package sensors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/edge-agent/edge-agent/internal/confkit"
	"github.com/edge-agent/edge-agent/internal/yamlcheck"
)

// Value is one metric of a reading.
type Value struct {
	V    float64 `json:"v"`
	Unit string  `json:"unit,omitempty"`
	// Flag marks a value the driver read but does not vouch for (e.g.
	// "under_range": a 4-20 mA loop below 3.8 mA is a broken wire, not a
	// pressure). Any flag makes the reading's quality "degraded".
	Flag string `json:"flag,omitempty"`
}

// Driver reads one configured sensor. Read should honour ctx; the sampler
// does not rely on it: a read that outlives its timeout is abandoned and
// the driver is reopened once that read finally returns.
type Driver interface {
	Read(ctx context.Context) (map[string]Value, error)
	Close() error
}

// Notifier is implemented by drivers that see events between scheduled
// reads (a door contact): when Changed fires the sampler reads at once,
// and the schedule of periodic readings stays as it was.
type Notifier interface {
	Changed() <-chan struct{}
}

// Env is what the agent knows that a driver may need. Drivers receive it
// at open time, so their options stay about the hardware.
type Env struct {
	// StateDir is the agent's state_dir (the system driver reports its free
	// space: a full store is what stops buffering).
	StateDir string
}

// Registration describes a driver: how to build it and a commented sample
// config printed by `edge-agent sensors sample NAME`.
type Registration struct {
	Name string
	// Options returns a pointer to a fresh, defaulted options struct with yaml
	// tags; the registry decodes the sensor's driver keys into it strictly.
	Options func() any
	// New opens the hardware. It runs in the sensor's loop, not at start:
	// an error (bus missing, permission denied) shows in status and the
	// sampler retries with backoff, so enabling the bus later recovers.
	New func(c Config, opts any, env Env) (Driver, error)
	// Write, if set, sets one of the sensor's metrics on the device (local
	// control); it must refuse a metric the config does not declare
	// writable, naming it.
	Write  func(ctx context.Context, c Config, opts any, metric string, value float64) error
	Sample string
}

var (
	regMu    sync.RWMutex
	registry = map[string]Registration{}
)

// Register adds a driver; drivers call it from init().
func Register(r Registration) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[r.Name]; dup {
		panic("sensors: driver registered twice: " + r.Name)
	}
	registry[r.Name] = r
}

// Drivers lists registered driver names, sorted.
func Drivers() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns a driver registration by name.
func Lookup(name string) (Registration, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	r, ok := registry[name]
	return r, ok
}

// Config is one entry of the `sensors:` list. Keys other than the common
// ones belong to the driver and are decoded strictly by it.
type Config struct {
	Name     string        `yaml:"name"`
	Driver   string        `yaml:"driver"`
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	// Threshold rules: a value crossing them publishes to alerts.<name>.
	AlertAbove *float64 `yaml:"alert_above"`
	AlertBelow *float64 `yaml:"alert_below"`
	Hysteresis float64  `yaml:"hysteresis"`
	// AlertMetric picks the metric the thresholds apply to; default: the
	// driver's first metric in name order.
	AlertMetric string `yaml:"alert_metric"`

	// Options holds the driver's own keys, decoded on Validate.
	Options any `yaml:"-"`
	node    *yaml.Node
}

var commonKeys = fieldKeys(reflect.TypeOf(Config{}))

// UnmarshalYAML keeps the driver keys aside for the driver to decode, so
// each driver's keys are checked against its own options, not a union.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errors.New("a sensor is a mapping such as {name: demo, driver: sim}")
	}
	common := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		dst := rest
		if commonKeys[n.Content[i].Value] {
			dst = common
		}
		dst.Content = append(dst.Content, n.Content[i], n.Content[i+1])
	}
	type plain Config
	p := plain(*c)
	if err := common.Decode(&p); err != nil {
		return err
	}
	*c = Config(p)
	c.node = rest
	return nil
}

// MarshalYAML prints the common keys and the decoded driver options flat,
// as they are written.
func (c Config) MarshalYAML() (any, error) {
	type plain Config
	var out yaml.Node
	if err := out.Encode(plain(c)); err != nil {
		return nil, err
	}
	if c.Options != nil {
		var o yaml.Node
		if err := o.Encode(c.Options); err != nil {
			return nil, err
		}
		out.Content = append(out.Content, o.Content...)
	}
	return &out, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// DefaultInterval applies when a sensor sets none.
const DefaultInterval = 10 * time.Second

// MaxInterval bounds a sensor's interval: a reading a day is the slowest
// the sampler's missed-reading accounting is meant for.
const MaxInterval = 24 * time.Hour

// ValidateAll checks every sensor, decodes driver options and applies
// defaults. It is the one gate between agent.yaml and the drivers.
func ValidateAll(cfgs []Config) error {
	seen := map[string]int{}
	type busUse struct {
		i        int
		settings string
	}
	buses := map[string]busUse{}
	for i := range cfgs {
		c := &cfgs[i]
		key := fmt.Sprintf("sensors[%d]", i)
		line := 0
		if c.node != nil {
			line = c.node.Line
		}
		if !nameRE.MatchString(c.Name) {
			return &confkit.FieldError{Key: key + ".name", Line: line, Msg: fmt.Sprintf("%q must be a NATS token ([A-Za-z0-9_-]+): it becomes the subject telemetry.<name>", c.Name)}
		}
		if j, dup := seen[c.Name]; dup {
			return &confkit.FieldError{Key: key + ".name", Line: line, Msg: fmt.Sprintf("%q is already used by sensors[%d]; sensor names must be unique", c.Name, j)}
		}
		seen[c.Name] = i
		reg, ok := Lookup(c.Driver)
		if !ok {
			return &confkit.FieldError{Key: key + ".driver", Line: line, Msg: fmt.Sprintf("unknown driver %q; known: %s", c.Driver, strings.Join(Drivers(), ", "))}
		}
		if c.Interval == 0 {
			c.Interval = DefaultInterval
		}
		if c.Interval < 10*time.Millisecond {
			return &confkit.FieldError{Key: key + ".interval", Line: line, Msg: fmt.Sprintf("%s is too short: at least 10ms", c.Interval)}
		}
		if c.Interval > MaxInterval {
			return &confkit.FieldError{Key: key + ".interval", Line: line, Msg: fmt.Sprintf("%s is too large: at most %s", c.Interval, MaxInterval)}
		}
		if c.Timeout == 0 {
			c.Timeout = min(c.Interval, 5*time.Second)
		}
		if c.Timeout < 0 || c.Timeout > c.Interval {
			return &confkit.FieldError{Key: key + ".timeout", Line: line, Msg: fmt.Sprintf("%s must be positive and at most the interval (%s)", c.Timeout, c.Interval)}
		}
		if c.AlertAbove != nil && c.AlertBelow != nil && *c.AlertBelow >= *c.AlertAbove {
			return &confkit.FieldError{Key: key + ".alert_below", Line: line, Msg: "must be below alert_above"}
		}
		if c.Hysteresis < 0 {
			return &confkit.FieldError{Key: key + ".hysteresis", Line: line, Msg: "must not be negative"}
		}
		if c.Options == nil || c.node != nil {
			opts := reg.Options()
			if c.node != nil {
				if err := decodeStrict(c.node, opts, key); err != nil {
					return err
				}
			}
			c.Options = opts
		}
		if v, ok := c.Options.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				// A driver that names a nested key (values[2].address)
				// gets the full path.
				var fe *confkit.FieldError
				if errors.As(err, &fe) {
					return &confkit.FieldError{Key: key + "." + fe.Key, Line: cmp.Or(fe.Line, line), Msg: fe.Msg}
				}
				return &confkit.FieldError{Key: key, Line: line, Msg: err.Error()}
			}
		}
		if b, ok := c.Options.(interface{ SharedBus() (string, string) }); ok {
			id, settings := b.SharedBus()
			if u, dup := buses[id]; dup && u.settings != settings {
				return &confkit.FieldError{Key: key + ".url", Line: line, Msg: fmt.Sprintf("%s is also used by sensors[%d] (%s) with other settings (%s): sensors sharing a port or gateway share its settings (url, request_timeout)", id, u.i, cfgs[u.i].Name, u.settings)}
			}
			buses[id] = busUse{i, settings}
		}
	}
	return nil
}

// decodeStrict rejects keys the options struct does not declare, naming the
// key and its line, then decodes.
func decodeStrict(n *yaml.Node, opts any, key string) error {
	allowed := fieldKeys(reflect.TypeOf(opts).Elem())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !allowed[k.Value] {
			known := make([]string, 0, len(allowed)+len(commonKeys))
			for a := range allowed {
				known = append(known, a)
			}
			for a := range commonKeys {
				known = append(known, a)
			}
			sort.Strings(known)
			return &confkit.FieldError{Key: key + "." + k.Value, Line: k.Line, Msg: "unknown key for this driver; known keys: " + strings.Join(known, ", ")}
		}
	}
	if err := n.Decode(opts); err != nil {
		return optionError(n, reflect.TypeOf(opts).Elem(), key, err)
	}
	return nil
}

// optionError names the driver key whose value did not decode and why, from
// the option nodes (yaml's error names only a line, in text).
func optionError(n *yaml.Node, typ reflect.Type, key string, err error) error {
	if p := yamlcheck.Find(n, typ, key); p != nil {
		return &confkit.FieldError{Key: p.Key, Line: p.Line, Msg: p.Msg}
	}
	return &confkit.FieldError{Key: key, Line: n.Line, Msg: err.Error()}
}

// fieldKeys lists the YAML keys of a struct, including those of inlined
// structs (shared option sets such as the I2C bus and address).
func fieldKeys(t reflect.Type) map[string]bool {
	keys := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, flags, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if flags == "inline" && f.Type.Kind() == reflect.Struct {
			for k := range fieldKeys(f.Type) {
				keys[k] = true
			}
			continue
		}
		if tag != "" && tag != "-" {
			keys[tag] = true
		}
	}
	return keys
}
