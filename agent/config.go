// Package agent wires the edge agent together: configuration, the embedded
// leaf nats-server with its JetStream domain, the lifecycle of the buffer,
// sensors and uplink parts, the local control API and systemd integration.
package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/confkit"
	"github.com/edge-agent/edge-agent/internal/yamlcheck"
	"github.com/edge-agent/edge-agent/sensors"
	"github.com/edge-agent/edge-agent/uplink"
)

// Config is agent.yaml. Key names are a contract once shipped: add keys,
// never rename them.
type Config struct {
	Site          string `yaml:"site"`
	StateDir      string `yaml:"state_dir"`
	Listen        string `yaml:"listen"`
	ControlSocket string `yaml:"control_socket"`
	MetricsListen string `yaml:"metrics_listen"`
	// MonitorListen exposes the embedded server's /varz, /leafz, /jsz; "" off.
	MonitorListen string `yaml:"monitor_listen"`
	LogLevel      string `yaml:"log_level"`
	LogFormat     string `yaml:"log_format"`
	// ServerName defaults to <site>-<8 hex of the machine id> so two devices
	// on one site id are told apart at the hub (DeriveServerName).
	ServerName string    `yaml:"server_name"`
	LocalAuth  LocalAuth `yaml:"local_auth"`
	// NATSConfig is a nats-server config file used as the base for options
	// the agent does not model; the agent's own keys win over it.
	NATSConfig string           `yaml:"nats_config"`
	Buffer     buffer.Config    `yaml:"buffer"`
	Uplink     *uplink.Config   `yaml:"uplink"`
	Sensors    []sensors.Config `yaml:"sensors"`
	// Groups and RemoteConfig let the hub manage part of this file
	// (docs/FLEET-CONFIG.md); the file stays the authority on what.
	Groups       []string            `yaml:"groups"`
	RemoteConfig fleetconfig.Options `yaml:"remote_config"`

	// Path is the file the config came from (not a YAML key).
	Path string `yaml:"-"`
	root *yaml.Node
}

// LocalAuth protects the local client port; required when listen is not
// loopback, because otherwise anyone on the shop LAN could read and inject
// telemetry.
type LocalAuth struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
}

func (l LocalAuth) set() bool { return l.User != "" || l.Token != "" }

// DefaultConfig is the only place top-level defaults live.
func DefaultConfig() Config {
	return Config{
		StateDir:      "/var/lib/edge-agent",
		Listen:        "127.0.0.1:4222",
		ControlSocket: "/run/edge-agent/agent.sock",
		MetricsListen: "127.0.0.1:9273",
		LogLevel:      "info",
		LogFormat:     "text",
		Buffer:        buffer.DefaultConfig(),
		RemoteConfig:  fleetconfig.DefaultOptions(),
	}
}

// ExitConfig is EX_CONFIG from sysexits.h: systemd's unit does not restart
// on it (RestartPreventExitStatus=78), so a bad config does not crash-loop.
const ExitConfig = 78

// ConfigError is any reason the config cannot be used. It names the file,
// the key path and, where known, the line.
type ConfigError struct {
	File string
	Key  string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("config ")
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Caps on the config's size: a config is a few KiB, and decoding is done
// in memory, so a runaway generated file must be refused, not decoded.
const (
	MaxConfigBytes = 1 << 20
	MaxSensors     = 1000
)

// LoadConfig reads and validates a config file.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("cannot read: %v (create it from /usr/share/doc/edge-agent or run `edge-agent check-config`)", err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("cannot read: %v", err)}
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes strictly (unknown keys are errors) and validates.
func ParseConfig(path string, data []byte) (*Config, error) {
	cfg := DefaultConfig()
	cfg.Path = path
	if len(data) > MaxConfigBytes {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("the file is larger than %s: an agent config is a few KiB; is this the right file?", confkit.Size(MaxConfigBytes))}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(path, nil, err)
	}
	cfg.root = &root
	if len(root.Content) == 0 {
		return nil, &ConfigError{File: path, Key: "site", Msg: "the file is empty; at least `site: <id>` is required"}
	}
	if n := findNode(&root, "sensors"); n != nil && n.Kind == yaml.SequenceNode && len(n.Content) > MaxSensors {
		return nil, &ConfigError{File: path, Key: "sensors", Line: n.Line, Msg: fmt.Sprintf("%d sensors: at most %d per agent", len(n.Content), MaxSensors)}
	}
	dec, err := cfg.decode(data)
	if err != nil {
		return nil, err
	}
	// yaml reads the first document only: a second one (after "---") would
	// be silently ignored, whatever the operator meant by it.
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		ce := &ConfigError{File: path, Msg: "a second YAML document (after \"---\"): agent.yaml holds one document; merge them or remove the separator"}
		if err == nil {
			ce.Line = next.Line
		}
		return nil, ce
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// decode decodes data strictly (unknown keys are errors) into cfg, whose
// Path and root are set, and returns the decoder for what follows the
// first document. The uplink defaults apply only under an uplink block, so
// a missing block still means "standalone".
func (cfg *Config) decode(data []byte) (*yaml.Decoder, error) {
	if findNode(cfg.root, "uplink") != nil {
		d := uplink.DefaultConfig()
		cfg.Uplink = &d
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(cfg.Path, cfg.root, err)
	}
	return dec, nil
}

// yamlError locates a decoding error on the document's nodes: the key and
// its line come from the node, not from yaml's error text. Without a
// document (a syntax error) only the parser's text is left.
func yamlError(path string, root *yaml.Node, err error) error {
	if root == nil {
		return &ConfigError{File: path, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if p := yamlcheck.Find(root, reflect.TypeOf(Config{}), ""); p != nil {
		return &ConfigError{File: path, Key: p.Key, Line: p.Line, Msg: p.Msg}
	}
	return &ConfigError{File: path, Msg: err.Error()}
}

// Validate checks cross-field rules and files. Errors carry key and line.
func (c *Config) Validate() error {
	fe := c.keyErr
	if c.Site == "" {
		return fe("site", "required: the site id, e.g. `site: store-0042` (also the JetStream domain)")
	}
	if !siteRE.MatchString(c.Site) {
		return fe("site", fmt.Sprintf("%q is not a NATS token: use letters, digits, '-' and '_' only (it becomes the JetStream domain and a subject token)", c.Site))
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fe("state_dir", fmt.Sprintf("%q must be an absolute path such as /var/lib/edge-agent", c.StateDir))
	}
	fo := &server.Options{}
	if c.NATSConfig != "" {
		var err error
		if fo, err = loadNATSConfig(c); err != nil {
			return err
		}
	}
	if err := c.checkListeners(fo); err != nil {
		return err
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fe("metrics_listen", fmt.Sprintf("%q is not host:port (\"\" disables)", c.MetricsListen))
		}
	}
	if c.ControlSocket == "" || !filepath.IsAbs(c.ControlSocket) {
		return fe("control_socket", "must be an absolute path such as /run/edge-agent/agent.sock")
	}
	if err := notASocket(c.ControlSocket); err != nil {
		return fe("control_socket", err.Error())
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fe("log_level", err.Error())
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fe("log_format", fmt.Sprintf("%q: want text or json", c.LogFormat))
	}
	if err := c.Buffer.Validate(); err != nil {
		return c.fieldErr(err)
	}
	if c.Uplink != nil {
		if err := c.Uplink.Validate(); err != nil {
			return c.fieldErr(err)
		}
	}
	if err := sensors.ValidateAll(c.Sensors); err != nil {
		return c.fieldErr(err)
	}
	if err := c.RemoteConfig.Validate(c.Groups); err != nil {
		return c.fieldErr(err)
	}
	return nil
}

var siteRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (c *Config) fieldErr(err error) error {
	var fe *confkit.FieldError
	if errors.As(err, &fe) {
		line := fe.Line
		if l := c.lineOf(fe.Key); l > 0 {
			line = l
		}
		return &ConfigError{File: c.Path, Key: fe.Key, Line: line, Msg: fe.Msg}
	}
	return &ConfigError{File: c.Path, Msg: err.Error()}
}

// lineOf finds the line of a dotted key path ("uplink.tls.ca_file",
// "sensors[1].name", "uplink.hub_urls[0]") in the parsed document.
func (c *Config) lineOf(key string) int {
	if c.root == nil {
		return 0
	}
	n := c.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range strings.Split(key, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			name = part[:i]
			idx, _ = strconv.Atoi(part[i+1 : len(part)-1])
		}
		k, v := mapLookup(n, name)
		if v == nil {
			return line
		}
		line, n = k.Line, v
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

func mapLookup(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

func findNode(root *yaml.Node, key string) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	_, v := mapLookup(n, key)
	return v
}

// splitListen parses host:port; port 0 means "any free port" (tests).
func splitListen(s string) (string, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port, e.g. 127.0.0.1:4222", s)
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("%q: port must be 0-65535", s)
	}
	return host, p, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Redacted returns a copy safe to print.
func (c Config) Redacted() Config {
	r := c
	if r.LocalAuth.Password != "" {
		r.LocalAuth.Password = "<redacted>"
	}
	if r.LocalAuth.Token != "" {
		r.LocalAuth.Token = "<redacted>"
	}
	if c.Uplink != nil {
		u := c.Uplink.Redacted()
		r.Uplink = &u
	}
	return r
}
