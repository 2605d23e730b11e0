// Package uplink owns everything between the site and the hub: the leaf
// remote options built from config, the link state machine and its
// diagnosis, the store-and-forward forwarder, downlink commands and the
// heartbeat.
package uplink

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/edge-agent/edge-agent/internal/confkit"
	"github.com/nats-io/nats-server/v2/server"
)

// Config is the `uplink:` section of agent.yaml. Absent means standalone.
type Config struct {
	HubURLs     []string `yaml:"hub_urls"`
	Credentials string   `yaml:"credentials"`
	// NkeySeed is a file holding an nkey seed (SU...), not the seed itself,
	// so secrets stay out of agent.yaml.
	NkeySeed string `yaml:"nkey_seed"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
	TLS      TLS    `yaml:"tls"`
	// Account binds the leaf connection to a local account (the seeds'
	// `account: "ACC"` remote option); empty uses the global account.
	Account string `yaml:"account"`
	// DenyImports and DenyExports are added to Protect's fixed lists, never
	// replace them.
	DenyImports   []string  `yaml:"deny_imports"`
	DenyExports   []string  `yaml:"deny_exports"`
	SubjectPrefix string    `yaml:"subject_prefix"`
	Reconnect     Reconnect `yaml:"reconnect"`
	// Bandwidth caps what the site sends to the hub, in bytes/s on the
	// wire (after compression and TLS, as the link's gate counts them),
	// for metered links; the forwarder paces itself to it. 0 = unlimited.
	Bandwidth confkit.Size `yaml:"bandwidth"`
	// Compression is the leaf connection's compression of what the site
	// sends over nats:// and tls:// (nats-server's leafnode compression
	// mode; ws:// and wss:// use websocket.compression). The default is
	// s2_fast rather than nats-server's s2_auto: s2_auto sends a metered
	// link with a short round trip uncompressed, and picks s2_best, the
	// costliest level, from 100 ms on (a cellular gateway with a slow
	// CPU), while s2_fast gets most of s2_best's bytes saved for a fraction
	// of its CPU (BenchmarkCompression). off saves CPU on a LAN hub;
	// s2_best squeezes a metered link hardest.
	Compression string `yaml:"compression"`
	// Websocket options for ws:// and wss:// hub URLs.
	Websocket Websocket `yaml:"websocket"`
	// Heartbeat is how often a connected site publishes <prefix>.<site>.status
	// (also on every connect); the fleet view calls a site stale after three.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// StallTimeout resets the forwarder when the link is up, a backlog waits
	// and the hub has acknowledged nothing for this long.
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// HubMaxPayload is the hub's max_payload: a larger message would make the
	// hub close the leaf connection, so the forwarder skips it (counted as
	// rejected) instead of bouncing the link forever.
	HubMaxPayload confkit.Size `yaml:"hub_max_payload"`
	// AllowRemoteAdmin lets hub clients create, delete, purge or edit the
	// site's streams and consumers through $JS.<site>.API on the uplink
	// remote; off, the leaf refuses those requests and the hub can only
	// read (Protect). It never opens a remote from nats_config.
	AllowRemoteAdmin bool `yaml:"allow_remote_admin"`
	// IgnoreDiscoveredURLs makes the leaf dial only hub_urls, never the
	// leafnode addresses a hub advertises: hub clusters usually advertise
	// internal addresses a store cannot reach (each redial to one is a
	// wasted attempt), and nats-server 2.9 hubs advertise theirs even with
	// no_advertise. Off suits only a hub_urls seed whose cluster
	// advertises addresses the sites can reach.
	IgnoreDiscoveredURLs bool `yaml:"ignore_discovered_urls"`
}

// TLS holds client TLS for the leaf connection.
type TLS struct {
	CAFile         string `yaml:"ca_file"`
	CertFile       string `yaml:"cert_file"`
	KeyFile        string `yaml:"key_file"`
	HandshakeFirst bool   `yaml:"handshake_first"`
	// ServerName overrides the name checked in the hub's certificate.
	ServerName string `yaml:"server_name"`
}

// Reconnect bounds the exponential backoff (with full jitter) between tries.
type Reconnect struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// Websocket tunes ws:// and wss:// remotes.
type Websocket struct {
	Compression bool `yaml:"compression"`
	NoMasking   bool `yaml:"no_masking"`
}

// DefaultConfig is the only place uplink defaults live; it is applied under an
// `uplink:` block before the YAML is decoded onto it.
func DefaultConfig() Config {
	return Config{
		SubjectPrefix: "edge",
		Reconnect:     Reconnect{Min: time.Second, Max: 60 * time.Second},
		Compression:   server.CompressionS2Fast,
		Heartbeat:     30 * time.Second,
		// Protect denies these on every remote anyway; the default shows
		// them in check-config's effective config.
		DenyExports:   []string{"telemetry.>", "alerts.>", "edge-agent.>"},
		StallTimeout:  60 * time.Second,
		HubMaxPayload: 1 << 20, // nats-server's default max_payload

		IgnoreDiscoveredURLs: true,
	}
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Validate checks the section; file checks run here so a bad path refuses
// to start instead of failing at the first reconnect.
func (c *Config) Validate() error {
	if len(c.HubURLs) == 0 {
		return &confkit.FieldError{Key: "uplink.hub_urls", Msg: "at least one hub URL is required, e.g. [tls://hub-1.example.com:7422]; remove the uplink block to run standalone"}
	}
	for i, s := range c.HubURLs {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return &confkit.FieldError{Key: fmt.Sprintf("uplink.hub_urls[%d]", i), Msg: fmt.Sprintf("%q is not a URL such as tls://hub.example.com:7422", s)}
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss", "nats-leaf":
		default:
			return &confkit.FieldError{Key: fmt.Sprintf("uplink.hub_urls[%d]", i), Msg: fmt.Sprintf("scheme %q is not supported: use nats://, tls://, ws:// or wss://", u.Scheme)}
		}
	}
	auth := 0
	for _, set := range []bool{c.Credentials != "", c.NkeySeed != "", c.User != "", c.Token != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		return &confkit.FieldError{Key: "uplink", Msg: "choose one of credentials, nkey_seed, user/password or token"}
	}
	if c.Password != "" && c.User == "" {
		return &confkit.FieldError{Key: "uplink.password", Msg: "password needs user"}
	}
	for _, f := range []struct{ key, path string }{
		{"uplink.credentials", c.Credentials}, {"uplink.nkey_seed", c.NkeySeed}, {"uplink.tls.key_file", c.TLS.KeyFile},
	} {
		if err := checkSecretFile(f.key, f.path); err != nil {
			return err
		}
	}
	for _, f := range []struct{ key, path string }{{"uplink.tls.ca_file", c.TLS.CAFile}, {"uplink.tls.cert_file", c.TLS.CertFile}} {
		if err := checkReadable(f.key, f.path); err != nil {
			return err
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return &confkit.FieldError{Key: "uplink.tls", Msg: "cert_file and key_file go together"}
	}
	if _, err := clientTLS(c.TLS); err != nil {
		return &confkit.FieldError{Key: "uplink.tls", Msg: err.Error()}
	}
	if !tokenRE.MatchString(c.SubjectPrefix) {
		return &confkit.FieldError{Key: "uplink.subject_prefix", Msg: fmt.Sprintf("%q must be one NATS token ([A-Za-z0-9_-]+), e.g. edge", c.SubjectPrefix)}
	}
	switch c.Compression {
	case server.CompressionS2Auto, server.CompressionOff, server.CompressionS2Fast, server.CompressionS2Better,
		server.CompressionS2Best, server.CompressionS2Uncompressed, server.CompressionAccept:
	default:
		return &confkit.FieldError{Key: "uplink.compression", Msg: fmt.Sprintf("%q is not a compression mode: use s2_fast (the default), off, s2_better, s2_best or s2_auto", c.Compression)}
	}
	if c.Reconnect.Min <= 0 || c.Reconnect.Max < c.Reconnect.Min {
		return &confkit.FieldError{Key: "uplink.reconnect", Msg: fmt.Sprintf("want 0 < min <= max, got min=%s max=%s", c.Reconnect.Min, c.Reconnect.Max)}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"uplink.reconnect.max", c.Reconnect.Max}, {"uplink.heartbeat", c.Heartbeat}, {"uplink.stall_timeout", c.StallTimeout}} {
		if d.v > time.Hour {
			return &confkit.FieldError{Key: d.key, Msg: fmt.Sprintf("%s is too large: at most 1h", d.v)}
		}
	}
	if c.Bandwidth < 0 {
		return &confkit.FieldError{Key: "uplink.bandwidth", Msg: "must not be negative (0 = unlimited)"}
	}
	if c.Heartbeat < time.Second {
		return &confkit.FieldError{Key: "uplink.heartbeat", Msg: fmt.Sprintf("%s is too short: at least 1s (default 30s; 10,000 sites at 1s is 10,000 msg/s at the hub)", c.Heartbeat)}
	}
	if c.StallTimeout < time.Second {
		return &confkit.FieldError{Key: "uplink.stall_timeout", Msg: fmt.Sprintf("%s is too short: at least 1s (default 60s)", c.StallTimeout)}
	}
	if c.HubMaxPayload < 1<<10 || c.HubMaxPayload > 64<<20 {
		return &confkit.FieldError{Key: "uplink.hub_max_payload", Msg: fmt.Sprintf("%s: want the hub's max_payload between 1KiB and 64MiB (nats-server's default is 1MiB)", c.HubMaxPayload)}
	}
	return nil
}

func checkReadable(key, path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return &confkit.FieldError{Key: key, Msg: fmt.Sprintf("cannot read %s: %v", path, err)}
	}
	return f.Close()
}

// checkSecretFile refuses secrets readable by group or others, as ssh does
// with private keys: a leaked site credential lets anyone publish as the site.
func checkSecretFile(key, path string) error {
	if err := checkReadable(key, path); err != nil || path == "" {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return &confkit.FieldError{Key: key, Msg: err.Error()}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return &confkit.FieldError{Key: key, Msg: fmt.Sprintf("%s is readable by group or others (mode %04o): run `chmod 600 %s`", path, fi.Mode().Perm(), path)}
	}
	return nil
}

// Redacted returns a copy safe to print: secrets replaced, paths kept.
func (c Config) Redacted() Config {
	r := c
	for _, p := range []*string{&r.Password, &r.Token} {
		if *p != "" {
			*p = "<redacted>"
		}
	}
	r.HubURLs = make([]string, len(c.HubURLs))
	for i, s := range c.HubURLs {
		if u, err := url.Parse(s); err == nil && u.User != nil {
			// user:password keeps the user; a bare user part is a token.
			if _, hasPw := u.User.Password(); hasPw {
				u.User = url.UserPassword(u.User.Username(), "REDACTED")
			} else {
				u.User = url.User("REDACTED")
			}
			s = u.String()
		}
		r.HubURLs[i] = s
	}
	return r
}
