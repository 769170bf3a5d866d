package listener

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"paddock/internal/testcert"
)

// handshakeSerial connects to addr and returns the serial number of the
// certificate the server presented.
func handshakeSerial(t *testing.T, addr string) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// A Certificate swaps what the next handshake gets; Load alone changes
// nothing, a bad pair fails Load and keeps the served one, and a
// connection made before the swap is not touched.
func TestCertificateSwap(t *testing.T) {
	dir := t.TempDir()
	certfile, keyfile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.New(t, testcert.Options{Serial: 1001}).Write(t, certfile, keyfile)
	c, err := NewCertificate(certfile, keyfile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(t.Context(), Spec{TCP, "127.0.0.1:0"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(WrapTLS(ln, c.Config([]string{"h2", "http/1.1"})))
	defer srv.Close()
	addr := ln.Addr().String()

	if got := handshakeSerial(t, addr); got != 1001 {
		t.Fatalf("serial %d, want 1001", got)
	}
	old, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	testcert.New(t, testcert.Options{Serial: 1002}).Write(t, certfile, keyfile)
	next, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := handshakeSerial(t, addr); got != 1001 {
		t.Fatalf("after Load, before Store: serial %d, want 1001", got)
	}
	c.Store(next)
	if got := handshakeSerial(t, addr); got != 1002 {
		t.Fatalf("after Store: serial %d, want 1002", got)
	}
	// The connection made before the swap still works.
	if _, err := io.WriteString(old, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(old), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("old connection: %v %v", resp, err)
	}
	resp.Body.Close()

	// A key that does not match: Load fails naming both files, the
	// served certificate stays.
	otherCert := filepath.Join(dir, "other.pem")
	testcert.New(t, testcert.Options{Serial: 1003}).Write(t, otherCert, filepath.Join(dir, "otherkey.pem"))
	data, _ := os.ReadFile(otherCert)
	os.WriteFile(certfile, data, 0o644)
	if _, err := c.Load(); err == nil || !strings.Contains(err.Error(), certfile) || !strings.Contains(err.Error(), keyfile) {
		t.Fatalf("mismatched pair: Load error %v", err)
	}
	os.Remove(keyfile)
	_, err = c.Load()
	var kp *KeyPairError
	if !errors.As(err, &kp) || kp.File != "keyfile" || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing key: %v", err)
	}
	if got := handshakeSerial(t, addr); got != 1002 {
		t.Fatalf("after failed loads: serial %d, want 1002", got)
	}
}

// The ALPN offer follows the protocols the caller serves.
func TestCertificateConfigALPN(t *testing.T) {
	dir := t.TempDir()
	certfile, keyfile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.New(t, testcert.Options{Serial: 7}).Write(t, certfile, keyfile)
	c, err := NewCertificate(certfile, keyfile)
	if err != nil {
		t.Fatal(err)
	}
	protos := []string{"http/1.1"}
	cfg := c.Config(protos)
	protos[0] = "changed"
	if strings.Join(cfg.NextProtos, ",") != "http/1.1" || cfg.MinVersion != tls.VersionTLS12 || cfg.GetCertificate == nil || len(cfg.Certificates) != 0 {
		t.Errorf("config %+v", cfg)
	}
}

func TestParseProxyMode(t *testing.T) {
	for in, want := range map[string]ProxyMode{
		"off": ProxyOff, "V1": ProxyV1, " v2 ": ProxyV2, "auto": ProxyAuto,
		"false": ProxyOff, "": ProxyOff, "0": ProxyOff, "true": ProxyAuto, "on": ProxyAuto, "yes": ProxyAuto,
	} {
		if got, err := ParseProxyMode(in); err != nil || got != want {
			t.Errorf("ParseProxyMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"v3", "proxy", "maybe"} {
		if _, err := ParseProxyMode(bad); err == nil || !strings.Contains(err.Error(), "off, v1, v2 or auto") {
			t.Errorf("ParseProxyMode(%q) error %v", bad, err)
		}
	}
}

func proxyHeader(version byte, src string) []byte {
	h := &proxyproto.Header{
		Version:           version,
		Command:           proxyproto.PROXY,
		TransportProtocol: proxyproto.TCPv4,
		SourceAddr:        &net.TCPAddr{IP: net.ParseIP(src), Port: 51000},
		DestinationAddr:   &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443},
	}
	b, err := h.Format()
	if err != nil {
		panic(err)
	}
	return b
}

// WrapProxy: what RemoteAddr a request sees, or that the connection is
// closed, for each mode, peer and header.
func TestWrapProxy(t *testing.T) {
	localHeader := func() []byte {
		b, _ := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
		return b
	}()
	tests := []struct {
		name    string
		mode    ProxyMode
		allowed bool
		header  []byte
		want    string // the host of RemoteAddr the handler sees; "" when the connection must be closed
	}{
		{name: "off: a header is the request", mode: ProxyOff, allowed: true, header: proxyHeader(1, "203.0.113.9"), want: "closed-or-400"},
		{name: "v1 from an allowed peer", mode: ProxyV1, allowed: true, header: proxyHeader(1, "203.0.113.9"), want: "203.0.113.9"},
		{name: "v1 required", mode: ProxyV1, allowed: true, want: ""},
		{name: "v1 refuses v2", mode: ProxyV1, allowed: true, header: proxyHeader(2, "203.0.113.9"), want: ""},
		{name: "v2 from an allowed peer", mode: ProxyV2, allowed: true, header: proxyHeader(2, "198.51.100.4"), want: "198.51.100.4"},
		{name: "v2 refuses v1", mode: ProxyV2, allowed: true, header: proxyHeader(1, "198.51.100.4"), want: ""},
		{name: "v2 LOCAL keeps the socket's address", mode: ProxyV2, allowed: true, header: localHeader, want: "127.0.0.1"},
		{name: "auto: v1", mode: ProxyAuto, allowed: true, header: proxyHeader(1, "203.0.113.9"), want: "203.0.113.9"},
		{name: "auto: v2", mode: ProxyAuto, allowed: true, header: proxyHeader(2, "203.0.113.9"), want: "203.0.113.9"},
		{name: "auto: no header", mode: ProxyAuto, allowed: true, want: "127.0.0.1"},
		{name: "disallowed peer: header dropped, own address", mode: ProxyV1, allowed: false, header: proxyHeader(1, "203.0.113.9"), want: "127.0.0.1"},
		{name: "disallowed peer: v2 header dropped", mode: ProxyAuto, allowed: false, header: proxyHeader(2, "203.0.113.9"), want: "127.0.0.1"},
		{name: "disallowed peer: no header needed", mode: ProxyV2, allowed: false, want: "127.0.0.1"},
		{name: "malformed v1 header", mode: ProxyAuto, allowed: true, header: []byte("PROXY TCP4 nonsense\r\n"), want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := Listen(t.Context(), Spec{TCP, "127.0.0.1:0"}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			peers := make(chan net.Addr, 4)
			pln := WrapProxy(ln, ProxyOptions{Mode: tc.mode, Allowed: func(a net.Addr) bool { peers <- a; return tc.allowed }, Timeout: 2 * time.Second})
			if tc.mode == ProxyOff && pln != ln {
				t.Fatal("off wrapped the listener")
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				host, _, _ := net.SplitHostPort(r.RemoteAddr)
				io.WriteString(w, host)
			}), ReadHeaderTimeout: 5 * time.Second}
			go srv.Serve(pln)
			defer srv.Close()

			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(append(tc.header, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			switch tc.want {
			case "":
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					t.Fatalf("got %d %q, want the connection closed", resp.StatusCode, body)
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the connection hung instead of closing: %v", err)
				}
			case "closed-or-400":
				if err == nil && resp.StatusCode != 400 {
					t.Fatalf("status %d, want 400 or a closed connection", resp.StatusCode)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(body) != tc.want {
					t.Fatalf("got %d %q, want the handler to see %s", resp.StatusCode, body, tc.want)
				}
			}
			if tc.mode != ProxyOff {
				if p := <-peers; !strings.HasPrefix(p.String(), "127.0.0.1:") || len(peers) != 0 {
					t.Errorf("Allowed asked about %v (and %d more), want the socket's peer once", p, len(peers))
				}
			}
		})
	}
}

// A peer that connects and sends nothing does not hold Accept: the header
// is read in the connection's goroutine, and the timeout closes it.
func TestWrapProxySilentPeer(t *testing.T) {
	ln, err := Listen(t.Context(), Spec{TCP, "127.0.0.1:0"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pln := WrapProxy(ln, ProxyOptions{Mode: ProxyV1, Allowed: func(net.Addr) bool { return true }, Timeout: 300 * time.Millisecond})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		io.WriteString(w, host)
	})}
	go srv.Serve(pln)
	defer srv.Close()

	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(append(proxyHeader(1, "192.0.2.1"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "192.0.2.1" {
		t.Fatalf("body %q", body)
	}
	silent.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("the silent connection got data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the silent connection was not closed after the header timeout (%v)", time.Since(start))
	}
}
