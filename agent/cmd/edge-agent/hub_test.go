package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func TestHubInit(t *testing.T) {
	hub, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go hub.Start()
	t.Cleanup(func() { hub.Shutdown(); hub.WaitForShutdown() })
	if !hub.ReadyForConnections(10 * time.Second) {
		t.Fatal("hub not ready")
	}
	url := hub.ClientURL()
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"hub", "init", "--server", url, "--max-bytes", "1GiB", "--max-age", "720h"}, 0, "created hub stream EDGE: subjects edge.*.telemetry.> edge.*.alerts.>, duplicate window 2h0m0s, max bytes 1GiB, max age 720h0m0s"},
		{[]string{"hub", "init", "--server", url}, 0, "verified existing (not changed) hub stream EDGE"},
		{[]string{"hub", "init", "--server", url, "--dupe-window", "5h"}, 1, "nats stream edit EDGE --dupe-window 5h"},
		{[]string{"hub", "init", "--server", url, "--prefix", "fleet"}, 1, "does not capture fleet.*.telemetry.>"},
		{[]string{"hub", "init", "--server", url, "--stream", "OTHER", "--prefix", "other", "--replicas", "1"}, 0, "created hub stream OTHER: subjects other.*.telemetry.>"},
		{[]string{"hub", "init", "--server", url, "--max-bytes", "lots"}, 1, "--max-bytes: invalid size"},
		{[]string{"hub", "init"}, 2, "--server is required"},
		{[]string{"hub", "init", "--server", "nats://127.0.0.1:1", "--timeout", "2s"}, 1, "connect to hub nats://127.0.0.1:1"},
		{[]string{"hub", "frob"}, 2, "unknown command"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.out) {
			t.Errorf("%v: exit %d (want %d), output lacks %q:\n%s%s", tc.args, code, tc.code, tc.out, out.String(), errb.String())
		}
	}
}

// The printed leaf user is valid nats-server config and restricts the site
// to its own subjects.
func TestHubLeafUser(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"hub", "leaf-user", "--site", "store-0042", "--password", "pw"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	conf := "accounts { EDGE { jetstream: enabled, users: [\n" + out.String() + "\n] } }\n"
	path := filepath.Join(t.TempDir(), "hub.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
	var found bool
	for _, u := range o.Users {
		if u.Username == "store-0042" && u.Permissions != nil && strings.Join(u.Permissions.Publish.Allow, " ") == "edge.store-0042.> _INBOX.> $JSC.R.>" {
			found = true
		}
	}
	if !found {
		t.Fatalf("site user or its permissions missing from:\n%s", conf)
	}
}
