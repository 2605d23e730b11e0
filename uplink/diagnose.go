package uplink

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"time"

	"github.com/edge-agent/edge-agent/internal/human"
)

// probeTimeout bounds each probe step, so a blackholed hub still yields
// a reason quickly.
const probeTimeout = 5 * time.Second

// diagnose probes every hub URL the way the leaf connection would reach it
// (DNS, TCP, TLS) and returns the first problem found, or "" when the hub
// looks reachable and the cause lies above TLS (auth, permissions).
func diagnose(ctx context.Context, cfg *Config) (class ReasonClass, reason string) {
	for _, s := range cfg.HubURLs {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		if p := probeURL(ctx, cfg, u, probeTimeout); p.Class != "" {
			return p.Class, p.Reason
		}
	}
	return "", ""
}

// hubAddr is u's host:port, with the scheme's default port.
func hubAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"ws": "80", "wss": "443"}[u.Scheme]
		if port == "" {
			port = "7422"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// dialTCP resolves u's host (a failed lookup is a *net.DNSError) and dials
// it over TCP, each step within timeout.
func dialTCP(ctx context.Context, u *url.URL, timeout time.Duration) (net.Conn, error) {
	if host := u.Hostname(); net.ParseIP(host) == nil {
		lctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := net.DefaultResolver.LookupHost(lctx, host)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(ctx, "tcp", hubAddr(u))
}

// hubAnswer is one restore-watch check (Link.waitAttempt): did any hub
// URL accept a TCP connection, and if none did, did every one refuse it.
type hubAnswer struct{ answered, refused bool }

// refused says a failed lookup or dial got an answer, just not a
// connection: the hub's host refused it, or the resolver said the name
// does not exist. The path to the hub works, so the trouble is the hub's
// (down, restarting) or the config's, not the site's WAN.
func refused(err error) bool {
	var de *net.DNSError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &de) && de.IsNotFound
}

// dialHub checks whether the hub's address answers at all: a TCP connect
// to each hub URL, closed at once, nothing sent.
func dialHub(ctx context.Context, cfg *Config, timeout time.Duration) hubAnswer {
	a := hubAnswer{refused: true}
	for _, s := range cfg.HubURLs {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		conn, err := dialTCP(ctx, u, timeout)
		if err == nil {
			conn.Close()
			return hubAnswer{answered: true}
		}
		a.refused = a.refused && refused(err)
	}
	return a
}

// Probe steps, in order (HubProbe.Passed, HubProbe.Failed).
const (
	StepDNS  = "DNS"
	StepTCP  = "TCP"
	StepINFO = "INFO" // the hub's NATS INFO, read before a TLS upgrade
	StepTLS  = "TLS"
)

// HubProbe is what a probe of one hub URL found: the steps that passed and,
// when one failed, which, its error and its reason as the link's status
// words it. Doctor words the same findings for a technician at the device.
type HubProbe struct {
	// Addr is the host:port dialed, with the scheme's default port.
	Addr string
	// Passed lists the steps that passed; StepDNS only for a host name.
	Passed []string
	// Failed is the step that failed, "" when none did.
	Failed string
	// Err is that step's error: a *net.DNSError, the dial's or the read's
	// error, the TLS handshake's, or the hub certificate's x509 error (one
	// out of its validity period is an x509.CertificateInvalidError with
	// Reason x509.Expired, as x509 itself reports it).
	Err error
	// Class and Reason say what failed as status does; "" when nothing did.
	Class  ReasonClass
	Reason string
	// HubCert is the hub's certificate once a TLS handshake completed.
	HubCert *x509.Certificate
}

// ProbeHub probes one hub URL of c as the link does after a failed attempt:
// DNS, TCP, the hub's INFO, then TLS when the URL or c asks for it (the
// hub's certificate, then whether the hub requires and accepts this site's
// client certificate). Each network step is bounded by timeout.
func ProbeHub(ctx context.Context, c *Config, u *url.URL, timeout time.Duration) HubProbe {
	return probeURL(ctx, c, u, timeout)
}

func probeURL(ctx context.Context, cfg *Config, u *url.URL, timeout time.Duration) HubProbe {
	host, addr := u.Hostname(), hubAddr(u)
	p := HubProbe{Addr: addr}
	fail := func(step string, err error, class ReasonClass, reason string) HubProbe {
		p.Failed, p.Err, p.Class, p.Reason = step, err, class, reason
		return p
	}
	conn, err := dialTCP(ctx, u, timeout)
	var de *net.DNSError
	if net.ParseIP(host) == nil && !errors.As(err, &de) {
		p.Passed = append(p.Passed, StepDNS)
	}
	if err != nil {
		step := StepTCP
		if de != nil {
			step = StepDNS
		}
		class, reason := dialReason(addr, err, timeout)
		return fail(step, err, class, reason)
	}
	defer conn.Close()
	p.Passed = append(p.Passed, StepTCP)
	wantTLS := u.Scheme == "tls" || u.Scheme == "wss" || cfg.TLS.CAFile != "" || cfg.TLS.CertFile != "" || cfg.TLS.HandshakeFirst
	if !wantTLS || u.Scheme == "ws" {
		return p
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	// Unless TLS comes first, a NATS server speaks plain INFO before the
	// upgrade; WebSocket over TLS starts with the handshake.
	if !cfg.TLS.HandshakeFirst && u.Scheme != "wss" {
		if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
			return fail(StepINFO, err, ReasonTCP, fmt.Sprintf("TCP: %s accepted but sent no NATS INFO: %v", addr, err))
		}
	}
	leaf, reason, err := probeTLS(conn, cfg, host, addr)
	p.HubCert = leaf
	if reason != "" {
		return fail(StepTLS, err, ReasonTLS, reason)
	}
	p.Passed = append(p.Passed, StepTLS)
	return p
}

// dialReason explains a failed lookup or TCP dial of addr (the probe's, or
// the link gate's) as status shows it.
func dialReason(addr string, err error, timeout time.Duration) (class ReasonClass, reason string) {
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return ReasonDNS, fmt.Sprintf("DNS: %s not found", de.Name)
	case errors.As(err, &de):
		return ReasonDNS, fmt.Sprintf("DNS: lookup %s failed: %v (check /etc/resolv.conf and the uplink network)", de.Name, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonTCP, fmt.Sprintf("TCP: connection refused %s", addr)
	case isTimeout(err):
		return ReasonTCP, fmt.Sprintf("TCP: no answer from %s within %s (firewall, routing or hub down)", addr, timeout)
	}
	return ReasonTCP, fmt.Sprintf("TCP: %s: %v", addr, err)
}

// probeTLS handshakes without verification to read the hub's certificate,
// then verifies it itself, so it can say how long ago it expired. It returns
// the hub's certificate once it has it, and the failure's error and reason.
func probeTLS(conn net.Conn, cfg *Config, host, addr string) (leaf *x509.Certificate, reason string, err error) {
	tc, err := clientTLS(cfg.TLS)
	if err != nil {
		return nil, "TLS: " + err.Error(), err
	}
	name := tc.ServerName
	if name == "" {
		name = host
	}
	roots := tc.RootCAs
	tc.InsecureSkipVerify, tc.ServerName = true, name
	asked := watchClientCertRequest(tc)
	tconn := tls.Client(conn, tc)
	if err := tconn.Handshake(); err != nil {
		if r := clientCertReason(*asked, err, cfg.TLS, addr); r != "" {
			return nil, r, err
		}
		return nil, fmt.Sprintf("TLS: handshake with %s failed: %v", addr, err), err
	}
	certs := tconn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		err := errors.New("the hub sent no certificate")
		return nil, fmt.Sprintf("TLS: %s sent no certificate", addr), err
	}
	leaf, now := certs[0], time.Now()
	if err := verifyHubCert(certs, roots, name, now); err != nil {
		return leaf, hubCertReason(err, leaf, name, now), err
	}
	if !*asked {
		return leaf, "", nil
	}
	// With TLS 1.3 the client's handshake ends before the hub has checked
	// the client certificate: its refusal comes as the first thing read.
	_ = tconn.SetReadDeadline(time.Now().Add(clientCertWait))
	_, err = tconn.Read(make([]byte, 1))
	if r := clientCertReason(true, err, cfg.TLS, addr); r != "" {
		return leaf, r, err
	}
	return leaf, "", nil
}

// clientCertWait bounds the wait for a hub's refusal of the client
// certificate after the handshake; a hub that accepted it sends nothing
// until the leaf's CONNECT.
const clientCertWait = 2 * time.Second

// watchClientCertRequest makes tc offer its configured client certificate
// (if any) through a callback that records whether the hub asked for one.
func watchClientCertRequest(tc *tls.Config) *bool {
	asked := new(bool)
	certs := tc.Certificates
	tc.Certificates = nil
	tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		*asked = true
		if len(certs) > 0 {
			return &certs[0], nil
		}
		return &tls.Certificate{}, nil
	}
	return asked
}

// clientCertReason explains a hub's TLS alert after it asked for a client
// certificate: none configured, or the configured one refused. Empty when
// err is no such alert.
func clientCertReason(asked bool, err error, t TLS, addr string) string {
	// crypto/tls reports an alert from the peer as this OpError.
	var oe *net.OpError
	if !asked || !errors.As(err, &oe) || oe.Op != "remote error" {
		return ""
	}
	if t.CertFile == "" {
		return fmt.Sprintf("TLS: %s and uplink.tls.cert_file is not set (hub %s: %v)", clientCertMissing, addr, err)
	}
	return fmt.Sprintf("TLS: %s in uplink.tls.cert_file %s (hub %s: %v)", clientCertRefused, t.CertFile, addr, err)
}

// verifyHubCert verifies the hub's chain for name at now. A leaf out of its
// validity period is checked first, so that status can say since when.
func verifyHubCert(certs []*x509.Certificate, roots *x509.CertPool, name string, now time.Time) error {
	leaf := certs[0]
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired}
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name, CurrentTime: now})
	return err
}

// hubCertReason words verifyHubCert's error as status shows it.
func hubCertReason(err error, leaf *x509.Certificate, name string, now time.Time) string {
	var ci x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case errors.As(err, &ci) && ci.Cert == leaf && now.After(leaf.NotAfter):
		return fmt.Sprintf("TLS: hub certificate expired %s (not after %s)", human.Days(now.Sub(leaf.NotAfter))+" ago", leaf.NotAfter.UTC().Format(time.DateOnly))
	case errors.As(err, &ci) && ci.Cert == leaf && now.Before(leaf.NotBefore):
		return fmt.Sprintf("TLS: hub certificate not valid before %s: check the device clock (now %s)", leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case errors.As(err, &ua):
		return fmt.Sprintf("TLS: hub certificate signed by unknown authority %q (uplink.tls.ca_file does not trust it)", leaf.Issuer.CommonName)
	case errors.As(err, &he):
		return fmt.Sprintf("TLS: hub certificate is not valid for %s (set uplink.tls.server_name or fix hub_urls): %v", name, err)
	}
	return fmt.Sprintf("TLS: hub certificate rejected: %v", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
