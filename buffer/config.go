// Package buffer keeps every reading on the device: it owns the local
// JetStream streams (TELEMETRY, ALERTS), their limits and sync policy, and
// state.db (bbolt), the small store of cursors, identity and history that must
// survive power cuts and be readable when the daemon is down.
package buffer

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the `buffer:` section of agent.yaml.
type Config struct {
	// Sync is "always" (fsync before every ack) or a Go duration such as "1s"
	// (fsync at that interval: less SD-card wear, but a power cut can lose up
	// to that much acknowledged data).
	Sync     string `yaml:"sync"`
	MaxBytes Size   `yaml:"max_bytes"`
	// MaxAge removes readings (forwarded or not) once they have been
	// stored this long, 0 for no age limit. Age is agent time, not the
	// wall clock: time the agent ran, plus downtime only when the clock
	// was NTP-synchronised both before the stop and after the start (see
	// Ager), so a clock step never expires anything; a reading is kept at
	// least MaxAge and at most one tick (MaxAge/1000 within [1m, 1h]) more,
	// longer when downtime could not be trusted.
	MaxAge time.Duration `yaml:"max_age"`
}

// DefaultConfig is the only place buffer defaults live.
func DefaultConfig() Config {
	return Config{Sync: "always", MaxBytes: 1 << 30, MaxAge: 30 * 24 * time.Hour}
}

// SyncAlways reports whether every acknowledged write is fsynced first.
func (c Config) SyncAlways() bool { return c.Sync == "always" }

// SyncInterval is the fsync interval when Sync is not "always".
func (c Config) SyncInterval() time.Duration {
	d, _ := time.ParseDuration(c.Sync)
	return d
}

// Bounds of the section's values. The budget's minimum leaves each stream
// at least MinStreamBytes (see StreamConfigs); the sync bounds keep
// nats-server's sync timer sane (it panics below 2ns) and the window of
// acknowledged readings a power cut can lose short; the maximums keep the
// arithmetic derived from them (MaxFileStore, the Ager's tick) in range.
const (
	MinStreamBytes  = 1 << 20
	MinMaxBytes     = 2 * MinStreamBytes
	MaxMaxBytes     = 1 << 50
	MinSyncInterval = 10 * time.Millisecond
	MaxSyncInterval = 10 * time.Minute
	MinMaxAge       = time.Minute
	MaxMaxAge       = 10 * 366 * 24 * time.Hour
)

// Validate checks the section; errors name the key under "buffer.".
func (c Config) Validate() error {
	if c.Sync != "always" {
		d, err := time.ParseDuration(c.Sync)
		switch {
		case err != nil && DurationOverflows(c.Sync):
			return &FieldError{Key: "buffer.sync", Msg: fmt.Sprintf("%q is too large: at most %s", c.Sync, MaxSyncInterval)}
		case err != nil || d <= 0:
			return &FieldError{Key: "buffer.sync", Msg: fmt.Sprintf("%q is neither \"always\" nor a positive duration such as \"1s\"", c.Sync)}
		case d < MinSyncInterval:
			return &FieldError{Key: "buffer.sync", Msg: fmt.Sprintf("%s is too small: at least %s (or \"always\" to fsync before every ack)", d, MinSyncInterval)}
		case d > MaxSyncInterval:
			return &FieldError{Key: "buffer.sync", Msg: fmt.Sprintf("%s is too large: at most %s (a power cut loses up to this much acknowledged data)", d, MaxSyncInterval)}
		}
	}
	if c.MaxBytes < MinMaxBytes {
		return &FieldError{Key: "buffer.max_bytes", Msg: fmt.Sprintf("%s is too small: at least %s, e.g. \"1GiB\" (ALERTS and TELEMETRY each keep at least %s, so the oldest reading is evicted rather than the newest refused)", c.MaxBytes, Size(MinMaxBytes), Size(MinStreamBytes))}
	}
	if c.MaxBytes > MaxMaxBytes {
		return &FieldError{Key: "buffer.max_bytes", Msg: fmt.Sprintf("%s is too large: at most %s", c.MaxBytes, Size(MaxMaxBytes))}
	}
	switch {
	case c.MaxAge < 0:
		return &FieldError{Key: "buffer.max_age", Msg: "must not be negative (0 means no age limit)"}
	case c.MaxAge > 0 && c.MaxAge < MinMaxAge:
		return &FieldError{Key: "buffer.max_age", Msg: fmt.Sprintf("%s is too small: at least %s (0 means no age limit)", c.MaxAge, MinMaxAge)}
	case c.MaxAge > MaxMaxAge:
		return &FieldError{Key: "buffer.max_age", Msg: fmt.Sprintf("%s is too large: at most %s (0 means no age limit)", c.MaxAge, MaxMaxAge)}
	}
	return nil
}

// durationSyntax is time.ParseDuration's grammar; a string that matches it
// and still fails to parse overflowed.
var durationSyntax = regexp.MustCompile(`^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

// DurationOverflows reports whether s is written as a duration but is beyond
// what time.Duration holds (about 292 years), so the error can say "too
// large" instead of "not a duration".
func DurationOverflows(s string) bool {
	_, err := time.ParseDuration(s)
	return err != nil && durationSyntax.MatchString(strings.TrimSpace(s))
}

// FieldError is a validation error tied to one config key path, so the agent
// can point at the line in agent.yaml.
type FieldError struct {
	Key string // dotted path, e.g. "uplink.tls.ca_file" or "sensors[1].name"
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

// Size is a byte count written in YAML as a number or with a unit
// ("512MiB", "1GB", "64k"): operators think in units, not in bytes.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000}, {"tb", 1000 * 1000 * 1000 * 1000},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1},
}

// ParseSize parses "1GiB", "500MB", "64k" or a plain number of bytes.
func ParseSize(s string) (Size, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if (err != nil && !errors.Is(err, strconv.ErrRange)) || f < 0 || math.IsNaN(f) {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit such as 512MiB or 1GB", s)
	}
	// float64(MaxInt64) rounds up to 2^63, which no longer fits.
	if b := f * float64(mult); err != nil || b >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large: at most %d bytes", s, int64(math.MaxInt64))
	}
	return Size(f * float64(mult)), nil
}

// UnmarshalYAML accepts sizes with units; the agent finds the key and line
// of a refused size on the node.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText prints sizes the way an operator would write them.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s Size) String() string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if int64(s) >= u.mult && int64(s)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(s)/u.mult, u.name)
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MaxFileStore is the JetStream file budget given to the embedded server:
// the agent's streams plus the same again for streams local apps create.
// Derived from config, never from free disk at boot (nats-server#3641: an
// auto-sized store was stranded after a reboot).
func (c Config) MaxFileStore() int64 { return 2 * int64(c.MaxBytes) }
