package testkit

import (
	"net"
	"testing"
)

// FreePort returns a loopback port nothing listens on right now, for
// servers that must know each other's ports before they start (cluster
// routes, a child process's config) and for options where 0 means "off"
// rather than "any" (nats-server's HTTPPort).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
