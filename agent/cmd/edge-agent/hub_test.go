package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/uplink/hubops"
	"github.com/nats-io/nats-server/v2/server"
)

func TestHubInit(t *testing.T) {
	hub := testHub(t)
	url := hub.ClientURL()
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"hub", "init", "--server", url, "--max-bytes", "1GiB", "--max-age", "720h"}, 0, "created hub stream EDGE: subjects edge.*.telemetry.> edge.*.alerts.>, duplicate window 2h0m0s, max bytes 1GiB, max age 720h0m0s"},
		{[]string{"hub", "init", "--server", url}, 0, "verified existing (not changed) hub stream EDGE:"},
		{[]string{"hub", "init", "--server", url}, 0, "verified existing (not changed) hub stream EDGE_STATUS: last heartbeat of each site (edge.*.status); read it with: edge-agent fleet --server " + url + "\n"},
		{[]string{"hub", "init", "--server", url, "--dupe-window", "5h"}, 1, "nats stream edit EDGE --dupe-window 5h"},
		{[]string{"hub", "init", "--server", url, "--prefix", "fleet"}, 1, "does not capture fleet.*.telemetry.>"},
		// One account holds one fleet table: a second prefix gets its
		// ingest stream, and the fix for the table.
		{[]string{"hub", "init", "--server", url, "--stream", "OTHER", "--prefix", "other", "--replicas", "1"}, 1, "created hub stream OTHER: subjects other.*.telemetry.>"},
		{[]string{"hub", "init", "--server", url, "--stream", "OTHER", "--prefix", "other"}, 1, "hub stream EDGE_STATUS exists but does not keep one heartbeat per site of other.*.status"},
		{[]string{"hub", "init", "--server", url, "--max-bytes", "lots"}, 1, "--max-bytes: invalid size"},
		{[]string{"hub", "init"}, 2, "--server is required"},
		{[]string{"hub", "init", "--server", "nats://127.0.0.1:1", "--timeout", "2s"}, 1, "connect to hub nats://127.0.0.1:1"},
		{[]string{"hub", "frob"}, 2, "unknown command"},
	}
	for i, tc := range cases {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.out) {
			t.Errorf("%v: exit %d (want %d), output lacks %q:\n%s%s", tc.args, code, tc.code, tc.out, out.String(), errb.String())
		}
		// The first run on the fresh hub creates the fleet table too.
		if want := "created hub stream EDGE_STATUS: last heartbeat of each site (edge.*.status)"; i == 0 && !strings.Contains(out.String(), want) {
			t.Errorf("first init: output lacks %q:\n%s", want, out.String())
		}
	}
	checkStatusStream(t, url)
}

// checkStatusStream asserts the hub at url holds the fleet table as the
// fleet view needs it: one heartbeat per site.
func checkStatusStream(t *testing.T, url string) {
	t.Helper()
	s, err := hubJS(t, url).Stream(t.Context(), hubops.StatusStream)
	if err != nil {
		t.Fatalf("fleet table: %v", err)
	}
	if c := s.CachedInfo().Config; c.MaxMsgsPerSubject != 1 || strings.Join(c.Subjects, " ") != "edge.*.status" {
		t.Fatalf("fleet table config: max_msgs_per_subject %d, subjects %v", c.MaxMsgsPerSubject, c.Subjects)
	}
}

// The demo's dev hub gets both streams, and a second demo run on the same
// directory accepts them.
func TestDemoHubStreams(t *testing.T) {
	hub := testHub(t)
	for range 2 {
		if err := demoHubStream(hub); err != nil {
			t.Fatal(err)
		}
	}
	checkStatusStream(t, hub.ClientURL())
}

// The printed leaf user is valid nats-server config and restricts the site
// to its own subjects.
func TestHubLeafUser(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"hub", "leaf-user", "--site", "store-0042", "--password", "pw"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	conf := "accounts { EDGE { jetstream: enabled, users: [\n" + out.String() + "\n] } }\n"
	path := writeFile(t, t.TempDir(), "hub.conf", conf)
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
	var found bool
	for _, u := range o.Users {
		if u.Username == "store-0042" && u.Permissions != nil && strings.HasPrefix(strings.Join(u.Permissions.Publish.Allow, " "), "edge.store-0042.> _INBOX.> $JSC.R.> ") {
			found = true
		}
	}
	if !found {
		t.Fatalf("site user or its permissions missing from:\n%s", conf)
	}
}
