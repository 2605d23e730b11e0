package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigLimits: the operator mistakes of #16.8 are refused at parse
// time with the key and what is wrong (too small, too large), never
// accepted to fail or panic in run, never reported as the wrong type.
func TestConfigLimits(t *testing.T) {
	dir := t.TempDir()
	regular := writeFile(t, dir, "agent.yaml", "site: s1\n", 0o600)
	many := func(n int) string {
		var b strings.Builder
		b.WriteString("site: s1\nsensors:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - {name: s%d, driver: sim}\n", i)
		}
		return b.String()
	}
	cases := []struct {
		name, yaml string
		key        string
		want       string
	}{
		{"budget below two streams", "site: s1\nbuffer:\n  max_bytes: 1MiB\n", "buffer.max_bytes", "too small: at least 2MiB"},
		{"size overflows", "site: s1\nbuffer:\n  max_bytes: 99999999999TiB\n", "buffer.max_bytes", "too large"},
		{"size beyond float", "site: s1\nbuffer:\n  max_bytes: 1e400\n", "buffer.max_bytes", "too large"},
		{"size above maximum", "site: s1\nbuffer:\n  max_bytes: 4096TiB\n", "buffer.max_bytes", "too large"},
		{"bandwidth overflows", "site: s1\nuplink:\n  hub_urls: [nats://h:7422]\n  bandwidth: 1e300\n", "uplink.bandwidth", "too large"},
		{"duration overflows", "site: s1\nbuffer:\n  max_age: 9999999999h\n", "buffer.max_age", "too large"},
		{"duration overflows in a flow map", "site: s1\nsensors:\n  - {name: a, driver: sim, interval: 9999999999h}\n", "sensors[0].interval", "too large"},
		{"not a duration in a flow map", "site: s1\nsensors:\n  - {name: a, driver: sim, timeout: soon}\n", "sensors[0].timeout", "not a duration"},
		{"driver duration overflows", "site: s1\nsensors:\n  - name: d\n    driver: gpio\n    debounce: 9999999999h\n", "sensors[0].debounce", "too large"},
		{"driver duration not one", "site: s1\nsensors:\n  - {name: d, driver: gpio, debounce: soon}\n", "sensors[0].debounce", "not a duration"},
		{"sync panics nats-server", "site: s1\nbuffer:\n  sync: 1ns\n", "buffer.sync", "too small: at least 10ms"},
		{"duration without unit", "site: s1\nbuffer:\n  max_age: 0\n", "buffer.max_age", "needs a unit, e.g. 0s"},
		{"bare number as duration", "site: s1\nbuffer:\n  max_age: 30\n", "buffer.max_age", "needs a unit, e.g. 30s"},
		{"sync overflows", "site: s1\nbuffer:\n  sync: 9999999999h\n", "buffer.sync", "too large"},
		{"sync too long", "site: s1\nbuffer:\n  sync: 1h\n", "buffer.sync", "too large"},
		{"max_age too short", "site: s1\nbuffer:\n  max_age: 1s\n", "buffer.max_age", "too small"},
		{"sensor interval too long", "site: s1\nsensors:\n  - {name: a, driver: sim, interval: 48h}\n", "sensors[0].interval", "too large"},
		{"heartbeat too long", "site: s1\nuplink:\n  hub_urls: [nats://h:7422]\n  heartbeat: 2h\n", "uplink.heartbeat", "too large"},
		{"control socket is the config", "site: s1\ncontrol_socket: " + regular + "\n", "control_socket", "is not a socket (a regular file)"},
		{"control socket is a directory", "site: s1\ncontrol_socket: " + dir + "\n", "control_socket", "is not a socket (a directory)"},
		{"second document", "site: s1\n---\nsite: s2\n", "", "second YAML document"},
		{"second empty document", "site: s1\n---\n", "", "second YAML document"},
		{"too many sensors", many(MaxSensors + 1), "sensors", "at most 1000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("agent.yaml", []byte("state_dir: "+dir+"\n"+tc.yaml))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want ConfigError, got %v", err)
			}
			if ce.Key != tc.key || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v (key %q), want key %q and %q", err, ce.Key, tc.key, tc.want)
			}
		})
	}
	if b, _ := os.ReadFile(regular); string(b) != "site: s1\n" {
		t.Fatalf("the config named as control_socket changed: %q", b)
	}
	for _, ok := range []string{"buffer: {max_bytes: 2MiB, sync: 10ms, max_age: 1m}\n", "buffer: {sync: 10m, max_age: 0s}\n", many(MaxSensors)} {
		if _, err := ParseConfig("agent.yaml", []byte("state_dir: "+dir+"\nsite: s1\n"+strings.TrimPrefix(ok, "site: s1\n"))); err != nil {
			t.Errorf("%.60q: %v", ok, err)
		}
	}
}

// TestConfigFileTooLarge: a generated config with 150,000 sensors is
// refused by size before it is decoded (it ran check-config out of memory).
func TestConfigFileTooLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString("site: s1\nsensors:\n")
	for i := range 150_000 {
		fmt.Fprintf(&b, "  - {name: sensor-%06d, driver: sim, interval: 1s}\n", i)
	}
	path := writeFile(t, t.TempDir(), "agent.yaml", b.String(), 0o600)
	start := time.Now()
	_, err := LoadConfig(path)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "larger than 1MiB") || ce.File != path {
		t.Fatalf("want a size error naming %s, got %v", path, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("refusing took %s: the file was decoded", d)
	}
}

// TestControlSocketNeverDeletesAFile: run with control_socket pointing at
// an existing file (here the agent's own config, as check-config would
// refuse) keeps the file and says why the socket is unavailable.
func TestControlSocketNeverDeletesAFile(t *testing.T) {
	cfg := testConfig(t, "")
	body := []byte("site: s1\n# the operator's config\n")
	if err := os.WriteFile(cfg.Path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ControlSocket = cfg.Path
	a := runAgent(t, cfg)
	if got, err := os.ReadFile(cfg.Path); err != nil || string(got) != string(body) {
		t.Fatalf("config named as control_socket: %q, %v", got, err)
	}
	if !strings.Contains(a.logs.String(), "is not a socket") {
		t.Fatalf("no log line saying why the control socket is unavailable:\n%s", a.logs)
	}
	if _, err := os.Stat(filepath.Dir(cfg.Path)); err != nil {
		t.Fatal(err)
	}
}
