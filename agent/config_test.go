package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigBadInput(t *testing.T) {
	dir := t.TempDir()
	open := writeFile(t, dir, "open.creds", "x", 0o644)
	private := writeFile(t, dir, "ok.creds", "x", 0o600)
	cases := []struct {
		name, yaml string
		key        string
		line       int
		want       string
	}{
		{"unknown key", "site: s1\nstate_dir: /tmp/x\nlisen: 1.2.3.4:4222\n", "lisen", 3, `unknown key "lisen"`},
		{"unknown nested key", "site: s1\nbuffer:\n  synk: always\n", "buffer.synk", 3, "unknown key"},
		{"wrong type", "site: s1\nsensors: 7\n", "sensors", 2, "wrong type"},
		{"bad duration", "site: s1\nbuffer:\n  max_age: forever\n", "buffer.max_age", 3, "forever"},
		{"bad size", "site: s1\nbuffer:\n  max_bytes: lots\n", "buffer.max_bytes", 3, "invalid size"},
		{"tiny size", "site: s1\nbuffer:\n  max_bytes: 1k\n", "buffer.max_bytes", 3, "too small"},
		{"bad sync", "site: s1\nbuffer:\n  sync: sometimes\n", "buffer.sync", 3, "always"},
		{"missing site", "state_dir: /tmp/x\n", "site", 0, "required"},
		{"site not a token", "site: store.42\n", "site", 1, "not a NATS token"},
		{"site with space", "site: \"store 42\"\n", "site", 1, "not a NATS token"},
		{"duplicate sensor", "site: s1\nsensors:\n  - {name: a, driver: sim}\n  - {name: a, driver: sim}\n", "sensors[1].name", 4, "already used"},
		{"unknown driver", "site: s1\nsensors:\n  - {name: a, driver: nope}\n", "sensors[0].driver", 3, "unknown driver"},
		{"unknown driver key", "site: s1\nsensors:\n  - name: a\n    driver: sim\n    colour: red\n", "sensors[0].colour", 5, "unknown key"},
		{"public listen without auth", "site: s1\nlisten: 0.0.0.0:4222\n", "listen", 2, "local_auth"},
		{"creds unreadable", "site: s1\nuplink:\n  hub_urls: [nats://h:7422]\n  credentials: " + dir + "/missing.creds\n", "uplink.credentials", 4, "cannot read"},
		{"creds too open", "site: s1\nuplink:\n  hub_urls: [nats://h:7422]\n  credentials: " + open + "\n", "uplink.credentials", 4, "chmod 600 " + open},
		{"tls ca missing", "site: s1\nuplink:\n  hub_urls: [tls://h:7422]\n  tls: {ca_file: " + dir + "/ca.pem}\n", "uplink.tls.ca_file", 4, "cannot read"},
		{"tls cert without key", "site: s1\nuplink:\n  hub_urls: [tls://h:7422]\n  credentials: " + private + "\n  tls: {cert_file: " + private + "}\n", "uplink.tls", 5, "go together"},
		{"bad hub url", "site: s1\nuplink:\n  hub_urls: [http://h:7422]\n", "uplink.hub_urls[0]", 3, "not supported"},
		{"no hub url", "site: s1\nuplink:\n  subject_prefix: edge\n", "uplink.hub_urls", 0, "at least one"},
		{"two auth methods", "site: s1\nuplink:\n  hub_urls: [nats://h:7422]\n  token: t\n  user: u\n", "uplink", 2, "choose one"},
		{"reconnect inverted", "site: s1\nuplink:\n  hub_urls: [nats://h:7422]\n  reconnect: {min: 10s, max: 1s}\n", "uplink.reconnect", 4, "min <= max"},
		{"bad compression", "site: s1\nuplink:\n  hub_urls: [nats://h:7422]\n  compression: s2_max\n", "uplink.compression", 4, "s2_best"},
		{"not yaml", "site: [\n", "", 0, "not valid YAML"},
		{"empty", "", "site", 0, "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("agent.yaml", []byte(tc.yaml))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want ConfigError, got %v", err)
			}
			if ce.Key != tc.key {
				t.Errorf("key = %q, want %q (err: %v)", ce.Key, tc.key, err)
			}
			if tc.line != 0 && ce.Line != tc.line {
				t.Errorf("line = %d, want %d (err: %v)", ce.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "config agent.yaml") {
				t.Errorf("error does not name the file: %q", err)
			}
		})
	}
}

func TestConfigDefaultsAndRedaction(t *testing.T) {
	cfg, err := ParseConfig("a.yaml", []byte(`site: store-0042
uplink:
  hub_urls: ["tls://leaf:secret@hub-1:7422", "wss://hub-2:443"]
  user: leaf
  password: hunter2
local_auth: {user: app, password: pw}
sensors:
  - {name: demo, driver: sim}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:4222" || cfg.Buffer.Sync != "always" || cfg.Uplink.SubjectPrefix != "edge" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.Sensors[0].Interval == 0 || cfg.Sensors[0].Options == nil {
		t.Errorf("sensor defaults not applied: %+v", cfg.Sensors[0])
	}
	if got := cfg.Uplink.DenyExports; len(got) != 3 || got[2] != "edge-agent.>" {
		t.Errorf("deny_exports default = %v", got)
	}
	r := cfg.Redacted()
	for _, s := range []string{r.Uplink.Password, r.LocalAuth.Password, r.Uplink.HubURLs[0]} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "secret") || strings.Contains(s, "pw") && !strings.Contains(s, "redacted") {
			t.Errorf("secret survived redaction: %q", s)
		}
	}
	if cfg.Uplink.Password != "hunter2" {
		t.Error("redaction changed the original")
	}
	// No uplink block: standalone.
	cfg, err = ParseConfig("a.yaml", []byte("site: s\n"))
	if err != nil || cfg.Uplink != nil {
		t.Fatalf("standalone config: %v %+v", err, cfg)
	}
}
