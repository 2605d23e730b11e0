package buffer

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/confkit"
	"github.com/edge-agent/edge-agent/internal/testkit"
)

// jsServer starts an in-process server the way the agent configures it
// (explicit sync policy and max_file_store) on dir.
func jsServer(t testing.TB, dir string, c Config) (*server.Server, jetstream.JetStream) {
	t.Helper()
	o := &server.Options{
		ServerName: "buffer-test", Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, JetStreamDomain: "site", StoreDir: dir,
		JetStreamMaxStore: c.MaxFileStore(), JetStreamMaxMemory: 64 << 20,
		SyncAlways: c.SyncAlways(), SyncInterval: c.SyncInterval(),
	}
	if o.SyncAlways {
		o.SyncInterval = 2 * time.Minute
	}
	s := testkit.RunServer(t, o)
	_, js := testkit.Connect(t, "", nats.InProcessServer(s))
	return s, js
}

func testConfig(sync string, maxBytes confkit.Size) Config {
	c := DefaultConfig()
	c.Sync, c.MaxBytes = sync, maxBytes
	return c
}

func publishN(t testing.TB, js jetstream.JetStream, subject string, n, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data := make([]byte, size)
	for i := range n {
		if _, err := js.Publish(ctx, subject, data); err != nil {
			t.Fatalf("publish %d to %s: %v", i, subject, err)
		}
	}
}

func streamState(t testing.TB, js jetstream.JetStream, name string) jetstream.StreamState {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo().State
}

func mustOK(t testing.TB, err error, what ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprint(what...), err)
	}
}

// watched is a siteStore (4 MiB) and a Watcher over it, as the agent
// starts them.
type watched struct {
	*siteStore
	w *Watcher
}

func newWatched(t *testing.T) *watched {
	t.Helper()
	e := &watched{siteStore: newSiteStore(t, 4<<20)}
	var err error
	e.w, err = NewWatcher(e.srv, e.js, e.st, e.c, slog.New(slog.DiscardHandler))
	mustOK(t, err)
	return e
}

// backlog stores 30 readings in TELEMETRY, the first 10 forwarded, and
// runs a check.
func (e *watched) backlog(t *testing.T) {
	t.Helper()
	publishN(t, e.js, "telemetry.t", 30, 100)
	e.st.SetCursor(StreamTelemetry, 10)
	e.w.Check(context.Background())
}
