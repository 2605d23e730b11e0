// Package buffer keeps every reading on the device: it owns the local
// JetStream streams (TELEMETRY, ALERTS), their limits and sync policy, and
// state.db (bbolt), the small store of cursors, identity and history that must
// survive power cuts and be readable when the daemon is down.
package buffer

import (
	"fmt"
	"time"

	"github.com/edge-agent/edge-agent/internal/confkit"
)

// Config is the `buffer:` section of agent.yaml.
type Config struct {
	// Sync is "always" (fsync before every ack) or a Go duration such as "1s"
	// (fsync at that interval: less SD-card wear, but a power cut can lose up
	// to that much acknowledged data).
	Sync     string       `yaml:"sync"`
	MaxBytes confkit.Size `yaml:"max_bytes"`
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
		case err != nil && confkit.DurationOverflows(c.Sync):
			return &confkit.FieldError{Key: "buffer.sync", Msg: fmt.Sprintf("%q is too large: at most %s", c.Sync, MaxSyncInterval)}
		case err != nil || d <= 0:
			return &confkit.FieldError{Key: "buffer.sync", Msg: fmt.Sprintf("%q is neither \"always\" nor a positive duration such as \"1s\"", c.Sync)}
		case d < MinSyncInterval:
			return &confkit.FieldError{Key: "buffer.sync", Msg: fmt.Sprintf("%s is too small: at least %s (or \"always\" to fsync before every ack)", d, MinSyncInterval)}
		case d > MaxSyncInterval:
			return &confkit.FieldError{Key: "buffer.sync", Msg: fmt.Sprintf("%s is too large: at most %s (a power cut loses up to this much acknowledged data)", d, MaxSyncInterval)}
		}
	}
	if c.MaxBytes < MinMaxBytes {
		return &confkit.FieldError{Key: "buffer.max_bytes", Msg: fmt.Sprintf("%s is too small: at least %s, e.g. \"1GiB\" (ALERTS and TELEMETRY each keep at least %s, so the oldest reading is evicted rather than the newest refused)", c.MaxBytes, confkit.Size(MinMaxBytes), confkit.Size(MinStreamBytes))}
	}
	if c.MaxBytes > MaxMaxBytes {
		return &confkit.FieldError{Key: "buffer.max_bytes", Msg: fmt.Sprintf("%s is too large: at most %s", c.MaxBytes, confkit.Size(MaxMaxBytes))}
	}
	switch {
	case c.MaxAge < 0:
		return &confkit.FieldError{Key: "buffer.max_age", Msg: "must not be negative (0 means no age limit)"}
	case c.MaxAge > 0 && c.MaxAge < MinMaxAge:
		return &confkit.FieldError{Key: "buffer.max_age", Msg: fmt.Sprintf("%s is too small: at least %s (0 means no age limit)", c.MaxAge, MinMaxAge)}
	case c.MaxAge > MaxMaxAge:
		return &confkit.FieldError{Key: "buffer.max_age", Msg: fmt.Sprintf("%s is too large: at most %s (0 means no age limit)", c.MaxAge, MaxMaxAge)}
	}
	return nil
}

// MaxFileStore is the JetStream file budget given to the embedded server:
// the agent's streams plus the same again for streams local apps create.
// Derived from config, never from free disk at boot (nats-server#3641: an
// auto-sized store was stranded after a reboot).
func (c Config) MaxFileStore() int64 { return 2 * int64(c.MaxBytes) }
