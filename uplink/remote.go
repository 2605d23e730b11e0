package uplink

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// RemoteOptions turns the uplink config into the embedded server's leaf
// remote: one remote with every hub URL, because they are seeds of one
// cluster and the server fails over between them itself.
func RemoteOptions(c *Config) (*server.RemoteLeafOpts, error) {
	r := &server.RemoteLeafOpts{
		LocalAccount:      c.Account,
		Credentials:       c.Credentials,
		DenyImports:       c.DenyImports,
		DenyExports:       c.DenyExports,
		TLSHandshakeFirst: c.TLS.HandshakeFirst,
		// Only the configured URLs: see Config.IgnoreDiscoveredURLs.
		IgnoreDiscoveredServers: c.IgnoreDiscoveredURLs,
	}
	r.Compression.Mode = c.Compression
	r.Websocket.Compression = c.Websocket.Compression
	r.Websocket.NoMasking = c.Websocket.NoMasking
	for _, s := range c.HubURLs {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("uplink.hub_urls: %w", err)
		}
		// Config-level user/password/token win over nothing in the URL, so
		// one secret can serve every seed URL.
		if u.User == nil {
			switch {
			case c.User != "":
				u.User = url.UserPassword(c.User, c.Password)
			case c.Token != "":
				u.User = url.User(c.Token)
			}
		}
		if u.Scheme == "tls" || u.Scheme == "wss" {
			r.TLS = true
		}
		r.URLs = append(r.URLs, u)
	}
	if c.NkeySeed != "" {
		seed, err := os.ReadFile(c.NkeySeed)
		if err != nil {
			return nil, fmt.Errorf("uplink.nkey_seed: %w", err)
		}
		r.Nkey = strings.TrimSpace(string(seed))
	}
	if c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.HandshakeFirst || c.TLS.ServerName != "" {
		tc, err := clientTLS(c.TLS)
		if err != nil {
			return nil, err
		}
		r.TLS, r.TLSConfig = true, tc
	}
	return r, nil
}

func clientTLS(t TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("uplink.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("uplink.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("uplink.tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
