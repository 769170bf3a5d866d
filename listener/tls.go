package listener

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
)

// LoadTLS reads a PEM certificate chain (certfile, leaf first) and its
// private key (keyfile), gunicorn's certfile and keyfile settings, and
// returns a server config: that keypair, TLS 1.2 or newer, and ALPN
// offering h2 then http/1.1. Advertising h2 here is what makes HTTP/2 work
// when an http.Server serves a listener from WrapTLS: the tls.Listener,
// not the http.Server, answers the ALPN negotiation. Errors name the files.
//
// The files are read once: a renewed certificate takes a reload, which
// builds a new config.
func LoadTLS(certfile, keyfile string) (*tls.Config, error) {
	// tls.LoadX509KeyPair would do, but its errors do not say which file
	// is missing or bad.
	certPEM, err := os.ReadFile(certfile)
	if err != nil {
		return nil, fmt.Errorf("listener: read certfile: %w", err)
	}
	keyPEM, err := os.ReadFile(keyfile)
	if err != nil {
		return nil, fmt.Errorf("listener: read keyfile: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("listener: certfile %s, keyfile %s: %w", certfile, keyfile, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
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
