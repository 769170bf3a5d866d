package testcert

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// The zero Options give a server certificate for the loopback names that
// a pool from Pool trusts for those names only.
func TestDefaults(t *testing.T) {
	p := New(t, Options{Serial: 42})
	leaf := p.Leaf()
	if leaf == nil || p.TLS().Leaf != leaf {
		t.Fatal("Leaf is not the TLS certificate's leaf")
	}
	if leaf.SerialNumber.Int64() != 42 || leaf.Subject.CommonName != DefaultCommonName {
		t.Errorf("serial %v CN %q", leaf.SerialNumber, leaf.Subject.CommonName)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"127.0.0.1", "::1"}) || !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
		t.Errorf("names %v %v", ips, leaf.DNSNames)
	}
	if leaf.IsCA || !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("IsCA %v, ExtKeyUsage %v", leaf.IsCA, leaf.ExtKeyUsage)
	}
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		t.Errorf("not valid now: %v to %v", leaf.NotBefore, leaf.NotAfter)
	}
	for name, ok := range map[string]bool{"127.0.0.1": true, "::1": true, "localhost": true, "example.com": false, "10.0.0.1": false} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: p.Pool(), DNSName: name})
		if (err == nil) != ok {
			t.Errorf("verify for %s: %v, want ok %v", name, err, ok)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: New(t, Options{}).Pool()}); err == nil {
		t.Error("another pair's pool trusts this certificate")
	}
	if !bytes.HasPrefix(p.CertPEM(), []byte("-----BEGIN CERTIFICATE-----\n")) || !bytes.HasPrefix(p.KeyPEM(), []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("PEM:\n%s%s", p.CertPEM(), p.KeyPEM())
	}
}

// Serial 0 picks a positive serial that differs from pair to pair.
func TestRandomSerial(t *testing.T) {
	seen := map[string]bool{}
	for range 5 {
		s := New(t, Options{}).Leaf().SerialNumber
		if s.Sign() <= 0 || seen[s.String()] {
			t.Fatalf("serial %v (seen %v)", s, seen)
		}
		seen[s.String()] = true
	}
}

// Names nil means the defaults; empty means none; others are split into
// IPs and DNS names.
func TestNames(t *testing.T) {
	if l := New(t, Options{Names: []string{}}).Leaf(); len(l.IPAddresses)+len(l.DNSNames) != 0 {
		t.Errorf("empty Names: %v %v", l.IPAddresses, l.DNSNames)
	}
	l := New(t, Options{Names: []string{"192.0.2.1", "backend.internal"}}).Leaf()
	if len(l.IPAddresses) != 1 || !l.IPAddresses[0].Equal(net.ParseIP("192.0.2.1")) || !slices.Equal(l.DNSNames, []string{"backend.internal"}) {
		t.Errorf("names: %v %v", l.IPAddresses, l.DNSNames)
	}
}

// IsCA makes a CA that signs; ClientAuth makes the certificate good for a
// client, which a server certificate is not.
func TestCAAndClientAuth(t *testing.T) {
	ca := New(t, Options{CommonName: "client", Names: []string{}, IsCA: true, ClientAuth: true})
	l := ca.Leaf()
	if !l.IsCA || l.KeyUsage&x509.KeyUsageCertSign == 0 || l.Subject.CommonName != "client" {
		t.Errorf("IsCA %v KeyUsage %b CN %q", l.IsCA, l.KeyUsage, l.Subject.CommonName)
	}
	clientUse := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if _, err := l.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: clientUse}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	server := New(t, Options{})
	if _, err := server.Leaf().Verify(x509.VerifyOptions{Roots: server.Pool(), KeyUsages: clientUse}); err == nil {
		t.Error("a server-only certificate verified for client auth")
	}
}

// Write puts the PEM in place with the key private, replaces an earlier
// pair and leaves no temporary file; the files load as a pair.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	certfile, keyfile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	New(t, Options{Serial: 1}).Write(t, certfile, keyfile)
	p := New(t, Options{Serial: 2})
	p.Write(t, certfile, keyfile)
	for _, f := range []struct {
		path string
		want []byte
		mode os.FileMode
	}{{certfile, p.CertPEM(), 0o644}, {keyfile, p.KeyPEM(), 0o600}} {
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.want) || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, contents match %v", f.path, fi.Mode().Perm(), bytes.Equal(got, f.want))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("files left: %v", entries)
	}
	loaded, err := tls.LoadX509KeyPair(certfile, keyfile)
	if err != nil || loaded.Leaf.SerialNumber.Int64() != 2 {
		t.Fatalf("load: %v", err)
	}

	c, k := p.WriteTemp(t)
	if filepath.Dir(c) != filepath.Dir(k) || filepath.Dir(c) == dir {
		t.Errorf("WriteTemp: %s %s", c, k)
	}
	if _, err := tls.LoadX509KeyPair(c, k); err != nil {
		t.Errorf("WriteTemp's pair: %v", err)
	}
}

// A TLS client that trusts Pool completes a handshake with a server
// using TLS, over an in-memory connection.
func TestHandshake(t *testing.T) {
	p := New(t, Options{Serial: 7})
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	deadline := time.Now().Add(10 * time.Second)
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		done <- tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{p.TLS()}}).Handshake()
	}()
	client := tls.Client(cc, &tls.Config{RootCAs: p.Pool(), ServerName: "127.0.0.1"})
	err := client.Handshake()
	if serr := <-done; err != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", err, serr)
	}
	if got := client.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 7 {
		t.Errorf("serial %d, want 7", got)
	}
}

// fatalTB records the first Fatalf and stops the goroutine, as testing.T
// does, so a test can see New refuse its input.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestNegativeSerialFails(t *testing.T) {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(f, Options{Serial: -1})
	}()
	<-done
	if !strings.Contains(f.msg, "serial -1") {
		t.Errorf("Fatalf message %q", f.msg)
	}
}
