package worker

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pires/go-proxyproto"

	"paddock/internal/testcert"
	"paddock/listener"
)

// startWrapped serves h like a worker does: wrapListeners (PROXY
// protocol, TLS), then newServer (limits, forwarded headers).
func startWrapped(t *testing.T, s *Settings, h http.Handler) (string, *listener.Certificate) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lns, cert, err := wrapListeners([]net.Listener{ln}, s, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t.Context(), h, s, hclog.NewNullLogger())
	srv.start(lns)
	t.Cleanup(func() {
		srv.close()
		srv.wait()
	})
	return ln.Addr().String(), cert
}

// echo answers the protocol, the remote address, the scheme the pipeline
// would see and the X-Forwarded-For it got.
func echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme := r.URL.Scheme
		if scheme == "" {
			scheme = "http"
			if r.TLS != nil {
				scheme = "https"
			}
		}
		io.WriteString(w, r.Proto+" "+r.RemoteAddr+" "+scheme+" xff="+r.Header.Get("X-Forwarded-For"))
	})
}

func getBody(t *testing.T, client *http.Client, url string, header map[string]string) (string, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", errors.New(resp.Status + ": " + string(body))
	}
	return string(body), nil
}

func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// protocols: h2c (prior knowledge, the stdlib client since Go 1.24) when
// listed, HTTP/1.1 when listed, and neither when not.
func TestProtocolsClear(t *testing.T) {
	tests := []struct {
		protocols  string
		h1, h2c    bool
		wantH2CErr bool
	}{
		{protocols: "h1 h2", h1: true},
		{protocols: "h1 h2c", h1: true, h2c: true},
		{protocols: "h2c", h2c: true},
	}
	for _, tc := range tests {
		t.Run(tc.protocols, func(t *testing.T) {
			s := testSettings(t, map[string]string{"protocols": tc.protocols})
			addr, _ := startWrapped(t, s, echo())
			h1 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
			body, err := getBody(t, h1, "http://"+addr+"/", nil)
			if tc.h1 != (err == nil) || (err == nil && !strings.HasPrefix(body, "HTTP/1.1 ")) {
				t.Errorf("HTTP/1.1 client: %q %v, want served %v", body, err, tc.h1)
			}
			body, err = getBody(t, h2cClient(), "http://"+addr+"/", nil)
			if tc.h2c != (err == nil) || (err == nil && !strings.HasPrefix(body, "HTTP/2.0 ")) {
				t.Errorf("h2c client: %q %v, want served %v", body, err, tc.h2c)
			}
			if tc.h1 {
				// No Upgrade: h2c: the request is answered over HTTP/1.1.
				body, err = getBody(t, h1, "http://"+addr+"/", map[string]string{"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "Http2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"})
				if err != nil || !strings.HasPrefix(body, "HTTP/1.1 ") {
					t.Errorf("Upgrade: h2c: %q %v, want an HTTP/1.1 answer", body, err)
				}
			}
		})
	}
}

// writeCert writes a self-signed certificate for the loopback names with
// the given serial number and its key to certfile and keyfile.
func writeCert(t *testing.T, certfile, keyfile string, serial int64) {
	t.Helper()
	testcert.New(t, testcert.Options{Serial: serial}).Write(t, certfile, keyfile)
}

// Over TLS: h2 and h1 through ALPN as protocols says; the ALPN offer
// never names what the server does not serve.
func TestProtocolsTLS(t *testing.T) {
	dir := t.TempDir()
	certfile, keyfile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeCert(t, certfile, keyfile, 5)
	tests := []struct {
		protocols string
		want      map[string]string // client ALPN offer -> proto seen ("" refused)
	}{
		{protocols: "h1 h2", want: map[string]string{"h2,http/1.1": "HTTP/2.0", "http/1.1": "HTTP/1.1"}},
		{protocols: "h1 h2c", want: map[string]string{"h2,http/1.1": "HTTP/1.1", "http/1.1": "HTTP/1.1"}},
		{protocols: "h2", want: map[string]string{"h2,http/1.1": "HTTP/2.0", "http/1.1": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.protocols, func(t *testing.T) {
			s := testSettings(t, map[string]string{"protocols": tc.protocols, "certfile": certfile, "keyfile": keyfile})
			addr, cert := startWrapped(t, s, echo())
			if cert == nil {
				t.Fatal("no certificate")
			}
			for offer, want := range tc.want {
				tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: strings.Split(offer, ",")}, ForceAttemptHTTP2: strings.HasPrefix(offer, "h2")}
				body, err := getBody(t, &http.Client{Transport: tr, Timeout: 5 * time.Second}, "https://"+addr+"/", nil)
				got := ""
				if err == nil {
					got = strings.Fields(body)[0]
				}
				if got != want {
					t.Errorf("offer %s: got %q (%v), want %q", offer, got, err, want)
				}
				tr.CloseIdleConnections()
			}
		})
	}
}

// A client speaking HTTP/2 garbage loses its connection; others are
// served.
func TestH2CGarbage(t *testing.T) {
	s := testSettings(t, map[string]string{"protocols": "h1 h2c"})
	addr, _ := startWrapped(t, s, echo())
	for _, garbage := range []string{
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x04\x09\x00\x00\x00\x00\x00garb", // CONTINUATION before anything
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + strings.Repeat("\xff", 64),                 // a frame of 16 MiB
		"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",                                              // a broken preface
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, garbage)
		_, err = io.Copy(io.Discard, c) // the server's GOAWAY or 400, then EOF
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%q: the connection stayed open", garbage[24:])
		}
		c.Close()
	}
	if body, err := getBody(t, h2cClient(), "http://"+addr+"/", nil); err != nil || !strings.HasPrefix(body, "HTTP/2.0") {
		t.Fatalf("after garbage: %q %v", body, err)
	}
}

// The forwarded headers are applied in front of the handler: the client
// from X-Forwarded-For of a trusted peer, the scheme from
// X-Forwarded-Proto; an untrusted peer's are stripped.
func TestServerForwarded(t *testing.T) {
	s := testSettings(t, map[string]string{})
	addr, _ := startWrapped(t, s, echo())
	client := &http.Client{Timeout: 5 * time.Second}
	body, err := getBody(t, client, "http://"+addr+"/", map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
	if err != nil || body != "HTTP/1.1 203.0.113.9:0 https xff=203.0.113.9" {
		t.Errorf("trusted (loopback) peer: %q %v", body, err)
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Ssl", "off")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("contradicting scheme headers: %d, want 400", resp.StatusCode)
	}

	// Nobody trusted: the forged headers are stripped.
	s = testSettings(t, map[string]string{"forwarded_allow_ips": "10.0.0.0/8"})
	addr, _ = startWrapped(t, s, echo())
	body, err = getBody(t, client, "http://"+addr+"/", map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
	if err != nil || !strings.HasPrefix(body, "HTTP/1.1 127.0.0.1:") || !strings.HasSuffix(body, " http xff=") {
		t.Errorf("untrusted peer: %q %v", body, err)
	}
}

// PROXY protocol, TLS and forwarded headers together, in that order: the
// PROXY header's source is the peer forwarded_allow_ips judges.
func TestProxyProtocolThenTLS(t *testing.T) {
	dir := t.TempDir()
	certfile, keyfile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeCert(t, certfile, keyfile, 9)
	s := testSettings(t, map[string]string{"proxy_protocol": "v2", "certfile": certfile, "keyfile": keyfile})
	addr, _ := startWrapped(t, s, echo())

	send := func(src string) string {
		t.Helper()
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
			SourceAddr: &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, DestinationAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443}}
		if _, err := h.WriteTo(raw); err != nil {
			t.Fatal(err)
		}
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	// The client the load balancer reports is not a trusted proxy: its
	// X-Forwarded-For is stripped.
	if got := send("203.0.113.9"); got != "HTTP/1.1 203.0.113.9:40000 https xff=" {
		t.Errorf("PROXY from an untrusted client: %q", got)
	}
	// A PROXY source inside forwarded_allow_ips (a proxy behind the load
	// balancer) is believed.
	if got := send("127.0.0.1"); got != "HTTP/1.1 198.51.100.1:0 https xff=198.51.100.1" {
		t.Errorf("PROXY from a trusted proxy: %q", got)
	}
}

// The new settings survive the JSON trip to the workers.
func TestProtocolSettingsJSON(t *testing.T) {
	s := testSettings(t, map[string]string{"protocols": "h1 h2c", "proxy_protocol": "v1", "proxy_allow_ips": "10.0.0.0/8 *",
		"forwarded_allow_ips": "192.0.2.0/24", "forwarded_header": "forwarded", "secure_scheme_headers": "X-Scheme: on"})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	back := new(Settings)
	if err := json.Unmarshal(b, back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Protocols, s.Protocols) || back.ProxyProtocol != s.ProxyProtocol || !reflect.DeepEqual(back.ProxyAllowIPs, s.ProxyAllowIPs) ||
		!reflect.DeepEqual(back.ForwardedAllowIPs, s.ForwardedAllowIPs) || back.ForwardedHeader != "Forwarded" || !reflect.DeepEqual(back.SecureSchemeHeaders, s.SecureSchemeHeaders) {
		t.Errorf("round trip:\n%+v\n%+v", back, s)
	}
	if !sameProcessSettings(s, back) {
		t.Error("the round trip changed the settings as reload compares them")
	}
}

// CheckTLS names the setting of the file that fails.
func TestCheckTLS(t *testing.T) {
	dir := t.TempDir()
	certfile, keyfile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeCert(t, certfile, keyfile, 1)
	s := testSettings(t, map[string]string{"certfile": certfile, "keyfile": keyfile})
	if err := CheckTLS(s); err != nil {
		t.Fatal(err)
	}
	s = testSettings(t, map[string]string{"certfile": certfile, "keyfile": filepath.Join(dir, "missing.pem")})
	if err := CheckTLS(s); err == nil || !strings.HasPrefix(err.Error(), "--keyfile: keyfile: listener: read keyfile:") {
		t.Errorf("missing key: %v", err)
	}
	other := filepath.Join(dir, "o.pem")
	writeCert(t, other, filepath.Join(dir, "ok.pem"), 2)
	s = testSettings(t, map[string]string{"certfile": other, "keyfile": keyfile})
	if err := CheckTLS(s); err == nil || !strings.HasPrefix(err.Error(), "--certfile: certfile: listener: certfile") {
		t.Errorf("mismatch: %v", err)
	}
	s = testSettings(t, map[string]string{"keyfile": keyfile})
	if err := CheckTLS(s); err == nil || !strings.Contains(err.Error(), "TLS needs certfile too") {
		t.Errorf("no certfile: %v", err)
	}
}
