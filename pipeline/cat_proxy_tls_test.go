package pipeline

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"paddock/internal/testcert"
)

// selfSigned makes a CA certificate, good for servers and clients, for the
// names (IPs or DNS names; none for a client's) and writes it and its key
// as PEM files in dir, returning their paths.
func selfSigned(t *testing.T, dir, base string, names ...string) (certPath, keyPath string, cert tls.Certificate) {
	t.Helper()
	p := testcert.New(t, testcert.Options{CommonName: base, Names: append([]string{}, names...), IsCA: true, ClientAuth: true})
	certPath, keyPath = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	p.Write(t, certPath, keyPath)
	return certPath, keyPath, p.TLS()
}

// tlsUpstream is an https upstream with the given certificate that answers
// with the client certificate's common name, if any.
func tlsUpstream(t *testing.T, cert tls.Certificate, clientCAs *x509.CertPool) *httptest.Server {
	t.Helper()
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := "-"
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		io.WriteString(w, "client="+cn+" sni="+r.TLS.ServerName)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCAs != nil {
		up.TLS.ClientCAs = clientCAs
		up.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	up.StartTLS()
	t.Cleanup(up.Close)
	return up
}

func TestCatProxyUpstreamTLS(t *testing.T) {
	dir := t.TempDir()
	serverCrt, _, serverCert := selfSigned(t, dir, "upstream", "127.0.0.1", "backend.internal")
	clientCrt, clientKey, clientCert := selfSigned(t, dir, "client")
	otherCrt, _, _ := selfSigned(t, dir, "other", "127.0.0.1")
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(clientCert.Leaf)

	plain := tlsUpstream(t, serverCert, nil)
	mutual := tlsUpstream(t, serverCert, clientCAs)

	tests := []struct {
		name   string
		up     *httptest.Server
		opts   map[string]string
		status int
		body   string // a substring of the answer
	}{
		{"system roots do not know a private CA", plain, nil, http.StatusBadGateway, ""},
		{"tls_ca_file", plain, map[string]string{"tls_ca_file": serverCrt}, 200, "client=-"},
		{"another CA", plain, map[string]string{"tls_ca_file": otherCrt}, http.StatusBadGateway, ""},
		{"tls_server_name sent as SNI and verified", plain,
			map[string]string{"tls_ca_file": serverCrt, "tls_server_name": "backend.internal"}, 200, "sni=backend.internal"},
		{"tls_server_name the certificate does not name", plain,
			map[string]string{"tls_ca_file": serverCrt, "tls_server_name": "elsewhere.internal"}, http.StatusBadGateway, ""},
		{"tls_insecure_skip_verify", plain, map[string]string{"tls_insecure_skip_verify": "true"}, 200, "client=-"},
		{"client certificate required, none given", mutual, map[string]string{"tls_ca_file": serverCrt}, http.StatusBadGateway, ""},
		{"client certificate", mutual,
			map[string]string{"tls_ca_file": serverCrt, "tls_cert_file": clientCrt, "tls_key_file": clientKey}, 200, "client=client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := map[string]string{"address": tt.up.URL}
			for k, v := range tt.opts {
				opts[k] = v
			}
			p, _ := newProxy(t, opts)
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
				t.Fatalf("status %d body %q, want %d with %q", rec.Code, rec.Body.String(), tt.status, tt.body)
			}
		})
	}
}

func TestCatProxyUpstreamTLSOptions(t *testing.T) {
	dir := t.TempDir()
	crt, key, _ := selfSigned(t, dir, "c", "127.0.0.1")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	secretKey := filepath.Join(dir, "secret.key")
	if err := os.WriteFile(secretKey, []byte("-----BEGIN EC PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END EC PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"tls_ca_file": filepath.Join(dir, "missing.pem")}, "tls_ca_file"},
		{map[string]string{"tls_ca_file": notPEM}, "holds no PEM certificate"},
		{map[string]string{"tls_cert_file": crt}, "needs tls_key_file"},
		{map[string]string{"tls_key_file": key}, "needs tls_cert_file"},
		{map[string]string{"tls_cert_file": crt, "tls_key_file": secretKey}, "tls_key_file"},
		{map[string]string{"tls_insecure_skip_verify": "maybe"}, "tls_insecure_skip_verify"},
	}
	for _, tt := range bad {
		opts := map[string]string{"address": "https://127.0.0.1:1"}
		for k, v := range tt.opts {
			opts[k] = v
		}
		_, err := proxyFactory().App(catConfig(opts))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tt.opts, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "c2VjcmV0") {
			t.Errorf("%v: the error shows the key's bytes: %v", tt.opts, err)
		}
	}

	// Nothing set: Go's defaults; the CA and certificate files are watched.
	p, _ := newProxy(t, map[string]string{"address": "https://127.0.0.1:1"})
	if p.opts.tls != nil {
		t.Errorf("no tls_* option: TLS config %+v, want nil (Go's defaults)", p.opts.tls)
	}
	p, c := newProxy(t, map[string]string{"address": "https://127.0.0.1:1", "tls_ca_file": crt, "tls_cert_file": crt, "tls_key_file": key})
	if p.opts.tls == nil || p.opts.tls.RootCAs == nil || len(p.opts.tls.Certificates) != 1 || p.opts.tls.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLS config %+v", p.opts.tls)
	}
	watched := strings.Join(*c.watch, " ")
	for _, f := range []string{crt, key} {
		if !strings.Contains(watched, f) {
			t.Errorf("%s is not watched (watched: %s)", f, watched)
		}
	}
}
