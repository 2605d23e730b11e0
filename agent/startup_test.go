package agent

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// waitListening says no for a server that is not started within its bound
// and yes once the server accepts clients.
func TestWaitListening(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	if waitListening(srv, 20*time.Millisecond) {
		t.Fatal("ready before Start")
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !waitListening(srv, 10*time.Second) {
		t.Fatal("not ready in 10s")
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("ready, but a client cannot connect: %v", err)
	}
	nc.Close()
}
