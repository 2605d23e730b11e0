package agent

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

func TestLocalURL(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4zero, Port: 4222}, "nats://127.0.0.1:4222"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 4222}, "nats://127.0.0.1:4222"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 4222}, "nats://[::1]:4222"},
		{&net.TCPAddr{IP: net.IPv4(192, 168, 1, 5), Port: 4222}, "nats://192.168.1.5:4222"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 39001}, "nats://127.0.0.1:39001"},
	} {
		if got := localURL(c.addr); got != c.want {
			t.Errorf("localURL(%v) = %s, want %s", c.addr, got, c.want)
		}
	}
}

// The agent's own connection goes over loopback TCP (faster than the
// in-process pipe), with the local_auth credentials when the port is
// reachable from the network.
func TestAgentConnectsOverLoopbackWithAuth(t *testing.T) {
	cfg := testConfig(t, "local_auth: {user: app, password: pw}\n"+twoSims)
	cfg.Listen = "0.0.0.0:0"
	a := runAgent(t, cfg)
	var own *server.ConnInfo
	testkit.WaitFor(t, 10*time.Second, func() error {
		cz, err := a.srv.Connz(&server.ConnzOptions{Username: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cz.Conns {
			if c.Name == "edge-agent" {
				own = c
				return nil
			}
		}
		return errors.New("still waiting for the agent's connection in connz")
	})
	if own.IP != "127.0.0.1" || own.AuthorizedUser != "app" {
		t.Fatalf("agent connection from %q as %q: want loopback TCP as app", own.IP, own.AuthorizedUser)
	}
	if strings.Contains(a.logs.String(), "in-process connection") {
		t.Fatalf("fell back to the in-process connection:\n%s", a.logs)
	}
}
