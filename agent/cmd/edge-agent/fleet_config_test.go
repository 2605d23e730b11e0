package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/agent/fleetconfig"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

func configRun(url string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append([]string{"fleet", "config", args[0], "--server", url, "--timeout", "20s"}, args[1:]...), &out, &errb)
	return code, out.String(), errb.String()
}

func fragmentFile(t *testing.T, body string) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "frag.yaml", body)
}

// hub init creates the bucket; set validates with the check-config
// decoder (exit 78, key path) before anything reaches the hub, and
// compare-and-sets on the key's revision; get and history read it back.
func TestFleetConfigSetGetHistory(t *testing.T) {
	hub := testHub(t)
	url := hub.ClientURL()
	if code, out, errs := configRun(url, "status"); code != 1 || !strings.Contains(errs, "edge-agent hub init") {
		t.Fatalf("no bucket yet: exit %d %s%s", code, out, errs)
	}
	hubInit(t, url, "created hub bucket EDGE_CONFIG")

	for _, tc := range []struct{ body, want string }{
		{"log_levle: debug\n", `frag.yaml (for site.s1):1: log_levle: unknown key`},
		{"buffer:\n  max_bytes: lots\n", `buffer.max_bytes: invalid size "lots"`},
		{"sensors:\n  - {name: a, driver: nope}\n", `sensors[0].driver: unknown driver`},
		{"site: other\n", `site: the hub may never set this key`},
	} {
		code, _, errs := configRun(url, "set", "--site", "s1", fragmentFile(t, tc.body))
		if code != 78 || !strings.Contains(errs, tc.want) {
			t.Errorf("set %q: exit %d, stderr %q, want 78 and %q", tc.body, code, errs, tc.want)
		}
	}
	f := fragmentFile(t, "log_level: debug\n")
	if code, out, errs := configRun(url, "set", "--site", "s1", f); code != 0 || out != "site.s1: revision 1\n" {
		t.Fatalf("set: exit %d %q %q", code, out, errs)
	}
	// Without --revision on an existing key, or with a stale one: refused,
	// naming the current revision.
	if code, _, errs := configRun(url, "set", "--site", "s1", f); code != 1 || !strings.Contains(errs, "site.s1 is at revision 1, not 0") {
		t.Fatalf("blind overwrite: exit %d %q", code, errs)
	}
	g := fragmentFile(t, "uplink:\n  hub_urls: [\"nats://hub-2:7422\"]\n")
	code, o, errs := configRun(url, "set", "--site", "s1", g, "--revision", "1")
	if code != 0 || o != "site.s1: revision 2\n" || !strings.Contains(errs, "warning: ") || !strings.Contains(errs, "uplink.hub_urls, outside the default remote_config.allow") {
		t.Fatalf("set --revision 1: exit %d %q %q", code, o, errs)
	}
	if code, out, _ := configRun(url, "get", "--site", "s1", "--revision", "1"); code != 0 || !strings.HasSuffix(out, "log_level: debug\n") || !strings.HasPrefix(out, "# site.s1 revision 1, ") {
		t.Fatalf("get --revision 1: %d %q", code, out)
	}
	if code, out, _ := configRun(url, "history", "--site", "s1"); code != 0 || !strings.Contains(out, "\n1 ") || !strings.Contains(out, "\n2 ") {
		t.Fatalf("history: %d %q", code, out)
	}
}

// Two operators racing on one key with the same base revision: exactly one
// write lands, the other is told the current revision.
func TestFleetConfigRace(t *testing.T) {
	url := testHub(t).ClientURL()
	hubInit(t, url, "")
	if code, _, errs := configRun(url, "set", "--group", "north", fragmentFile(t, "log_level: info\n")); code != 0 {
		t.Fatal(errs)
	}
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		codes := make([]int, 2)
		errs := make([]string, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], _, errs[i] = configRun(url, "set", "--group", "north", fragmentFile(t, "log_level: debug\n"), "--revision", strings.TrimSpace(string(rune('1'+round))))
			}()
		}
		wg.Wait()
		if codes[0]+codes[1] != 1 {
			t.Fatalf("round %d: exits %v, want one 0 and one 1: %q", round, codes, errs)
		}
		lost := errs[0] + errs[1]
		if !strings.Contains(lost, "someone changed it since") {
			t.Fatalf("round %d: the loser was not told: %q", round, lost)
		}
	}
}

// status compares each site's last heartbeat with the bucket and lists
// drift first, with why.
func TestFleetConfigStatus(t *testing.T) {
	url := testHub(t).ClientURL()
	hubInit(t, url, "")
	configRun(url, "set", "--fleet", fragmentFile(t, "log_level: info\n"))                // rev 1
	configRun(url, "set", "--group", "north", fragmentFile(t, "log_level: debug\n"))      // rev 2
	configRun(url, "set", "--site", "s3", fragmentFile(t, "uplink: {bandwidth: 1KiB}\n")) // rev 3
	nc := hubConn(t, url)
	beat := func(site string, r fleetconfig.Report) {
		data, _ := json.Marshal(wire.Heartbeat{Schema: 1, Site: site, Version: "t", Interval: 30, State: "healthy", Link: "connected", Config: &r})
		if err := nc.Publish(wire.StatusSubject("edge", site), data); err != nil {
			t.Fatal(err)
		}
	}
	beat("s1", fleetconfig.Report{DesiredRev: 2, AppliedRev: 2, State: "applied", Groups: []string{"north"}})
	beat("s2", fleetconfig.Report{DesiredRev: 1, AppliedRev: 1, State: "applied", Groups: []string{"north"}, Sync: "the hub has no EDGE_CONFIG bucket"})
	beat("s3", fleetconfig.Report{DesiredRev: 3, AppliedRev: 1, State: "rolled_back", Error: "health gate failed", Fragments: "fleet@1"})
	_ = nc.Flush()
	var st []fleetconfig.SiteStatus
	testkit.WaitFor(t, 10*time.Second, func() error {
		code, out, errs := configRun(url, "status", "--json")
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 3 {
			return fmt.Errorf("status: %d %s %s", code, out, errs)
		}
		if code != 1 {
			t.Fatalf("drift but exit %d: %s", code, errs)
		}
		return nil
	})
	got := map[string]fleetconfig.SiteStatus{}
	for _, s := range st {
		got[s.Site] = s
	}
	if st[2].Site != "s1" || got["s1"].Drift != "" || got["s1"].Latest != 2 {
		t.Errorf("s1 is current and listed last: %+v", st)
	}
	if !strings.Contains(got["s2"].Drift, "has not seen rev 2: the hub has no EDGE_CONFIG bucket") {
		t.Errorf("s2 drift %q", got["s2"].Drift)
	}
	if got["s3"].Latest != 3 || got["s3"].Drift != "rolled_back: health gate failed" {
		t.Errorf("s3 %+v", got["s3"])
	}
	code, fleet, _ := fleetRun(t, url)
	if code != 0 || !strings.Contains(fleet, "rev 1 rolled_back") || !strings.Contains(fleet, "config drift: s3 applied rev 1 of 3: rolled_back: health gate failed") || strings.Contains(fleet, "drift: s1") {
		t.Fatalf("fleet view (exit %d):\n%s", code, fleet)
	}
	code, diff, errs := configRun(url, "diff", "--site", "s3")
	if want := "site s3: rolled_back, applied rev 1\n= fleet@1\n~ site.s3: applied @0, hub @3\n  + uplink: {bandwidth: 1KiB}\n"; code != 0 || diff != want {
		t.Fatalf("diff (exit %d, %s):\n%s\nwant:\n%s", code, errs, diff, want)
	}
	code, table, _ := configRun(url, "status")
	if code != 1 || !strings.HasPrefix(table, "SITE  LATEST  DESIRED  APPLIED  STATE") || !strings.Contains(table, "rolled_back  health gate failed") {
		t.Fatalf("table (exit %d):\n%s", code, table)
	}
}

// A run ended by a remote config restart exits 75, which the unit's
// Restart=on-failure restarts (systemd/test.sh checks the unit side).
func TestExitRestart(t *testing.T) {
	if code := exitFor(fmt.Errorf("remote-config: %w", agent.ErrRestart), io.Discard); agent.ExitRestart != 75 || code != 75 {
		t.Fatalf("exit %d, want 75", code)
	}
}

// rollout refuses bad waves and a group no site has reported, before it
// writes anything.
func TestFleetConfigRolloutArgs(t *testing.T) {
	url := testHub(t).ClientURL()
	hubInit(t, url, "")
	f := fragmentFile(t, "log_level: debug\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--group", "north", f, "--waves", "50%,25%,100%"}, "each wave must cover more sites"},
		{[]string{"--group", "north", f, "--waves", "5%,25%"}, "the last wave must be 100%"},
		{[]string{"--group", "north", f, "--abort-on", "lots"}, "--abort-on"},
		{[]string{"--group", "north", fragmentFile(t, "groups: [x]\n")}, "the hub may never set this key"},
		{[]string{"--group", "north", f}, "no site has reported group north"},
	} {
		code, _, errs := configRun(url, append([]string{"rollout"}, tc.args...)...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("rollout %v: exit %d %q, want %q", tc.args, code, errs, tc.want)
		}
	}
	if code, out, errs := configRun(url, "get", "--group", "north"); code != 1 || !strings.Contains(errs, "key not found") {
		t.Fatalf("rollout wrote group.north: %d %s %s", code, out, errs)
	}
}
