// Package confkit is the vocabulary agent.yaml's sections share: byte
// sizes written with units, the error that names a key (and its line), and
// the test that tells an overflowing duration from a malformed one. It
// lives apart from every section so that uplink and sensors need not import
// buffer (or each other) to speak it.
package confkit

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

// FieldError is a validation error tied to one config key path, so the agent
// can point at the line in agent.yaml.
type FieldError struct {
	Key  string // dotted path, e.g. "uplink.tls.ca_file" or "sensors[1].name"
	Line int    // 0 when the section does not know it (the agent finds it from Key)
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Key, e.Line, e.Msg)
	}
	return e.Key + ": " + e.Msg
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
