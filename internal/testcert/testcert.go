// Package testcert makes self-signed TLS certificates for tests.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// DefaultCommonName is the subject's common name when Options leaves it
// empty.
const DefaultCommonName = "paddock test"

// DefaultNames are the names a certificate covers when Options.Names is
// nil: every loopback name a test may dial.
var DefaultNames = []string{"127.0.0.1", "::1", "localhost"}

// Options describe the certificate New makes. The zero value is a server
// certificate for the loopback names with a random serial number.
type Options struct {
	// Serial is the serial number; 0 picks a random positive one. Tests
	// that swap certificates tell them apart by it.
	Serial int64
	// CommonName is the subject's CN; "" is DefaultCommonName.
	CommonName string
	// Names are the IP addresses and DNS names the certificate is for.
	// nil is DefaultNames; an empty non-nil slice names nothing (a client
	// certificate).
	Names []string
	// IsCA makes the certificate a CA that may sign others, as a file
	// given to tls_ca_file is.
	IsCA bool
	// ClientAuth allows the certificate as a TLS client's as well as a
	// server's.
	ClientAuth bool
}

// Pair is a certificate and its private key (ECDSA P-256), as PEM and
// parsed.
type Pair struct {
	certPEM, keyPEM []byte
	cert            tls.Certificate
}

// New makes a self-signed certificate valid from an hour ago to a day from
// now; it fails t on any error.
func New(t testing.TB, o Options) *Pair {
	t.Helper()
	serial := big.NewInt(o.Serial)
	switch {
	case o.Serial < 0:
		t.Fatalf("testcert: serial %d: a serial number must be positive", o.Serial)
	case o.Serial == 0:
		n, err := rand.Int(rand.Reader, big.NewInt(math.MaxInt64))
		if err != nil {
			t.Fatalf("testcert: random serial: %v", err)
		}
		serial = n.Add(n, big.NewInt(1)) // never 0
	}
	cn := o.CommonName
	if cn == "" {
		cn = DefaultCommonName
	}
	names := o.Names
	if names == nil {
		names = DefaultNames
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testcert: generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  o.IsCA,
	}
	if o.IsCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if o.ClientAuth {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testcert: create certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testcert: marshal key: %v", err)
	}
	p := &Pair{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	// X509KeyPair also fills Leaf, so TLS() is ready for tls.Config.
	if p.cert, err = tls.X509KeyPair(p.certPEM, p.keyPEM); err != nil {
		t.Fatalf("testcert: parse the pair made: %v", err)
	}
	return p
}

// CertPEM returns the certificate as PEM; the caller must not change it.
func (p *Pair) CertPEM() []byte { return p.certPEM }

// KeyPEM returns the private key as PKCS #8 PEM; the caller must not
// change it.
func (p *Pair) KeyPEM() []byte { return p.keyPEM }

// TLS returns the pair for tls.Config.Certificates, its Leaf set.
func (p *Pair) TLS() tls.Certificate { return p.cert }

// Leaf returns the parsed certificate.
func (p *Pair) Leaf() *x509.Certificate { return p.cert.Leaf }

// Pool returns a new pool that trusts only this certificate.
func (p *Pair) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert.Leaf)
	return pool
}

// Write writes the key (mode 0600) then the certificate (0644) to keyfile
// and certfile. Each file is replaced by a rename, as certbot and
// Kubernetes do, so a watcher or reader never sees half a file.
func (p *Pair) Write(t testing.TB, certfile, keyfile string) {
	t.Helper()
	writeFile(t, keyfile, p.keyPEM, 0o600)
	writeFile(t, certfile, p.certPEM, 0o644)
}

// WriteTemp writes the pair as cert.pem and key.pem in a new t.TempDir()
// and returns their paths.
func (p *Pair) WriteTemp(t testing.TB) (certfile, keyfile string) {
	t.Helper()
	dir := t.TempDir()
	certfile, keyfile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	p.Write(t, certfile, keyfile)
	return certfile, keyfile
}

// writeFile replaces path with data through a temporary file beside it.
func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatalf("testcert: write %s: %v", tmp, err)
	}
	// WriteFile keeps the mode of a stale tmp file and umask may narrow
	// it: the key must be 0600 whatever was there.
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatalf("testcert: chmod %s: %v", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatalf("testcert: rename %s to %s: %v", tmp, path, err)
	}
}
