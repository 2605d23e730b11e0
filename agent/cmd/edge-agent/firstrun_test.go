package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/uplink/hubops"
	"github.com/nats-io/nats-server/v2/server"
)

// TestHubInitRedactsPassword: the hint `hub init` prints (copied into
// tickets and chats) and its errors never carry the password of --server.
func TestHubInitRedactsPassword(t *testing.T) {
	hub := testHub(t, func(o *server.Options) { o.Username, o.Password = "ops", "secret" })
	port := hub.Addr().String()
	for _, tc := range []struct {
		url  string
		code int
		want string
	}{
		{"nats://ops:secret@" + port, 0, "edge-agent fleet --server nats://ops:REDACTED@" + port},
		{"nats://ops:wrongsecret@" + port, 1, "nats://ops:REDACTED@" + port},
	} {
		var out, errb bytes.Buffer
		code := run([]string{"hub", "init", "--server", tc.url, "--timeout", "5s"}, &out, &errb)
		all := out.String() + errb.String()
		if code != tc.code || !strings.Contains(all, tc.want) {
			t.Errorf("%s: exit %d (want %d), output lacks %q:\n%s", tc.url, code, tc.code, tc.want, all)
		}
		if strings.Contains(all, "secret") {
			t.Errorf("%s: the password is printed:\n%s", tc.url, all)
		}
	}
}

// TestDoctorFindsRunningConfig: bare `doctor` checks the config of the
// agent answering on the control socket and says so; with nothing
// answering it falls back to the default path and says that instead; a
// state_dir run will create is not a failure.
func TestDoctorFindsRunningConfig(t *testing.T) {
	cfgPath := cliConfig(t, "")
	// Doctor before the first run: state_dir does not exist yet.
	var out, errb bytes.Buffer
	run([]string{"doctor", "--config", cfgPath}, &out, &errb)
	if !strings.Contains(out.String(), "does not exist yet: run creates it") || strings.Contains(out.String(), "FAIL state_dir") || strings.Contains(out.String(), "CRIT state_dir") {
		t.Errorf("a state_dir run creates is reported as a problem:\n%s", out.String())
	}

	a, _ := startCLIAgent(t, cfgPath)
	sock := a.Config().ControlSocket
	out.Reset()
	run([]string{"doctor", "--socket", sock}, &out, &errb)
	if want := cfgPath + " is valid (site cli-1) (the running agent's config, asked on " + sock + ")"; !strings.Contains(out.String(), want) {
		t.Errorf("doctor output lacks %q:\n%s", want, out.String())
	}

	if _, err := os.Stat(defaultConfig); err == nil {
		t.Skipf("%s exists on this machine: the fallback case needs it absent", defaultConfig)
	}
	out.Reset()
	nobody := filepath.Join(t.TempDir(), "nobody.sock")
	code := run([]string{"doctor", "--socket", nobody}, &out, &errb)
	for _, want := range []string{"(the default path: no agent answered on " + nobody + ")", "fix: create " + defaultConfig} {
		if code != 2 || !strings.Contains(out.String(), want) {
			t.Errorf("exit %d, output lacks %q:\n%s", code, want, out.String())
		}
	}
	if strings.Contains(out.String(), "the key named above") {
		t.Errorf("a fix pointing at a key that is not named:\n%s", out.String())
	}
}

// TestDoctorNamesTheKey: a config error in doctor says which key to change.
func TestDoctorNamesTheKey(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "agent.yaml", "site: s1\nstate_dir: "+dir+"\nbuffer: {sync: 1ns}\n")
	var out, errb bytes.Buffer
	run([]string{"doctor", "--config", p}, &out, &errb)
	if want := "fix: change buffer.sync in " + p; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}

// TestHubInitAddsClockRepublish: an EDGE_STATUS made before sites measured
// their clock against the hub's gains the republish, and hub init says it
// updated the stream.
func TestHubInitAddsClockRepublish(t *testing.T) {
	hub := testHub(t)
	js := hubJS(t, hub.ClientURL())
	old := hubops.StatusStreamConfig("edge")
	old.RePublish = nil
	if _, err := js.CreateStream(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	hubInit(t, hub.ClientURL(), "updated existing hub stream EDGE_STATUS")
	s, err := js.Stream(context.Background(), hubops.StatusStream)
	if err != nil {
		t.Fatal(err)
	}
	if rp := s.CachedInfo().Config.RePublish; rp == nil || rp.Destination != "edge.{{wildcard(1)}}.clock" {
		t.Fatalf("republish: %+v", rp)
	}
}
