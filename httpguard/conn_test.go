package httpguard

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"paddock/internal/testcert"
)

// serve runs h on 127.0.0.1 behind the guard (TLS when cfg is set) the
// way the worker does: connections are released when hijacked. It
// returns the address; everything stops when the test ends.
func serve(t *testing.T, h http.Handler, cfg *tls.Config, protos *http.Protocols) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var gl net.Listener
	if cfg != nil {
		gl = NewTLSListener(tls.NewListener(ln, cfg), Options{HandshakeTimeout: 5 * time.Second})
	} else {
		gl = NewListener(ln, Options{})
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		Protocols:         protos,
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateHijacked {
				Release(c)
			}
		},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(gl)
	}()
	t.Cleanup(func() {
		hs.Close()
		<-done
	})
	return ln.Addr().String()
}

// exchange writes stream (in pieces of at most chunk bytes, 0: at once),
// half-closes, and returns all that comes back before EOF.
func exchange(t *testing.T, addr string, stream []byte, chunk int) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return exchangeOn(t, c, stream, chunk)
}

func exchangeOn(t *testing.T, c net.Conn, stream []byte, chunk int) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if chunk <= 0 {
		chunk = len(stream)
	}
	for len(stream) > 0 {
		n := min(chunk, len(stream))
		if _, err := c.Write(stream[:n]); err != nil {
			break // the server may close once it refused
		}
		stream = stream[n:]
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	out, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("no EOF within the deadline; got %q", out)
	}
	return string(out)
}

var statusLine = regexp.MustCompile(`HTTP/1\.[01] (\d\d\d) `)

func statuses(resp string) []string {
	var out []string
	for _, m := range statusLine.FindAllStringSubmatch(resp, -1) {
		out = append(out, m[1])
	}
	return out
}

// counter is a handler counting the requests that reach it; it reads
// the body and says what it got.
type counter struct {
	n       atomic.Int32
	mu      sync.Mutex
	bodyErr []error
}

func (h *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.n.Add(1)
	b, err := io.ReadAll(r.Body)
	if err != nil {
		h.mu.Lock()
		h.bodyErr = append(h.bodyErr, err)
		h.mu.Unlock()
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if r.URL.Path == "/slow" {
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(w, "app saw %s %s body %q trailer %v", r.Method, r.URL.Path, b, r.Trailer)
}

// A refused head gets the guard's 400 and a close, and never reaches the
// handler, however the bytes arrive.
func TestConnRefusesHead(t *testing.T) {
	h := &counter{}
	addr := serve(t, h, nil, nil)
	for _, tc := range refused {
		if tc.inBody {
			continue
		}
		for _, chunk := range []int{0, 1, 7} {
			resp := exchange(t, addr, crlf(tc.stream), chunk)
			st := statuses(resp)
			if len(st) == 0 || st[len(st)-1] != "400" || !strings.Contains(resp, tc.reason) {
				t.Errorf("%s (pieces of %d): want the guard's 400 for %q last, got %q", tc.name, chunk, tc.reason, resp)
			}
		}
	}
	// Only "second request bad" has a first request that is fine.
	if got := h.n.Load(); got != 3 {
		t.Fatalf("%d requests reached the handler, want 3 (the good first request of one case, in 3 chunkings)", got)
	}
}

// A bad request pipelined behind one the handler is still serving is
// answered after that response, not in the middle of it.
func TestConnPipelinedAfterSlowHandler(t *testing.T) {
	h := &counter{}
	addr := serve(t, h, nil, nil)
	resp := exchange(t, addr, crlf("GET /slow HTTP/1.1|Host: x||GET /b HTTP/1.1|Host: x|Bad\nX: y||"), 0)
	st := statuses(resp)
	if len(st) != 2 || st[0] != "200" || st[1] != "400" || !strings.Contains(resp, `app saw GET /slow body ""`) {
		t.Fatalf("want 200 then 400, got %q", resp)
	}
	if i := strings.Index(resp, "HTTP/1.1 400"); !strings.HasSuffix(resp[:i], `trailer map[]`) {
		t.Fatalf("the 400 is not right after the first response: %q", resp)
	}
	if h.n.Load() != 1 {
		t.Fatalf("%d requests reached the handler, want 1", h.n.Load())
	}
}

// A violation in a chunked body (the head already went on) fails the
// handler's body read: the forbidden trailer never reaches it.
func TestConnRefusesBody(t *testing.T) {
	h := &counter{}
	addr := serve(t, h, nil, nil)
	resp := exchange(t, addr, crlf("POST /p HTTP/1.1|Host: x|Transfer-Encoding: chunked||5|hello|0|Content-Length: 99||GET /smuggled HTTP/1.1|Host: x||"), 0)
	if st := statuses(resp); len(st) != 1 || st[0] != "400" || strings.Contains(resp, "/smuggled") {
		t.Fatalf("want one 400 from the handler, got %q", resp)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// net/http words the failed trailer read its own way.
	if len(h.bodyErr) != 1 {
		t.Fatalf("handler body errors: %v", h.bodyErr)
	}
}

// Ordinary keep-alive traffic from net/http's client goes through.
func TestConnClientTraffic(t *testing.T) {
	h := &counter{}
	addr := serve(t, h, nil, nil)
	c := &http.Client{Timeout: 5 * time.Second}
	for i := range 20 {
		var resp *http.Response
		var err error
		switch i % 3 {
		case 0:
			resp, err = c.Get("http://" + addr + "/get")
		case 1:
			resp, err = c.Post("http://"+addr+"/cl", "text/plain", strings.NewReader("hello"))
		default:
			// An io.Reader of unknown length goes chunked.
			resp, err = c.Post("http://"+addr+"/chunked", "text/plain", io.MultiReader(strings.NewReader("hel"), strings.NewReader("lo")))
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (i%3 != 0 && !strings.Contains(string(b), `body "hello"`)) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
}

// An Upgrade the handler takes (hijack): the bytes the client sent right
// behind the head, in the same write, reach the handler untouched.
func TestConnUpgradeHijacked(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		b, _ := io.ReadAll(brw) // the new protocol: echo everything
		c.Write(b)
	}), nil, nil)
	tail := "\x81\x05 hello\n\n \r bare\nLF and NUL \x00 GET / HTTP/1.1\r\nBad\n\r\n"
	resp := exchange(t, addr, append(crlf("GET /ws HTTP/1.1|Host: x|Upgrade: echo|Connection: Upgrade||"), tail...), 0)
	if !strings.HasPrefix(resp, "HTTP/1.1 101 ") || !strings.HasSuffix(resp, "\r\n\r\n"+tail) {
		t.Fatalf("want 101 and the tail echoed, got %q", resp)
	}
}

// An Upgrade the handler ignores: the connection stays HTTP/1 and the
// next request is checked as usual.
func TestConnUpgradeIgnored(t *testing.T) {
	h := &counter{}
	addr := serve(t, h, nil, nil)
	resp := exchange(t, addr, crlf("GET /a HTTP/1.1|Host: x|Upgrade: websocket||GET /b HTTP/1.1|Host: x| Folded: y||"), 0)
	if st := statuses(resp); len(st) != 2 || st[0] != "200" || st[1] != "400" || !strings.Contains(resp, "obsolete line folding") {
		t.Fatalf("want 200 then the guard's 400, got %q", resp)
	}
	if h.n.Load() != 1 {
		t.Fatalf("%d requests reached the handler, want 1", h.n.Load())
	}
}

// HTTP/2 with prior knowledge (h2c) is not HTTP/1: the guard lets it be.
func TestConnH2C(t *testing.T) {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s", r.Proto)
	}), nil, &p)
	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &cp}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/2.0" {
		t.Fatalf("got %q", b)
	}
}

// Over TLS: HTTP/1.1 is checked and still sees its TLS state; HTTP/2
// (ALPN h2) is served by net/http as usual; plain HTTP gets net/http's
// answer.
func TestTLSListener(t *testing.T) {
	cert := testcert.New(t, testcert.Options{Serial: 1}).TLS()
	h := &counter{}
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || !r.TLS.HandshakeComplete {
			http.Error(w, "no TLS state", 500)
			return
		}
		w.Header().Set("X-Proto", r.Proto)
		h.ServeHTTP(w, r)
	}), &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}, nil)
	clientCfg := &tls.Config{InsecureSkipVerify: true}

	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: clientCfg.Clone(), ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		resp, err := c.Post("https://"+addr+"/p", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
		if resp.StatusCode != 200 || resp.Header.Get("X-Proto") != want || !strings.Contains(string(b), `body "hello"`) {
			t.Fatalf("h2 %v: %d %s %q", h2, resp.StatusCode, resp.Header.Get("X-Proto"), b)
		}
	}

	// A smuggling attempt over TLS gets the guard's 400.
	tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	resp := exchangeOn(t, tc, crlf("POST / HTTP/1.1|Host: x|Content-Length: 3|Transfer-Encoding: chunked||0||"), 0)
	if st := statuses(resp); len(st) != 1 || st[0] != "400" || !strings.Contains(resp, "both Content-Length and Transfer-Encoding") {
		t.Fatalf("got %q", resp)
	}

	// Plain HTTP to the TLS port.
	resp = exchange(t, addr, crlf("GET / HTTP/1.1|Host: x||"), 0)
	if !strings.Contains(resp, "Client sent an HTTP request to an HTTPS server") {
		t.Fatalf("got %q", resp)
	}
	if n := h.n.Load(); n != 2 {
		t.Fatalf("%d requests reached the handler, want 2", n)
	}
}

// Close does not wait for a client that never finishes its handshake
// longer than closeGrace, and Accept then fails with net.ErrClosed.
func TestTLSListenerClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := testcert.New(t, testcert.Options{Serial: 1}).TLS()
	gl := NewTLSListener(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}), Options{})
	stuck, err := net.Dial("tcp", ln.Addr().String()) // sends no ClientHello
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	good := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
		}
		good <- err
	}()
	c, err := gl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-good; err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the stuck one is in its handshake
	start := time.Now()
	gl.Close()
	_, err = gl.Accept()
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if d := time.Since(start); d > closeGrace+2*time.Second {
		t.Fatalf("Accept took %v to fail after Close", d)
	}
	// The stuck client's connection was closed.
	_ = stuck.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(stuck).ReadByte(); err == nil {
		t.Fatal("the stuck connection is still open")
	}
}
