package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"paddock/control"
	"paddock/internal/testcert"
)

// End-to-end tests of the protocols part: HTTP/2 and h2c, the TLS
// certificate swapped on reload, the PROXY protocol and the forwarding
// headers, against the real binary (TestMain puts it on $PATH).

// protoWritePair writes a self-signed certificate for the loopback names
// with the given serial number and its key to certfile and keyfile, each
// file replaced by rename as certbot and Kubernetes do.
func protoWritePair(t *testing.T, certfile, keyfile string, serial int64) {
	t.Helper()
	testcert.New(t, testcert.Options{Serial: serial}).Write(t, certfile, keyfile)
}

// protoSerialAt does a TLS handshake with addr and returns the serial number of
// the certificate served (0 when the handshake fails).
func protoSerialAt(addr string) int64 {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return 0
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// protoClientFrom is an HTTP/1.1 client whose connections come from the local
// address ip (any 127.0.0.0/8 address reaches 127.0.0.1 on Linux), so a
// test can be a peer that proxy_allow_ips or forwarded_allow_ips does not
// list.
func protoClientFrom(ip string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// protoAccessLines waits until the access log has at least n lines and returns
// them.
func protoAccessLines(t *testing.T, path string, n int) []string {
	t.Helper()
	var lines []string
	waitFor(t, fmt.Sprintf("%d access log lines in %s", n, path), 10*time.Second, func() bool {
		data, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(data) == 0 {
			lines = nil
		}
		return len(lines) >= n
	})
	return lines
}

// protoWaitServing waits until url answers through client.
func protoWaitServing(t *testing.T, client *http.Client, url string) *http.Response {
	t.Helper()
	var resp *http.Response
	waitFor(t, url, 10*time.Second, func() bool {
		var err error
		resp, err = client.Get(url)
		return err == nil
	})
	return resp
}

func protoBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// h2 over TLS and h2c in clear get HTTP/2.0 (h2c with the stdlib client:
// http.Transport.Protocols, prior knowledge); HTTP/1.1 clients still get
// HTTP/1.1; a client sending HTTP/2 garbage loses its connection and the
// others are served.
func TestProtocolsHTTP2(t *testing.T) {
	t.Run("h2c", func(t *testing.T) {
		port := freePort(t)
		cmd, stderr, _ := startPaddock(t, fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = 127.0.0.1:%d\nworkers = 1\nprotocols = h1 h2c\n\n[app:main]\nuse = egg:paddock#hello\nbody = cleartext\n", port))
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		h2c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		resp := protoWaitServing(t, h2c, url)
		if body := protoBody(t, resp); resp.ProtoMajor != 2 || body != "cleartext" {
			t.Fatalf("h2c client got %s %q\n%s", resp.Proto, body, stderr)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		if body := protoBody(t, resp); resp.ProtoMajor != 1 || body != "cleartext" {
			t.Fatalf("HTTP/1.1 client got %s %q", resp.Proto, body)
		}
		// HTTP/2 garbage: a frame too large, a frame before SETTINGS, a
		// broken preface, a truncated connection.
		for _, garbage := range []string{
			"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + strings.Repeat("\xff", 100),
			"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x08\x06\x00\x00\x00\x00\x00ping",
			"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x01\x01\x05\x00\x00\x00\x01\xff",
			"PRI * HTTP/2.0\r\n\r\nQQ\r\n\r\n",
			"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
		} {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(8 * time.Second))
			io.WriteString(c, garbage)
			if cw, ok := c.(*net.TCPConn); ok && strings.HasSuffix(garbage, "\x00\x00") {
				cw.CloseWrite()
			}
			start := time.Now()
			_, err = io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("garbage %q: the connection was not closed within %s", garbage[24:], time.Since(start).Round(time.Millisecond))
			}
			c.Close()
		}
		resp, err = h2c.Get(url)
		if err != nil {
			t.Fatalf("after the garbage: %v\n%s", err, stderr)
		}
		if body := protoBody(t, resp); resp.ProtoMajor != 2 || body != "cleartext" {
			t.Fatalf("after the garbage: %s %q", resp.Proto, body)
		}
		if cmd.ProcessState != nil {
			t.Fatalf("paddock exited: %s", stderr)
		}
	})
	t.Run("h2 over TLS, HTTP/1.1 refused by protocols = h2", func(t *testing.T) {
		dir := t.TempDir()
		certfile, keyfile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		protoWritePair(t, certfile, keyfile, 1)
		port := freePort(t)
		_, stderr, _ := startPaddock(t, fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = 127.0.0.1:%d\nworkers = 1\nprotocols = h2\ncertfile = %s\nkeyfile = %s\n\n[app:main]\nuse = egg:paddock#hello\nbody = tls\n", port, certfile, keyfile))
		url := fmt.Sprintf("https://127.0.0.1:%d/", port)
		h2 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
		resp := protoWaitServing(t, h2, url)
		if body := protoBody(t, resp); resp.ProtoMajor != 2 || body != "tls" {
			t.Fatalf("h2 client got %s %q\n%s", resp.Proto, body, stderr)
		}
		h1 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}}}
		if resp, err := h1.Get(url); err == nil {
			resp.Body.Close()
			t.Fatalf("an HTTP/1.1-only client was served %s with protocols = h2", resp.Proto)
		}
	})
}

// Swapping certfile and keyfile reloads the certificate in place: the
// next handshake sees the new serial number and no worker is replaced; a
// broken new pair fails the reload, keeps the old certificate and shows
// in ctl status.
func TestProtocolsTLSReload(t *testing.T) {
	dir := t.TempDir()
	certfile, keyfile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	protoWritePair(t, certfile, keyfile, 1001)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	config := fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = 2\ncertfile = %s\nkeyfile = %s\n\n[app:main]\nuse = egg:paddock#hello\n", addr, certfile, keyfile)
	cmd, stderr, _ := startPaddock(t, config, "--ctl-socket", sock)
	client := &control.Client{Path: sock, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	m := &ctlMaster{cmd: cmd, stderr: stderr, sock: sock, addr: addr, client: client}
	before := m.waitReady(t, 2)
	if got := protoSerialAt(addr); got != 1001 {
		t.Fatalf("serial %d, want 1001\n%s", got, stderr)
	}
	pids := func(ws []control.Worker) []int {
		var out []int
		for _, w := range ws {
			out = append(out, w.Pid)
		}
		slices.Sort(out)
		return out
	}

	// A new pair: the file watcher reloads (ctl reload would do the same).
	protoWritePair(t, certfile, keyfile, 1002)
	waitFor(t, "the new certificate", 15*time.Second, func() bool { return protoSerialAt(addr) == 1002 })
	// Every worker serves it: several handshakes land on both.
	for range 10 {
		if got := protoSerialAt(addr); got != 1002 {
			t.Fatalf("a handshake after the reload got serial %d\n%s", got, stderr)
		}
	}
	st, err := client.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.LastReload == nil || !st.LastReload.OK {
		t.Fatalf("last reload %+v\n%s", st.LastReload, stderr)
	}
	after := m.waitReady(t, 2)
	if !slices.Equal(pids(before), pids(after)) {
		t.Errorf("workers %v were replaced by %v: a certificate change must not roll them", pids(before), pids(after))
	}

	// A broken pair: a certificate of another key.
	other := t.TempDir()
	protoWritePair(t, filepath.Join(other, "c.pem"), filepath.Join(other, "k.pem"), 1003)
	data, err := os.ReadFile(filepath.Join(other, "c.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certfile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var last *control.ReloadOutcome
	waitFor(t, "the failed reload", 15*time.Second, func() bool {
		st, err := client.Status(t.Context())
		if err != nil || st.LastReload == nil {
			return false
		}
		last = st.LastReload
		return !last.OK
	})
	if !strings.Contains(last.Error, "paste.ini:5: certfile:") || !strings.Contains(last.Error, "private key does not match public key") {
		t.Errorf("last reload error %q does not name certfile's line and the problem", last.Error)
	}
	if got := protoSerialAt(addr); got != 1002 {
		t.Fatalf("after a broken pair: serial %d, want the old 1002\n%s", got, stderr)
	}
	out, _, code := ctlRunE2E(t, sock, "status")
	if code != 0 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "private key does not match public key") {
		t.Errorf("ctl status (exit %d):\n%s", code, out)
	}
	_, errOut, code := ctlRunE2E(t, sock, "reload")
	if code != 1 || !strings.Contains(errOut, "certfile") {
		t.Errorf("ctl reload with a broken pair: exit %d\n%s", code, errOut)
	}
	if got := pids(m.waitReady(t, 2)); !slices.Equal(pids(before), got) {
		t.Errorf("workers changed to %v after a failed reload", got)
	}

	// Fixed again: the next reload serves it.
	protoWritePair(t, certfile, keyfile, 1004)
	waitFor(t, "serial 1004", 15*time.Second, func() bool { return protoSerialAt(addr) == 1004 })
}

// protoProxyHeader is a PROXY header saying the client is src.
func protoProxyHeader(t *testing.T, version byte, src string, dstPort int) []byte {
	t.Helper()
	h := &proxyproto.Header{Version: version, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr: &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, DestinationAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: dstPort}}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// protoRawGet sends header then a GET of path from local address from, and
// returns the status, or 0 when the connection was closed without an
// answer.
func protoRawGet(t *testing.T, from, addr string, header []byte, path string) int {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(append(header, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: the connection hung: %v", path, err)
		}
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// PROXY protocol v1 and v2: an allowed peer's header gives the client
// address (the access log's %(h)s), and is required; a header from a peer
// outside proxy_allow_ips is dropped and its own address kept.
func TestProtocolsProxyProtocol(t *testing.T) {
	for _, version := range []byte{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			port := freePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			logfile := filepath.Join(t.TempDir(), "access.log")
			_, stderr, _ := startPaddock(t, fmt.Sprintf(`[server:main]
use = egg:paddock#http
bind = %s
workers = 1
proxy_protocol = v%d
proxy_allow_ips = 127.0.0.1
accesslog = %s
access_log_format = %%%%(h)s %%%%(U)s %%%%(s)s

[app:main]
use = egg:paddock#hello
`, addr, version, logfile))
			waitFor(t, "the listener", 10*time.Second, func() bool {
				c, err := net.Dial("tcp", addr)
				if err == nil {
					c.Close()
				}
				return err == nil
			})
			if got := protoRawGet(t, "127.0.0.1", addr, protoProxyHeader(t, version, "192.0.2.1", port), "/warmup"); got != 200 {
				t.Fatalf("warmup: %d\n%s", got, stderr)
			}
			other := byte(3 - version)
			cases := []struct {
				from, path string
				header     []byte
				want       int
				log        string
			}{
				{from: "127.0.0.1", path: "/allowed", header: protoProxyHeader(t, version, "203.0.113.9", port), want: 200, log: "203.0.113.9 /allowed 200"},
				{from: "127.0.0.1", path: "/allowed-no-header", want: 0},
				{from: "127.0.0.1", path: "/allowed-other-version", header: protoProxyHeader(t, other, "203.0.113.9", port), want: 0},
				{from: "127.0.0.2", path: "/disallowed", header: protoProxyHeader(t, version, "203.0.113.9", port), want: 200, log: "127.0.0.2 /disallowed 200"},
				{from: "127.0.0.2", path: "/disallowed-no-header", want: 200, log: "127.0.0.2 /disallowed-no-header 200"},
			}
			var want []string
			for _, c := range cases {
				if got := protoRawGet(t, c.from, addr, c.header, c.path); got != c.want {
					t.Errorf("%s from %s: status %d, want %d (0: closed)\n%s", c.path, c.from, got, c.want, stderr)
				}
				if c.log != "" {
					want = append(want, c.log)
				}
			}
			lines := protoAccessLines(t, logfile, len(want)+1)
			if got := lines[1:]; !slices.Equal(got, want) {
				t.Errorf("access log\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// forwarded_allow_ips: a trusted peer's X-Forwarded-For gives the client
// (right-most untrusted hop) and its X-Forwarded-Proto the scheme, which
// the access log shows; an untrusted peer's forged headers are removed;
// contradicting scheme headers get 400.
func TestProtocolsForwardedHeaders(t *testing.T) {
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logfile := filepath.Join(t.TempDir(), "access.log")
	_, stderr, _ := startPaddock(t, fmt.Sprintf(`[server:main]
use = egg:paddock#http
bind = %s
workers = 1
forwarded_allow_ips = 127.0.0.1, 10.0.0.0/8
accesslog = %s
access_log_format = %%%%(h)s %%%%(U)s %%%%({wsgi.url_scheme}e)s "%%%%({x-forwarded-for}i)s"

[app:main]
use = egg:paddock#hello
`, addr, logfile))
	trusted, untrusted := protoClientFrom("127.0.0.1"), protoClientFrom("127.0.0.2")
	protoWaitServing(t, trusted, "http://"+addr+"/warmup").Body.Close()

	do := func(c *http.Client, path string, h map[string]string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+addr+path, nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v\n%s", path, err, stderr)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := do(trusted, "/via-proxy", map[string]string{"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.1.1", "X-Forwarded-Proto": "https"}); got != 200 {
		t.Errorf("via proxy: %d", got)
	}
	if got := do(untrusted, "/forged", map[string]string{"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"}); got != 200 {
		t.Errorf("forged: %d", got)
	}
	if got := do(trusted, "/contradiction", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"}); got != 400 {
		t.Errorf("contradicting scheme headers: %d, want 400", got)
	}
	lines := protoAccessLines(t, logfile, 3)
	want := []string{
		`127.0.0.1 /warmup http "-"`,
		`203.0.113.9 /via-proxy https "6.6.6.6, 203.0.113.9, 10.1.1.1"`,
		`127.0.0.2 /forged http "-"`,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("access log\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
