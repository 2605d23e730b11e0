package agent

import (
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// configSeeds are the shapes operators actually write, plus the broken ones
// the config tests name; the fuzzer mutates from here.
var configSeeds = []string{
	"site: s1\n",
	"site: store-0042\nstate_dir: /var/lib/edge-agent\nlisten: 127.0.0.1:4222\nlog_level: debug\nlog_format: json\n",
	"site: s1\nbuffer:\n  sync: 1s\n  max_bytes: 512MiB\n  max_age: 24h\n",
	"site: s1\nbuffer: {sync: always, max_bytes: 1GB, max_age: 0}\n",
	"site: s1\nuplink:\n  hub_urls: [nats://h:7422, ws://h:8080]\n  subject_prefix: edge\n  reconnect: {min: 1s, max: 30s}\n  bandwidth: 64KiB\n",
	"site: s1\nuplink:\n  hub_urls: [tls://u:p@h:7422]\n  deny_exports: [telemetry.>]\n  websocket: {compression: true}\n",
	"site: s1\nsensors:\n  - {name: a, driver: sim, interval: 1s, seed: 7, base: {t: 3.5}, unit: C, alert_above: 5, alert_below: 1, hysteresis: 0.5}\n",
	"site: s1\nsensors:\n  - name: a\n    driver: sim\n    colour: red\n",
	"site: s1\nsensors:\n  - {name: m, driver: modbus, url: 'rtu:///dev/ttyUSB0?baud=9600&parity=E', unit_id: 3, values: [{metric: v, table: input, address: 30001, type: float32, order: cdab, scale: 0.1}, {metric: b, table: holding, address: 12, type: bool, bit: 3}, {metric: p, table: coil, address: 0, writable: true}]}\n",
	"site: s1\nlisten: 0.0.0.0:4222\nlocal_auth: {user: app, password: pw}\n",
	"site: s1\nlocal_auth: {token: t}\nmetrics_listen: \"\"\nmonitor_listen: 127.0.0.1:8222\n",
	"site: [\n",
	"site: s1\nsensors: 7\n",
	"site: s1\nbuffer:\n  max_bytes: lots\n",
	"&a site: *a\n",
	"site: s1\n---\nsite: s2\n",
	"",
}

// FuzzParseConfig: any bytes give either a config or a *ConfigError, never a
// panic; an accepted config survives the round trip `check-config` relies
// on (print the effective config, parse it again, same config).
func FuzzParseConfig(f *testing.F) {
	for _, s := range configSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig("fuzz.yaml", data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *ConfigError (exit 78 depends on it): %v", err, err)
			}
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("accepted config cannot be printed: %v", err)
		}
		again, err := ParseConfig("fuzz.yaml", out)
		if err != nil {
			t.Fatalf("effective config of an accepted file is rejected: %v\ninput:\n%s\neffective:\n%s", err, data, out)
		}
		out2, err := yaml.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("effective config changes on re-parse:\nfirst:\n%s\nsecond:\n%s", out, out2)
		}
	})
}
