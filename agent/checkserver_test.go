package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigIsRunsValidation: the seed documents' leaf configs,
// verbatim through nats_config (hosts left as printed: nothing is dialled
// before the server runs), give check-config's CheckServer and run the same
// verdict and, when refused, the same ConfigError naming the file and key.
// On the parent, the allow_import remote, the unknown remote account, the
// remote duplicating uplink.hub_urls and the accounts file without
// local_auth all passed the check and failed in run (78, 1, 1, 1).
func TestCheckConfigIsRunsValidation(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "accounts.conf", `accounts: {
  SYS: { users: [ {user: sys, password: sys} ] }
  ACC: { users: [ {user: admin, password: admin} ], jetstream: enabled }
}
system_account: SYS
`, 0o600)
	cases := []struct {
		name, conf, yaml string
		key, want        string // want "" = accepted
	}{
		{"001 core cluster remotes", "listen: 0.0.0.0:4222\njetstream: {\nstoreDir: \"./store\"\n}\nleaf {\nremotes = [\n{ url: \"nats://nats-1:4222\" },\n{ url: \"nats://nats-2:4222\" },\n{ url: \"nats://nats-3:4222\" }\n]\n}\n", "", "", ""},
		{"002 token remote with its braces", "leafnodes {\n  remotes = [\n    { url: \"nats://s3cr3t@localhost\" }\n  ]\n}\n", "", "", ""},
		{"002 as printed (braces lost)", "listen: \"\"\nleafnodes {\nremotes = [\nurl: \"nats://s3cr3t@localhost\"\n]\n}\n", "", "nats_config", "Parse error on line 4"},
		{"000 branch over TLS", "port: 4222\nleafnodes {\n  remotes: [\n    {\n      url: \"tls://leaf:leaf-secret@hub.example.com:7422\"\n    }\n  ]\n}\n", "", "", ""},
		{"000 domains with accounts, no local_auth", "port: 4222\nserver_name: branch-1\njetstream {\n  store_dir: \"./store_leaf\"\n  domain: \"branch-1\"\n}\nleafnodes {\n  remotes: [\n    {\n      urls: [\"nats://admin:admin@hub.example.com:7422\"]\n      account: \"ACC\"\n    }\n  ]\n}\ninclude \"./accounts.conf\"\n", "", "local_auth", "requires local clients to authenticate"},
		{"000 domains with accounts and local_auth", "port: 4222\nserver_name: branch-1\njetstream {\n  store_dir: \"./store_leaf\"\n  domain: \"branch-1\"\n}\nleafnodes {\n  remotes: [\n    {\n      urls: [\"nats://admin:admin@hub.example.com:7422\"]\n      account: \"ACC\"\n    }\n  ]\n}\ninclude \"./accounts.conf\"\n", "local_auth: {user: admin, password: admin}\n", "", ""},
		{"000 local_auth not a user of the file", "include \"./accounts.conf\"\n", "local_auth: {user: app, password: x}\n", "local_auth.user", `"app" is not a user of`},
		{"003 remote account not defined", "leafnodes {\n  remotes = [\n    {\n      url: \"nats://leaf_user:secure_password@hub-cluster:7422\"\n      account: \"edge-account\"\n    }\n  ]\n}\n", "", "nats_config", `cannot find local account "edge-account"`},
		{"003 reconnect keys on a remote", "leafnodes {\n  remotes = [\n    {\n      url: \"nats://hub-cluster:7422\"\n      reconnect_time_wait: 5s\n      max_reconnect_attempts: 10\n    }\n  ]\n}\n", "", "reconnect_time_wait", `unknown field "max_reconnect_attempts"`},
		{"003 allow lists on a remote", "leafnodes {\n  remotes = [\n    {\n      url: \"nats://hub-cluster:7422\"\n      deny_import: \">\"\n      allow_import: [\"commands.edge1.>\", \"config.>\"]\n      deny_export: \">\"\n      allow_export: [\"sensors.>\", \"alerts.>\"]\n    }\n  ]\n}\n", "", "allow_import", "keep deny_* on the leaf, and put the allow lists on the hub"},
		{"003 deny lists on a remote", "leafnodes {\n  remotes = [\n    {\n      url: \"nats://hub-cluster:7422\"\n      deny_import: [\"secret.>\"]\n      deny_export: [\"local.>\"]\n    }\n  ]\n}\n", "", "", ""},
		{"003 remote TLS files missing", "leafnodes {\n  remotes = [\n    {\n      url: \"tls://hub-cluster:7422\"\n      tls {\n        cert_file: \"/nonexistent/leaf-cert.pem\"\n        key_file: \"/nonexistent/leaf-key.pem\"\n      }\n    }\n  ]\n}\n", "", "nats_config", "leaf-cert.pem: no such file"},
		{"remote duplicating uplink.hub_urls", "leafnodes {\n  remotes = [ { url: \"nats://leaf:pw@127.0.0.1:7422\" } ]\n}\n", "uplink:\n  hub_urls: [nats://127.0.0.1:7422]\n", "uplink.hub_urls[0]", "is also dialled by leafnodes.remotes[0]"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conf := writeFile(t, dir, fmt.Sprintf("leaf%d.conf", i), tc.conf, 0o600)
			state := t.TempDir()
			y := agentYAML(state, state, fmt.Sprintf("nats_config: %s\n%s", conf, tc.yaml))
			var ce *ConfigError
			cfg, err := ParseConfig(filepath.Join(state, "agent.yaml"), []byte(y))
			if err != nil {
				// Validate parses nats_config already: check-config and
				// run both stop at loading the file, with this error.
				if tc.want == "" || !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("load: %v; want a ConfigError for key %q containing %q", err, tc.key, tc.want)
				}
				return
			}
			checkErr := CheckServer(cfg)
			if _, err := os.Stat(filepath.Join(state, "machine-id")); err == nil {
				t.Error("the check wrote state_dir/machine-id")
			}
			runErr := tryRun(t, cfg)
			if tc.want == "" {
				if checkErr != nil || runErr != nil {
					t.Fatalf("want accepted: check %v, run %v", checkErr, runErr)
				}
				return
			}
			if !errors.As(checkErr, &ce) || ce.Key != tc.key || !strings.Contains(checkErr.Error(), tc.want) {
				t.Fatalf("check: %v; want a ConfigError for key %q containing %q", checkErr, tc.key, tc.want)
			}
			if runErr == nil || runErr.Error() != checkErr.Error() || !errors.As(runErr, &ce) {
				t.Fatalf("run and check disagree:\nrun:   %v\ncheck: %v", runErr, checkErr)
			}
			if strings.Contains(checkErr.Error(), ":pw@") || strings.Contains(checkErr.Error(), "secure_password") {
				t.Errorf("a password in the error: %v", checkErr)
			}
		})
	}
}
