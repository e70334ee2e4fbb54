package testenv

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

// CA is a certificate authority made for one test, to serve TLS with
// certificates a client verifies against it.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// File is its certificate (PEM), for a client's CA setting.
	File string
}

// NewCA makes a CA valid for an hour, its certificate written to a file
// of the test's.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "retain test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{cert: cert, key: key, File: filepath.Join(t.TempDir(), "ca.crt")}
	if err := os.WriteFile(ca.File, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// Pool is a certificate pool of ca alone, for a client's RootCAs or a
// server's ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// Issued is a certificate and its key, in PEM.
type Issued struct {
	CertPEM, KeyPEM []byte
	Serial          *big.Int
	// NotAfter is when it expires, to the second as the certificate has it.
	NotAfter time.Time
}

// Issue signs a certificate for hosts (DNS names, or IP addresses such as
// 127.0.0.1), valid for an hour, with a new key and a random serial
// number. It serves a TLS server, or a client a server verifies (NATS's
// mutual TLS).
func (ca *CA) Issue(t testing.TB, hosts ...string) Issued {
	t.Helper()
	return ca.IssueUntil(t, time.Now().Add(time.Hour), hosts...)
}

// IssueUntil is Issue with a certificate that expires at notAfter: one far
// off, or already past, for what a server makes of its expiry. A client
// verifying it against ca still needs ca valid (an hour).
func (ca *CA) IssueUntil(t testing.TB, notAfter time.Time, hosts ...string) Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Issued{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Serial:   serial,
		NotAfter: notAfter.Truncate(time.Second),
	}
}

// Secret is a directory laid out as the kubelet mounts a Secret: each
// key a symlink through ..data to a directory of the version, so that an
// update swaps every file at once and a reader never sees half of one,
// nor a new certificate with the old key.
type Secret struct {
	Dir      string
	versions int
}

// NewSecret is an empty Secret directory of the test's.
func NewSecret(t testing.TB) *Secret {
	return &Secret{Dir: t.TempDir()}
}

// Path is where the Secret's key appears.
func (s *Secret) Path(key string) string { return filepath.Join(s.Dir, key) }

// Update replaces the Secret's content with files (key to content), as
// the kubelet does when the Secret changes.
func (s *Secret) Update(t testing.TB, files map[string][]byte) {
	t.Helper()
	s.versions++
	version := fmt.Sprintf("..v%d", s.versions)
	if err := os.Mkdir(filepath.Join(s.Dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	for key, data := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, version, key), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(s.Dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for key := range files {
		link := s.Path(key)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", key), link); err != nil {
			t.Fatal(err)
		}
	}
}

// Files are the certificate and key as a Secret of cert-manager's holds
// them, for Secret.Update: tls.crt and tls.key.
func (i Issued) Files() map[string][]byte {
	return map[string][]byte{"tls.crt": i.CertPEM, "tls.key": i.KeyPEM}
}
