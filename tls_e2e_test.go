package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeSelfSigned writes a certificate for 127.0.0.1 and its key.
func writeSelfSigned(t *testing.T) (certfile, keyfile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "paddock test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certfile, keyfile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certfile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyfile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certfile, keyfile, pool
}

// With certfile/keyfile set, every worker serves TLS and offers HTTP/2.
func TestServeTLSWithHTTP2(t *testing.T) {
	certfile, keyfile, pool := writeSelfSigned(t)
	for _, workers := range []string{"0", "1"} {
		t.Run("workers="+workers, func(t *testing.T) {
			port := freePort(t)
			config := fmt.Sprintf(`[server:main]
use = egg:paddock#http
bind = 127.0.0.1:%d
workers = %s
certfile = %s
keyfile = %s

[app:main]
use = egg:paddock#hello
body = over tls
`, port, workers, certfile, keyfile)
			cmd, stderr, _ := startPaddock(t, config)
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: pool},
				ForceAttemptHTTP2: true,
			}}
			url := fmt.Sprintf("https://127.0.0.1:%d/", port)
			var resp *http.Response
			waitFor(t, "the TLS listener", 10*time.Second, func() bool {
				var err error
				resp, err = client.Get(url)
				return err == nil
			})
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "over tls" || resp.ProtoMajor != 2 {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("got %s %d %q, want HTTP/2 200 \"over tls\"\n%s", resp.Proto, resp.StatusCode, body, stderr)
			}
			// Plain HTTP on the TLS port is not served as plain HTTP.
			if r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
				b, _ := io.ReadAll(r.Body)
				r.Body.Close()
				if strings.Contains(string(b), "over tls") {
					t.Fatal("the app answered plain HTTP on a TLS listener")
				}
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit: %v\n%s", err, stderr)
			}
		})
	}
}

// A missing key file fails the start with the file named.
func TestServeTLSBadKeyFails(t *testing.T) {
	certfile, _, _ := writeSelfSigned(t)
	config := fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = 127.0.0.1:%d\nworkers = 0\ncertfile = %s\nkeyfile = /nonexistent/key.pem\n\n[app:main]\nuse = egg:paddock#hello\n", freePort(t), certfile)
	cmd, stderr, _ := startPaddock(t, config)
	err := cmd.Wait()
	if err == nil || !strings.Contains(stderr.String(), "/nonexistent/key.pem") {
		t.Fatalf("exit %v, stderr:\n%s", err, stderr)
	}
}
