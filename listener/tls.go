package listener

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"sync/atomic"

	"paddock/internal/regfile"
)

// MaxKeyPairFileSize bounds certfile and keyfile: a chain or a key is a
// few KiB, and the master sends both to every worker (a reload message
// is bounded).
const MaxKeyPairFileSize = 1 << 20

// LoadKeyPair reads a PEM certificate chain (certfile, leaf first) and its
// private key (keyfile), gunicorn's certfile and keyfile settings, and
// checks that they belong together (ReadKeyPair, then ParseKeyPair).
// Errors name the file that is missing or bad.
func LoadKeyPair(certfile, keyfile string) (*tls.Certificate, error) {
	certPEM, keyPEM, err := ReadKeyPair(certfile, keyfile)
	if err != nil {
		return nil, err
	}
	return ParseKeyPair(certfile, keyfile, certPEM, keyPEM)
}

// ReadKeyPair reads certfile and keyfile as they are, without parsing
// them: what a root master reads to hand to workers that cannot open a
// root-only key. Only regular files are read (a FIFO at the path would
// block the reader until some writer came), up to MaxKeyPairFileSize
// each. Errors are *KeyPairError naming the file.
func ReadKeyPair(certfile, keyfile string) (certPEM, keyPEM []byte, err error) {
	// tls.LoadX509KeyPair would do, but its errors do not say which file
	// is missing or bad, and it opens FIFOs.
	if certPEM, err = readRegularFile(certfile); err != nil {
		return nil, nil, &KeyPairError{File: "certfile", Err: fmt.Errorf("listener: read certfile: %w", err)}
	}
	if keyPEM, err = readRegularFile(keyfile); err != nil {
		return nil, nil, &KeyPairError{File: "keyfile", Err: fmt.Errorf("listener: read keyfile: %w", err)}
	}
	return certPEM, keyPEM, nil
}

// ParseKeyPair parses the contents of certfile and keyfile (named for the
// errors only) and checks that they belong together. Errors never quote
// the bytes: a key must not reach a log. When the certificate parses but
// the key does not, the error is a *KeyPairError of keyfile; otherwise
// (a mismatch included: either file may be the stale one) it is
// certfile's.
func ParseKeyPair(certfile, keyfile string, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		err = fmt.Errorf("listener: certfile %s, keyfile %s: %w", certfile, keyfile, err)
		if leafParses(certPEM) && !strings.Contains(err.Error(), "does not match") {
			return nil, &KeyPairError{File: "keyfile", Err: err}
		}
		return nil, err
	}
	return &cert, nil
}

// leafParses reports whether the first CERTIFICATE block of data is a
// certificate: a key pair that fails to load with a good leaf has a bad
// key.
func leafParses(data []byte) bool {
	for len(data) > 0 {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return false
		}
		if b.Type == "CERTIFICATE" {
			_, err := x509.ParseCertificate(b.Bytes)
			return err == nil
		}
	}
	return false
}

// readRegularFile reads a certificate or key file: a regular file of at
// most MaxKeyPairFileSize bytes, never blocking on a FIFO (package
// regfile).
func readRegularFile(name string) ([]byte, error) {
	return regfile.Read(name, MaxKeyPairFileSize)
}

// KeyPairError is a file of the pair that cannot be read: File is
// "certfile" or "keyfile".
type KeyPairError struct {
	File string
	Err  error
}

func (e *KeyPairError) Error() string { return e.Err.Error() }
func (e *KeyPairError) Unwrap() error { return e.Err }

// LoadTLS returns a server config holding the key pair of certfile and
// keyfile (LoadKeyPair): TLS 1.2 or newer, and ALPN offering h2 then
// http/1.1. Advertising h2 here is what makes HTTP/2 work when an
// http.Server serves a listener from WrapTLS: the tls.Listener, not the
// http.Server, answers the ALPN negotiation.
//
// The files are read once; a server that reloads its certificate uses a
// Certificate and its Config instead.
func LoadTLS(certfile, keyfile string) (*tls.Config, error) {
	cert, err := LoadKeyPair(certfile, keyfile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}

// Certificate is the certificate a TLS listener serves, swapped atomically
// when the files are re-read: handshakes in progress finish with the one
// they started with, the next one gets the new one, and connections are
// never closed for it.
type Certificate struct {
	certfile, keyfile string
	cur               atomic.Pointer[tls.Certificate]
}

// NewCertificate loads certfile and keyfile (LoadKeyPair).
func NewCertificate(certfile, keyfile string) (*Certificate, error) {
	cert, err := LoadKeyPair(certfile, keyfile)
	if err != nil {
		return nil, err
	}
	c := &Certificate{certfile: certfile, keyfile: keyfile}
	c.cur.Store(cert)
	return c, nil
}

// NewCertificatePEM is NewCertificate from the files' contents, as read
// by someone else (ReadKeyPair in a root master): the files are never
// opened. certfile and keyfile name them in errors.
func NewCertificatePEM(certfile, keyfile string, certPEM, keyPEM []byte) (*Certificate, error) {
	cert, err := ParseKeyPair(certfile, keyfile, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	c := &Certificate{certfile: certfile, keyfile: keyfile}
	c.cur.Store(cert)
	return c, nil
}

// Load reads the files again without serving the result: Store does.
// Loading first lets a caller swap the certificate together with other
// things that may fail (a reload's pipeline), or not at all.
func (c *Certificate) Load() (*tls.Certificate, error) {
	return LoadKeyPair(c.certfile, c.keyfile)
}

// LoadPEM is Load from new contents of the files, read by someone else.
func (c *Certificate) LoadPEM(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	return ParseKeyPair(c.certfile, c.keyfile, certPEM, keyPEM)
}

// StorePEM parses new contents of the files (LoadPEM) and serves them
// from the next handshake on; a pair that does not parse is not stored.
func (c *Certificate) StorePEM(certPEM, keyPEM []byte) error {
	cert, err := c.LoadPEM(certPEM, keyPEM)
	if err != nil {
		return err
	}
	c.Store(cert)
	return nil
}

// Store makes cert the one served from the next handshake on.
func (c *Certificate) Store(cert *tls.Certificate) { c.cur.Store(cert) }

// Current is the certificate served now.
func (c *Certificate) Current() *tls.Certificate { return c.cur.Load() }

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// whatever the client asked for (SNI is not used to choose).
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// Config is a server config serving c's current certificate: TLS 1.2 or
// newer and ALPN offering nextProtos ("h2", "http/1.1"), in order of
// preference. Offer only what the http.Server serves: a server whose
// Protocols turn HTTP/2 off must not offer "h2", or clients that
// negotiate it get an HTTP/1 server speaking to them.
func (c *Certificate) Config(nextProtos []string) *tls.Config {
	return &tls.Config{
		GetCertificate: c.GetCertificate,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     append([]string(nil), nextProtos...),
	}
}

// WrapTLS returns a listener that does the TLS handshake with cfg on every
// accepted connection. Serve it with http.Server.Serve and leave
// Server.TLSConfig nil (or set it to cfg): Serve then enables HTTP/2 for
// connections that negotiated h2. A server whose Protocols turn HTTP/2
// off must drop "h2" from cfg.NextProtos, or clients that negotiate it get
// an HTTP/1 server speaking to them. The master keeps the plain listener (its
// descriptor is what workers inherit); each process wraps its own.
func WrapTLS(ln net.Listener, cfg *tls.Config) net.Listener {
	return tls.NewListener(ln, cfg)
}
