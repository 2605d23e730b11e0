package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", "site: s1\nbogus: 1\n")
	// buffer.sync: 1ns used to pass check-config and panic inside
	// nats-server at run.
	tinySync := writeFile(t, dir, "sync.yaml", "site: s1\nstate_dir: "+dir+"\ncontrol_socket: "+dir+"/a.sock\nbuffer: {sync: 1ns}\n")
	// The seed documents' remote with allow lists: nats-server refuses
	// them; check-config used to accept the file.
	allow := writeFile(t, dir, "allow.conf", "leafnodes {\n  remotes = [\n    {\n      url: \"nats://hub:7422\"\n      allow_import: [\"config.>\"]\n    }\n  ]\n}\n")
	seed := writeFile(t, dir, "seed.yaml", "site: s1\nstate_dir: "+dir+"\ncontrol_socket: "+dir+"/b.sock\nnats_config: "+allow+"\n")
	good := writeFile(t, dir, "good.yaml", "site: s1\nstate_dir: "+dir+"\nuplink:\n  hub_urls: [\"tls://leaf:pw@hub:7422\"]\n")
	ws := writeFile(t, dir, "ws.conf", "websocket { port: 8080, no_tls: true }\n")
	open := writeFile(t, dir, "open.yaml", "site: s1\nstate_dir: "+dir+"\nnats_config: "+ws+"\n")
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"check-config", open}, 78, "ws.conf: websocket: listens on 0.0.0.0:8080"},
		{[]string{"run", "--config", open}, 78, "ws.conf: websocket: listens on 0.0.0.0:8080"},
		{[]string{"check-config", bad}, 78, "bad.yaml:2: bogus: unknown key"},
		{[]string{"run", "--config", bad}, 78, "unknown key"},
		{[]string{"run", "--config", filepath.Join(dir, "missing.yaml")}, 78, "cannot read"},
		{[]string{"check-config", seed}, 78, "allow.conf:5: allow_import: nats-server rejects it"},
		{[]string{"run", "--config", seed}, 78, "allow.conf:5: allow_import: nats-server rejects it"},
		{[]string{"check-config", tinySync}, 78, "buffer.sync: 1ns is too small"},
		{[]string{"run", "--config", tinySync}, 78, "buffer.sync: 1ns is too small"},
		{[]string{"check-config", good}, 0, "tls://leaf:REDACTED@hub:7422"},
		{[]string{"version"}, 0, "nats-server: 2."},
		{[]string{"sensors", "sample", "sim"}, 0, "driver: sim"},
		{[]string{"frobnicate"}, 2, "unknown command"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d\n%s%s", tc.args, code, tc.code, out.String(), errb.String())
		}
		if !strings.Contains(out.String()+errb.String(), tc.out) {
			t.Errorf("%v: output lacks %q:\n%s%s", tc.args, tc.out, out.String(), errb.String())
		}
		if strings.Contains(out.String(), ":pw@") {
			t.Errorf("%v: password printed", tc.args)
		}
	}
}
