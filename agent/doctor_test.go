package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/sensors"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// doctorConfig writes a test agent's agent.yaml whose uplink is the given
// block.
func doctorConfig(t *testing.T, uplinkBlock string) string {
	t.Helper()
	dir := t.TempDir()
	return writeFile(t, dir, "agent.yaml", agentYAML(dir, dir, "uplink:\n"+uplinkBlock), 0o600)
}

// hubCheck is doctor's hub line for cfgPath and the lines that follow it
// (leaf permissions, hub stream) by name.
func hubCheck(t *testing.T, cfgPath string) (Check, map[string]Check) {
	t.Helper()
	d := NewDoctor()
	d.StepTimeout = 5 * time.Second
	d.ThrottledPath = filepath.Join(t.TempDir(), "absent")
	var hub *Check
	after := map[string]Check{}
	for _, c := range d.Run(context.Background(), cfgPath) {
		switch {
		case c.Name == "hub":
			hub = &c
		case hub != nil:
			after[c.Name] = c
		}
	}
	if hub == nil {
		t.Fatal("no hub check")
	}
	return *hub, after
}

// permHub is a hub with the EDGE stream whose users are leafUser (in the
// hub's config syntax) and ops.
func permHub(t *testing.T, leafUser string) *server.Server {
	t.Helper()
	hub := serverFromConfig(t, fmt.Sprintf(`listen: 127.0.0.1:-1
leafnodes { listen: 127.0.0.1:-1 }
jetstream { store_dir: %q, domain: hub }
accounts { EDGE { jetstream: enabled, users: [
%s
{user: ops, password: ops}
] } }
`, t.TempDir(), leafUser))
	hubInit(t, jsConnect(t, hub.ClientURL(), nats.UserInfo("ops", "ops")), edgeStream)
	return hub
}

func tlsHub(t *testing.T, p testkit.PKI, auth bool) *server.Server {
	t.Helper()
	return testkit.TLSHub(t, p, false, func(o *server.Options) {
		o.LeafNode.TLSTimeout = 5
		if auth {
			o.LeafNode.Username, o.LeafNode.Password = "site", "s3cret-ok"
		}
	})
}

func TestDoctorHubSteps(t *testing.T) {
	good := testkit.NewPKI(t, time.Now().Add(90*24*time.Hour))
	other := testkit.NewPKI(t, time.Now().Add(90*24*time.Hour))
	expired := testkit.NewPKI(t, time.Now().Add(-72*time.Hour-time.Minute))
	okHub := tlsHub(t, good, true)
	hubInit(t, jsConnect(t, okHub.ClientURL()), edgeStream)
	noStreamHub := tlsHub(t, good, true)
	// s1's leaf user copied from another site's entry: it may not publish
	// edge.s1.>.
	otherSiteHub := permHub(t, `{user: s1, password: pw1, permissions: {publish: {allow: ["edge.s2.>", "_INBOX.>"]}, subscribe: {allow: ["edge.s2.>", "_INBOX.>"]}}}`)
	// The hub takes edge.> from s1 but its telemetry is denied.
	deniedHub := permHub(t, `{user: s1, password: pw1, permissions: {publish: {allow: ["edge.>", "_INBOX.>"], deny: ["edge.s1.telemetry.>"]}, subscribe: {allow: ["edge.s1.>", "_INBOX.>"]}}}`)
	// s1 may use the hub's JetStream API but publish none of its subjects.
	apiOnlyHub := permHub(t, `{user: s1, password: pw1, permissions: {publish: {allow: ["other.>", "_INBOX.>", "$JS.hub.API.>"]}, subscribe: {allow: ["edge.s1.>", "_INBOX.>"]}}}`)
	// The README's entry for s1 (hubops.SitePermissions).
	siteHub := permHub(t, hubops.HubLeafUser("edge", "s1", "pw1"))
	expiredHub := tlsHub(t, expired, false)
	closed := testkit.FreePort(t)
	// A hub that requires a client certificate signed by its CA.
	mtlsHub := testkit.TLSHub(t, good, true, func(o *server.Options) { o.LeafNode.TLSTimeout = 5 })

	cases := []struct {
		name, block string
		verdict     Verdict
		detail      string
		fix         string // empty: any fix
		// after is the verdict, detail and fix wanted of the lines after
		// the hub line, by name ("-": no such line).
		after map[string][3]string
	}{
		{"unknown host", "  hub_urls: [nats://hub-1.invalid:7422]\n", CheckFail, "DNS: hub-1.invalid not found", "", nil},
		{"closed port", fmt.Sprintf("  hub_urls: [nats://127.0.0.1:%d]\n", closed), CheckFail, "TCP: connection refused by 127.0.0.1:", "", nil},
		{"expired certificate", fmt.Sprintf("  hub_urls: [%s]\n  tls: {ca_file: %s}\n", leafURL(t, expiredHub, "tls"), expired.CAFile), CheckFail, "TLS: certificate expired 3 days ago (TCP ok)", "", nil},
		{"wrong CA", fmt.Sprintf("  hub_urls: [%s]\n  tls: {ca_file: %s}\n", leafURL(t, okHub, "tls"), other.CAFile), CheckFail, "TLS: certificate signed by an unknown authority", "", nil},
		{"wrong password", fmt.Sprintf("  hub_urls: [%s]\n  user: site\n  password: s3cret-bad\n  tls: {ca_file: %s}\n", leafURL(t, okHub, "tls"), good.CAFile), CheckFail,
			"auth: the hub refused this site's user/password (authorization violation) (TCP, TLS ok)", `check uplink.user ("site") and uplink.password`, nil},
		// The hub's "client didn't provide a certificate" reaches the
		// client as an alert after a TLS 1.3 handshake that looked fine.
		{"client certificate missing", fmt.Sprintf("  hub_urls: [%s]\n  user: site\n  password: s3cret-ok\n  tls: {ca_file: %s}\n", leafURL(t, mtlsHub, "tls"), good.CAFile), CheckFail,
			"TLS: the hub requires a client certificate and uplink.tls.cert_file is not set", "set uplink.tls.cert_file and uplink.tls.key_file", nil},
		{"client certificate of another CA", fmt.Sprintf("  hub_urls: [%s]\n  tls: {ca_file: %s, cert_file: %s, key_file: %s}\n", leafURL(t, mtlsHub, "tls"), good.CAFile, other.CertFile, other.KeyFile), CheckFail,
			"TLS: the hub refused the client certificate in uplink.tls.cert_file", "uplink.tls.cert_file is not one the hub accepts", nil},
		{"all good", fmt.Sprintf("  hub_urls: [%s]\n  user: site\n  password: s3cret-ok\n  tls: {ca_file: %s}\n", leafURL(t, okHub, "tls"), good.CAFile), CheckOK, "TCP, TLS (hub issued by edge-agent test CA, expires in 8", "",
			map[string][3]string{"leaf perms": {"ok", "may publish edge.s1.telemetry.>", ""}, "hub stream": {"ok", "hub stream EDGE captures edge.s1.telemetry.>", ""}}},
		{"hub's leaf-user entry", fmt.Sprintf("  hub_urls: [%s]\n  user: s1\n  password: pw1\n", leafURL(t, siteHub, "nats")), CheckOK, "DNS, TCP, auth ok", "",
			map[string][3]string{"leaf perms": {"ok", "may publish edge.s1.telemetry.>", ""}, "hub stream": {"ok", "hub stream EDGE captures", ""}}},
		{"no hub stream", fmt.Sprintf("  hub_urls: [%s]\n  user: site\n  password: s3cret-ok\n  tls: {ca_file: %s}\n", leafURL(t, noStreamHub, "tls"), good.CAFile), CheckOK, "auth ok", "",
			map[string][3]string{"leaf perms": {"skip", "not provable until a hub stream captures edge.s1.telemetry.>", ""}, "hub stream": {"fail", "no hub stream captures edge.s1.telemetry.>", "edge-agent hub init"}}},
		{"leaf user of another site", fmt.Sprintf("  hub_urls: [%s]\n  user: s1\n  password: pw1\n", leafURL(t, otherSiteHub, "nats")), CheckOK, "auth ok", "",
			map[string][3]string{"leaf perms": {"fail", "a publish to edge.s1.telemetry.doctor from this site got no answer", "allow publish to edge.s1.> for this site's leaf user"}, "hub stream": {"-"}}},
		{"hub API only", fmt.Sprintf("  hub_urls: [%s]\n  user: s1\n  password: pw1\n", leafURL(t, apiOnlyHub, "nats")), CheckOK, "auth ok", "",
			map[string][3]string{"leaf perms": {"fail", "hub stream EDGE captures edge.s1.telemetry.> but the hub does not take it from this site", "allow publish to edge.s1.>"}, "hub stream": {"ok", "hub stream EDGE captures", ""}}},
		{"telemetry denied", fmt.Sprintf("  hub_urls: [%s]\n  user: s1\n  password: pw1\n", leafURL(t, deniedHub, "nats")), CheckOK, "auth ok", "",
			map[string][3]string{"leaf perms": {"fail", "a publish to edge.s1.telemetry.doctor from this site got no answer", "edge-agent hub leaf-user --site s1"}, "hub stream": {"-"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, after := hubCheck(t, doctorConfig(t, tc.block))
			for name, want := range tc.after {
				got, ok := after[name]
				if want[0] == "-" {
					if ok {
						t.Errorf("%s = %+v, want no such line", name, got)
					}
					continue
				}
				if string(got.Verdict) != want[0] || !strings.Contains(got.Detail, want[1]) || !strings.Contains(got.Fix, want[2]) {
					t.Errorf("%s = %s %q fix %q, want %s containing %q, fix containing %q", name, got.Verdict, got.Detail, got.Fix, want[0], want[1], want[2])
				}
			}
			if tc.verdict == CheckFail && len(after) > 0 {
				t.Errorf("lines after a failed hub step: %+v", after)
			}
			if c.Verdict != tc.verdict || !strings.Contains(c.Detail, tc.detail) {
				t.Fatalf("hub check = %s %q, want %s containing %q", c.Verdict, c.Detail, tc.verdict, tc.detail)
			}
			if strings.Contains(c.Detail, "s3cret") {
				t.Errorf("password shown: %q", c.Detail)
			}
			if tc.verdict == CheckFail && c.Fix == "" {
				t.Error("failure without a fix")
			}
			if !strings.Contains(c.Fix, tc.fix) {
				t.Errorf("fix %q, want it to contain %q", c.Fix, tc.fix)
			}
			if strings.Contains(c.Detail, "TLS ok") && strings.Contains(c.Detail, "TLS:") {
				t.Errorf("a TLS failure reported with TLS ok: %q", c.Detail)
			}
		})
	}
}

func TestDoctorDeviceAndPower(t *testing.T) {
	d := NewDoctor()
	d.ThrottledPath = writeFile(t, t.TempDir(), "get_throttled", "50005\n", 0o644)
	if c := d.power(); c.Verdict != CheckFail || !strings.Contains(c.Detail, "under-voltage now") {
		t.Errorf("power = %+v", c)
	}
	d.ThrottledPath = writeFile(t, t.TempDir(), "get_throttled", "0\n", 0o644)
	if c := d.power(); c.Verdict != CheckOK {
		t.Errorf("power = %+v", c)
	}

	opts := &struct {
		Bus  string
		Addr int
		Dev  string
	}{Bus: "/dev/i2c-doctor-missing", Dev: "/sys/kernel"}
	cfg := &Config{Sensors: nil}
	if got := devicePaths(opts); len(got) != 2 || got[0] != "/dev/i2c-doctor-missing" {
		t.Fatalf("devicePaths = %v", got)
	}
	cfg.Sensors = append(cfg.Sensors, sensors.Config{Name: "ambient", Driver: "bme280", Options: opts})
	checks := deviceChecks(cfg)
	if len(checks) != 2 || checks[0].Verdict != CheckFail || !strings.Contains(checks[0].Fix, "I2C") || checks[1].Verdict != CheckOK {
		t.Errorf("device checks = %+v", checks)
	}
}

func TestDoctorBadConfigAndExit(t *testing.T) {
	dir := t.TempDir()
	creds := writeFile(t, dir, "hub.creds", "x", 0o644)
	path := writeFile(t, dir, "agent.yaml", fmt.Sprintf("site: s1\nstate_dir: %s\nuplink:\n  hub_urls: [nats://127.0.0.1:1]\n  credentials: %s\n", dir, creds), 0o600)
	checks := NewDoctor().Run(context.Background(), path)
	if checks[0].Name != "config" || checks[0].Verdict != CheckFail || !strings.Contains(checks[0].Detail, "chmod 600") {
		t.Fatalf("config check = %+v", checks[0])
	}
	if DoctorExit(checks) != 2 {
		t.Errorf("exit %d, want 2", DoctorExit(checks))
	}
	if DoctorExit([]Check{{Verdict: CheckOK}, {Verdict: CheckSkip}}) != 0 || DoctorExit([]Check{{Verdict: CheckOK}, {Verdict: CheckWarn}}) != 1 {
		t.Error("exit codes")
	}
	if _, err := os.Stat(filepath.Join(dir, "agent.sock")); err == nil {
		t.Error("doctor created files")
	}
}
