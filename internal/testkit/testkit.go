// Package testkit is what the module's tests share: an in-process NATS
// server and the hub options the tests start from, a client and its
// JetStream context (Connect), free ports, a stream's sequences, a TLS hub
// and its throwaway PKI, a log buffer safe for several goroutines, and
// WaitFor.
// It lives once here so that a fix to how tests start a server or wait
// reaches every package; it imports testing and is for tests only.
//
// It replaced package-local twins; new code that still calls them converts
// as follows: startServer, fwStartServer: RunServer; hubOpts, fwHubOpts:
// HubOpts; syncBuf: SyncBuffer; newPKI, testPKI: NewPKI, PKI (fields
// CAFile, CertFile, KeyFile); uplink's tlsHub(t, pki), mtlsHub(t, pki):
// TLSHub(t, pki, false or true, noJetStream); waitFor, fwWaitFor: WaitFor,
// by the rule below.
//
// WaitFor takes a check that returns an error saying what is still missing,
// and a timeout reports the last one: "3 of 10 readings on the hub" says
// more than "timed out". The package-local helpers it replaced took a
// description and a bool condition; a call
//
//	waitFor(t, d, what, func() bool { ...; return cond })
//
// converts mechanically to
//
//	testkit.WaitFor(t, d, func() error { ...; if !cond { return errors.New("still waiting for " + what) }; return nil })
//
// In the closure's own body (not in closures nested in it): "return true"
// becomes "return nil"; "return false" becomes the error; "return cond"
// becomes the if statement above (with the condition negated, e.g.
// "a == b" to "a != b", "!ok" to "ok"), and fmt.Errorf("still waiting for
// %s", what) when what is not a string literal. A condition passed as a
// func value (e.link.Connected) is first written as a closure calling it.
// Where the closure has the values at hand, say them:
// fmt.Errorf("hub has %d of %d readings", n, want).
package testkit

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// WaitFor calls check until it returns nil, polling rather than sleeping a
// guess at how long the machine needs; after d it fails the test with
// check's last error.
func WaitFor(t testing.TB, d time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// HubOpts are a hub's options: JetStream domain "hub" in a temporary
// directory, client and leafnode listeners on free loopback ports.
func HubOpts(t testing.TB) *server.Options {
	return &server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, JetStreamDomain: "hub", StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: -1},
	}
}

// RunServer starts an in-process server, waits until it accepts clients,
// and shuts it down when the test ends.
func RunServer(t testing.TB, o *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// TLSHub runs a hub (HubOpts, adjusted by tune) whose leafnode listener
// serves pki's certificate; with verifyClients it also requires a client
// certificate signed by pki's CA.
func TLSHub(t testing.TB, pki PKI, verifyClients bool, tune ...func(*server.Options)) *server.Server {
	t.Helper()
	to := &server.TLSConfigOpts{CertFile: pki.CertFile, KeyFile: pki.KeyFile}
	if verifyClients {
		to.CaFile, to.Verify = pki.CAFile, true
	}
	tc, err := server.GenTLSConfig(to)
	if err != nil {
		t.Fatal(err)
	}
	o := HubOpts(t)
	o.LeafNode.TLSConfig = tc
	for _, f := range tune {
		f(o)
	}
	return RunServer(t, o)
}

// SyncBuffer collects log output written from several goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
