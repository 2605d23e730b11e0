package testkit

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Connect connects a client to url (or, with nats.InProcessServer among
// opts, to that server in-process), closed when the test ends, and its
// JetStream context.
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Publishes counts, by subject, what is published on subject (a wildcard)
// while do runs, as nc receives it: every publish the server handled
// before do returned is counted, its callback run.
func Publishes(t testing.TB, nc *nats.Conn, subject string, do func()) map[string]int {
	t.Helper()
	var mu sync.Mutex
	n := map[string]int{}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		mu.Lock()
		n[m.Subject]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	do()
	// Drain flushes, then runs what is still queued; the subscription
	// is closed once it has.
	if err := sub.Drain(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, func() error {
		if sub.IsValid() {
			return errors.New("still draining the publishes counted")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	return n
}
