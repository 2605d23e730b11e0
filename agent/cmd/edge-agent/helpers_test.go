package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// writeFile writes body to dir/name (private: configs may hold secrets)
// and returns its path.
func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testHub is an in-process JetStream hub on a free port, its options
// adjusted by tune.
func testHub(t *testing.T, tune ...func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true, StoreDir: t.TempDir()}
	for _, f := range tune {
		f(o)
	}
	return testkit.RunServer(t, o)
}

// hubConn is a client connection to url, closed when the test ends.
func hubConn(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// hubJS is a JetStream handle on a client connection to url.
func hubJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(hubConn(t, url))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// hubInit runs `edge-agent hub init` against url and fails the test
// unless it exits 0 and prints want.
func hubInit(t *testing.T, url, want string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run([]string{"hub", "init", "--server", url}, &out, &errb); code != 0 || !strings.Contains(out.String(), want) {
		t.Fatalf("hub init: exit %d, output lacks %q:\n%s%s", code, want, out.String(), errb.String())
	}
}
