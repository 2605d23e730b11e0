package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// waitFor polls cond until it holds or the deadline passes: no sleeps that
// guess how long the machine needs.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuf collects log output from several goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func hubOpts(t testing.TB) *server.Options {
	return &server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, JetStreamDomain: "hub", StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: -1},
	}
}

func startServer(t testing.TB, o *server.Options) *server.Server {
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

func leafURL(t testing.TB, s *server.Server, scheme string) string {
	t.Helper()
	v, err := s.Varz(nil)
	if err != nil || v.LeafNode.Port == 0 {
		t.Fatalf("hub has no leafnode port: %v", err)
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, v.LeafNode.Port)
}

type testAgent struct {
	*Agent
	logs *syncBuf
	stop func() error
}

// startAgent runs an agent from a YAML body (site, state_dir, listen and
// control_socket are filled in) and waits until it is ready.
func startAgent(t testing.TB, body string) *testAgent {
	t.Helper()
	return runAgent(t, testConfig(t, body))
}

// testConfig is startAgent's config, for tests that adjust it before run.
func testConfig(t testing.TB, body string) *Config {
	t.Helper()
	dir := t.TempDir()
	y := fmt.Sprintf("state_dir: %s\nlisten: 127.0.0.1:0\ncontrol_socket: %s\nmetrics_listen: \"\"\n%s",
		dir, filepath.Join(dir, "agent.sock"), body)
	if !strings.Contains(body, "site:") {
		y = "site: s1\n" + y
	}
	cfg, err := ParseConfig(filepath.Join(dir, "agent.yaml"), []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func runAgent(t testing.TB, cfg *Config) *testAgent {
	t.Helper()
	logs := &syncBuf{}
	level := new(slog.LevelVar)
	a := New(cfg, NewLogger(logs, "text", level), level)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("agent failed to start: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("agent not ready in 30s\n%s", logs)
	}
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() { cancel(); stopErr = <-errc })
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return &testAgent{Agent: a, logs: logs, stop: stop}
}

func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// testPKI is a throwaway CA with one server certificate for 127.0.0.1.
type testPKI struct{ caFile, certFile, keyFile string }

func newPKI(t *testing.T, notAfter time.Time) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge-agent test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	p := testPKI{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	writeFile(t, dir, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), 0o644)
	writeFile(t, dir, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
	writeFile(t, dir, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})), 0o600)
	return p
}
