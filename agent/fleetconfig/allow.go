package fleetconfig

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edge-agent/edge-agent/internal/confkit"
)

// DefaultAllow is what the hub may change when remote_config.allow is not
// set: keys that cannot cut the site off from the hub or its own store.
var DefaultAllow = []string{
	"sensors", "log_level", "buffer.max_age", "buffer.max_bytes",
	"uplink.bandwidth", "uplink.heartbeat", "uplink.compression",
}

// Dangerous keys can strand a site (wrong hub, wrong credentials, a port
// clash, a store on the wrong disk): remote-managed only when the local
// file lists them in remote_config.allow, and always under the health gate.
var Dangerous = []string{
	"uplink.hub_urls", "uplink.credentials", "uplink.nkey_seed", "uplink.user",
	"uplink.password", "uplink.token", "uplink.tls", "listen", "local_auth", "state_dir",
}

// never are the keys that make the local file the authority: whatever the
// allow list says, the hub cannot change the site's identity, its groups
// or what it lets the hub change.
var never = []string{"site", "groups", "remote_config"}

// Options is the local file's remote_config block.
type Options struct {
	Enabled bool `yaml:"enabled"`
	// Allow lists the key paths (a key allows everything under it) the hub
	// may set; empty means DefaultAllow.
	Allow []string `yaml:"allow"`
	// HubDomain is the hub's JetStream domain, where the bucket lives.
	HubDomain string `yaml:"hub_domain"`
	// Gate is the health gate's window after an apply.
	Gate time.Duration `yaml:"gate"`
}

// DefaultOptions are remote_config's defaults: off.
func DefaultOptions() Options {
	return Options{HubDomain: "hub", Gate: 60 * time.Second}
}

// EffectiveAllow is Allow or, when empty, DefaultAllow.
func (o Options) EffectiveAllow() []string {
	if len(o.Allow) == 0 {
		return DefaultAllow
	}
	return o.Allow
}

// Validate checks the block; groups are checked with it since both end up
// in key names.
func (o Options) Validate(groups []string) error {
	for i, g := range groups {
		if !ValidName(g) {
			return &confkit.FieldError{Key: fmt.Sprintf("groups[%d]", i), Msg: fmt.Sprintf("%q is not a group name: letters, digits, '-' and '_' only (it becomes part of a hub KV key)", g)}
		}
	}
	for i, a := range o.Allow {
		if slices.ContainsFunc(never, func(n string) bool { return covers(n, a) || covers(a, n) }) {
			return &confkit.FieldError{Key: fmt.Sprintf("remote_config.allow[%d]", i), Msg: fmt.Sprintf("%q: site, groups and remote_config stay under the local file's control and cannot be allowed", a)}
		}
		if a == "" || strings.HasPrefix(a, ".") || strings.HasSuffix(a, ".") {
			return &confkit.FieldError{Key: fmt.Sprintf("remote_config.allow[%d]", i), Msg: fmt.Sprintf("%q is not a key path such as sensors or uplink.bandwidth", a)}
		}
	}
	if o.HubDomain != "" && !ValidName(o.HubDomain) {
		return &confkit.FieldError{Key: "remote_config.hub_domain", Msg: fmt.Sprintf("%q is not a JetStream domain name", o.HubDomain)}
	}
	if o.Enabled && o.HubDomain == "" {
		return &confkit.FieldError{Key: "remote_config.hub_domain", Msg: "required: the hub's JetStream domain (the hub must run JetStream with a domain, e.g. `jetstream {domain: hub}`)"}
	}
	if o.Gate < time.Second {
		return &confkit.FieldError{Key: "remote_config.gate", Msg: fmt.Sprintf("%s is too short: at least 1s (default 60s)", o.Gate)}
	}
	return nil
}

// covers reports whether allowed path a covers key path p.
func covers(a, p string) bool { return p == a || strings.HasPrefix(p, a+".") }

// CheckAllowed refuses a fragment that sets a key outside allow, naming the
// key and the fragment.
func CheckAllowed(f Fragment, allow []string) error {
	outside, err := NotAllowed(f, allow)
	if err != nil {
		return err
	}
	if len(outside) > 0 {
		return fmt.Errorf("fragment %s: %s: not in the site's remote_config.allow %v; add it to the allow list in the local file to let the hub manage it", f, outside[0], allow)
	}
	return nil
}

// NotAllowed lists the key paths of a fragment outside allow; keys the hub
// may never set are an error whatever allow says.
func NotAllowed(f Fragment, allow []string) ([]string, error) {
	paths, err := Paths([]byte(f.Data))
	if err != nil {
		return nil, fmt.Errorf("fragment %s: %w", f, err)
	}
	var out []string
	for _, p := range paths {
		if slices.ContainsFunc(never, func(n string) bool { return covers(n, p) }) {
			return nil, fmt.Errorf("fragment %s: %s: the hub may never set this key; it belongs to the site's local file", f, p)
		}
		if !slices.ContainsFunc(allow, func(a string) bool { return covers(a, p) }) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Origin names the last fragment in merge order that sets key path key
// (as the validator reports it, e.g. "sensors[1].driver"), or "" when only
// the local file does.
func Origin(frags []Fragment, key string) string {
	top := key
	if i := strings.IndexAny(top, ".["); i >= 0 {
		top = top[:i]
	}
	for i := len(frags) - 1; i >= 0; i-- {
		paths, err := Paths([]byte(frags[i].Data))
		if err != nil {
			continue
		}
		if slices.ContainsFunc(paths, func(p string) bool { return covers(p, key) || covers(key, p) || covers(top, p) }) {
			return frags[i].String()
		}
	}
	return ""
}
