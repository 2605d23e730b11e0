package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throwaway CA and one hub certificate for 127.0.0.1/localhost,
// as PEM files: for hubs whose certificate expired, or that a site does
// not trust.
type PKI struct{ CAFile, CertFile, KeyFile string }

// NewPKI writes a CA and a hub certificate valid until notAfter into a
// temporary directory.
func NewPKI(t testing.TB, notAfter time.Time) PKI {
	t.Helper()
	p, err := newPKI(t.TempDir(), notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newPKI(dir string, notAfter time.Time) (PKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PKI{}, err
	}
	caTpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge-agent test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		return PKI{}, fmt.Errorf("testkit: CA: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PKI{}, err
	}
	notBefore := time.Now().Add(-2 * time.Hour)
	if notAfter.Before(notBefore) { // backdated so an already expired one can be made
		notBefore = notAfter.Add(-time.Hour)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: notBefore, NotAfter: notAfter,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return PKI{}, fmt.Errorf("testkit: hub certificate: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return PKI{}, err
	}
	p := PKI{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{{p.CAFile, "CERTIFICATE", caDER, 0o644}, {p.CertFile, "CERTIFICATE", der, 0o644}, {p.KeyFile, "EC PRIVATE KEY", kb, 0o600}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return PKI{}, fmt.Errorf("testkit: %w", err)
		}
	}
	return p, nil
}
