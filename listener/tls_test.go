package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"paddock/internal/testcert"
)

// selfSigned writes a certificate for the loopback names and its key as
// PEM files and returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certfile, keyfile string, pool *x509.CertPool) {
	t.Helper()
	p := testcert.New(t, testcert.Options{Serial: 1})
	certfile, keyfile = p.WriteTemp(t)
	return certfile, keyfile, p.Pool()
}

func TestLoadTLS(t *testing.T) {
	certfile, keyfile, _ := selfSigned(t)
	cfg, err := LoadTLS(certfile, keyfile)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || cfg.MinVersion != tls.VersionTLS12 ||
		strings.Join(cfg.NextProtos, ",") != "h2,http/1.1" {
		t.Errorf("config: %d certificates, MinVersion %#x, NextProtos %v", len(cfg.Certificates), cfg.MinVersion, cfg.NextProtos)
	}
}

func TestLoadTLSErrors(t *testing.T) {
	certfile, keyfile, _ := selfSigned(t)
	otherCert, _, _ := selfSigned(t) // a certificate for another key
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("not PEM"), 0o600)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name          string
		cert, key     string
		wantInError   []string
		wantNotExists bool
	}{
		{"missing certfile", missing, keyfile, []string{"certfile", missing}, true},
		{"missing keyfile", certfile, missing, []string{"keyfile", missing}, true},
		{"garbage certfile", garbage, keyfile, []string{garbage, keyfile}, false},
		{"key does not match", otherCert, keyfile, []string{otherCert, keyfile}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadTLS(tc.cert, tc.key)
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tc.wantInError {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			if errors.Is(err, os.ErrNotExist) != tc.wantNotExists {
				t.Errorf("errors.Is(%v, ErrNotExist) = %v", err, !tc.wantNotExists)
			}
		})
	}
}

// HTTP/2 over TLS must negotiate through a listener from Open, wrapped by
// WrapTLS, the way a worker serves it: h2 is decided by the ALPN offer in
// LoadTLS's config, and http.Server.Serve enables its h2 handler when
// TLSConfig is nil or offers h2 (server.go shouldConfigureHTTP2ForServe).
func TestWrapTLSNegotiatesHTTP2(t *testing.T) {
	certfile, keyfile, pool := selfSigned(t)
	cfg, err := LoadTLS(certfile, keyfile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		serve       func(srv *http.Server, ln net.Listener) error
		clientProto []string // nil: the default, h2 and http/1.1
		wantMajor   int
	}{
		{
			name:      "Serve on WrapTLS, no Server.TLSConfig",
			serve:     func(srv *http.Server, ln net.Listener) error { return srv.Serve(WrapTLS(ln, cfg)) },
			wantMajor: 2,
		},
		{
			name: "Serve on WrapTLS, Server.TLSConfig set",
			serve: func(srv *http.Server, ln net.Listener) error {
				srv.TLSConfig = cfg
				return srv.Serve(WrapTLS(ln, cfg))
			},
			wantMajor: 2,
		},
		{
			name: "ServeTLS with Server.TLSConfig",
			serve: func(srv *http.Server, ln net.Listener) error {
				srv.TLSConfig = cfg
				return srv.ServeTLS(ln, "", "")
			},
			wantMajor: 2,
		},
		{
			name:        "an HTTP/1.1-only client",
			serve:       func(srv *http.Server, ln net.Listener) error { return srv.Serve(WrapTLS(ln, cfg)) },
			clientProto: []string{"http/1.1"},
			wantMajor:   1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), []Spec{{TCP, "127.0.0.1:0"}}, Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ln := s.Listeners()[0]
			srv := &http.Server{
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, r.Proto)
				}),
				ReadHeaderTimeout: 5 * time.Second,
			}
			served := make(chan error, 1)
			go func() { served <- tc.serve(srv, ln) }()
			defer func() {
				srv.Close()
				if err := <-served; !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("Serve: %v", err)
				}
			}()

			tr := &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: pool, NextProtos: tc.clientProto},
				ForceAttemptHTTP2: tc.clientProto == nil, // a custom TLSClientConfig turns h2 off otherwise
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			resp, err := client.Get("https://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != tc.wantMajor {
				t.Errorf("client saw %s, want HTTP/%d (server saw %s)", resp.Proto, tc.wantMajor, body)
			}
			if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Errorf("TLS state %+v", resp.TLS)
			}
		})
	}
}

func TestWrapTLSRefusesOldTLS(t *testing.T) {
	certfile, keyfile, pool := selfSigned(t)
	cfg, err := LoadTLS(certfile, keyfile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(t.Context(), Spec{TCP, "127.0.0.1:0"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tln := WrapTLS(ln, cfg)
	defer tln.Close()
	go func() {
		c, err := tln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}
