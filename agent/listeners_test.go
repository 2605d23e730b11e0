package agent

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// Every listener beyond loopback needs authentication, whichever file
// opened it; a user needs a password. Refusals name the file and the key,
// and check-config refuses what run refuses (both call ParseConfig).
func TestListenersBeyondLoopbackNeedAuth(t *testing.T) {
	const yamlAuth = "local_auth: {user: app, password: pw}\n"
	cases := []struct {
		name       string
		yaml, conf string // agent.yaml body after site; nats_config text ("" none)
		file, key  string // the refusal's file ("yaml" or "conf") and key; "" accepted
		want       string
	}{
		{"listen without auth", "listen: 0.0.0.0:4222\n", "", "yaml", "listen", "no local_auth"},
		{"listen with a user but no password", "listen: 0.0.0.0:4222\nlocal_auth: {user: a}\n", "", "yaml", "local_auth.password", `anyone may connect as "a"`},
		{"loopback user without password", "local_auth: {user: a}\n", "", "yaml", "local_auth.password", "required"},
		{"listen with an empty token", "listen: 0.0.0.0:4222\nlocal_auth: {token: \"\"}\n", "", "yaml", "listen", "local_auth is empty"},
		{"listen with local_auth", "listen: 0.0.0.0:4222\n" + yamlAuth, "", "", "", ""},
		{"listen with the file's users", "listen: 0.0.0.0:4222\n", "authorization { users = [{user: app, password: pw}] }\n", "", "", ""},
		{"listen with a file user without password", "listen: 0.0.0.0:4222\n", "authorization { users = [{user: app}] }\n", "yaml", "listen", `user "app" has no password`},
		{"listen with no_auth_user", "listen: 0.0.0.0:4222\n", "accounts { A { users = [{user: app, password: pw}] } }\nno_auth_user: app\n", "yaml", "listen", "no_auth_user"},
		{"monitor_listen public", "monitor_listen: 0.0.0.0:8222\n" + yamlAuth, "", "yaml", "monitor_listen", "no authentication"},
		{"monitor_listen loopback", "monitor_listen: 127.0.0.1:8222\n", "", "", "", ""},
		{"file monitor on the listen host", "", "monitor_port: 8222\n", "", "", ""},
		{"file monitor public", yamlAuth, "http: 0.0.0.0:8222\n", "conf", "http", "no authentication"},
		{"websocket public", "", "websocket { port: 8080, no_tls: true }\n", "conf", "websocket", "no local_auth"},
		{"websocket loopback", "", "websocket { listen: 127.0.0.1:8080, no_tls: true }\n", "", "", ""},
		{"websocket with local_auth", yamlAuth, "websocket { port: 8080, no_tls: true }\n", "", "", ""},
		{"websocket own user without password", yamlAuth, "websocket { port: 8080, no_tls: true, authorization { user: w } }\n", "conf", "websocket", `user "w" has no password`},
		{"mqtt public", "", "server_name: m\nmqtt { port: 1883 }\n", "conf", "mqtt", "no local_auth"},
		{"mqtt own token", "", "server_name: m\nmqtt { port: 1883, authorization { token: s3cr3t } }\n", "", "", ""},
		{"leafnodes accept public", "", "leafnodes { port: 7422 }\n", "conf", "leafnodes", "no local_auth"},
		{"leafnodes accept own auth", "", "leafnodes { port: 7422, authorization { user: l, password: p } }\n", "", "", ""},
		{"leafnodes accept client users", "", "authorization { users = [{user: app, password: pw}] }\nleafnodes { port: 7422 }\n", "", "", ""},
		{"cluster public", yamlAuth, "cluster { name: c, port: 6222 }\n", "conf", "cluster", "routes"},
		{"cluster with auth", yamlAuth, "cluster { name: c, port: 6222, authorization { user: r, password: p } }\n", "", "", ""},
		{"gateway public", yamlAuth, "gateway { name: g, port: 7222 }\n", "conf", "gateway", "gateways"},
	}
	pki := testkit.NewPKI(t, time.Now().Add(time.Hour))
	cases = append(cases, struct {
		name       string
		yaml, conf string
		file, key  string
		want       string
	}{"file https monitor public", yamlAuth, fmt.Sprintf("https: 0.0.0.0:8223\ntls { cert_file: %q, key_file: %q }\n", pki.CertFile, pki.KeyFile), "conf", "https", "no authentication"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			y := "site: s1\nstate_dir: " + dir + "\n" + tc.yaml
			conf := ""
			if tc.conf != "" {
				conf = writeFile(t, dir, "leaf.conf", tc.conf, 0o600)
				y += "nats_config: " + conf + "\n"
			}
			path := filepath.Join(dir, "agent.yaml")
			_, err := ParseConfig(path, []byte(y))
			if tc.key == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want a ConfigError, got %v", err)
			}
			wantFile := path
			if tc.file == "conf" {
				wantFile = conf
			}
			if ce.File != wantFile || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.want) {
				t.Fatalf("got file %s key %q: %v\nwant file %s key %q containing %q", ce.File, ce.Key, err, wantFile, tc.key, tc.want)
			}
		})
	}
}
