package pipeline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"paddock/forwarded"
)

// echoUpstream answers with its name, the path it saw and selected
// request headers.
func echoUpstream(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", name)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Method", r.Method)
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Prefix", "X-Secret", "Connection", "X-Hop", "Forwarded", "Upgrade"} {
			w.Header()["Seen-"+k] = r.Header.Values(k)
		}
		body, _ := io.ReadAll(r.Body)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func deadURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

// rawUpstream serves every connection with handle, on a listener closed
// (and its goroutines waited for) when the test ends.
func rawUpstream(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// readRequestHead reads one request head from c.
func readRequestHead(c net.Conn) (*http.Request, *bufio.Reader, error) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	return req, br, err
}

func newProxy(t *testing.T, opts map[string]string) (*proxyApp, *Config) {
	t.Helper()
	c := catConfig(opts)
	return mustApp(t, proxyFactory(), c).(*proxyApp), c
}

func upstreamStatus(p *proxyApp, url string) UpstreamStatus {
	for _, u := range p.status().Upstreams {
		if u.URL == url {
			return u
		}
	}
	return UpstreamStatus{}
}

func TestCatProxy(t *testing.T) {
	up := echoUpstream(t, "a")
	p, _ := newProxy(t, map[string]string{
		"address":               up.URL + "/base",
		"suppress_http_headers": "X-Secret",
	})

	tests := []struct {
		name    string
		method  string
		target  string
		script  string
		scheme  string
		header  map[string]string
		body    string
		check   map[string]string
		absent  []string
		wantSts int
	}{
		{name: "path joined and forwarded headers", method: "GET", target: "http://front.example/x/y?q=1",
			check: map[string]string{
				"X-Seen-Path":            "/base/x/y?q=1",
				"Seen-X-Forwarded-For":   "192.0.2.1",
				"Seen-X-Forwarded-Host":  "front.example",
				"Seen-X-Forwarded-Proto": "http",
			},
			absent:  []string{"Seen-X-Forwarded-Prefix"},
			wantSts: 200},
		{name: "prefix from script name", method: "GET", target: "http://front.example/x", script: "/api",
			check: map[string]string{"Seen-X-Forwarded-Prefix": "/api"}, wantSts: 200},
		{name: "scheme from http_proxy_to_wsgi", method: "GET", target: "http://front.example/x", scheme: "https",
			check: map[string]string{"Seen-X-Forwarded-Proto": "https"}, wantSts: 200},
		{name: "suppressed and hop-by-hop headers", method: "GET", target: "http://front.example/x",
			header:  map[string]string{"X-Secret": "s3", "Connection": "X-Hop", "X-Hop": "1"},
			absent:  []string{"Seen-X-Secret", "Seen-X-Hop", "Seen-Connection"},
			wantSts: 200},
		// The server strips an untrusted peer's forwarding headers
		// (TestCatProxyForwardedTrust): an X-Forwarded-For that reaches
		// the proxy is a trusted chain and the peer is appended.
		{name: "forwarding headers", method: "GET", target: "http://front.example/x",
			header: map[string]string{"X-Forwarded-Host": "evil", "X-Forwarded-Proto": "https", "X-Forwarded-For": "6.6.6.6",
				"X-Forwarded-Prefix": "/evil", "Forwarded": "for=6.6.6.6"},
			check:  map[string]string{"Seen-X-Forwarded-Host": "front.example", "Seen-X-Forwarded-Proto": "http", "Seen-X-Forwarded-For": "6.6.6.6, 192.0.2.1"},
			absent: []string{"Seen-X-Forwarded-Prefix", "Seen-Forwarded"}, wantSts: 200},
		{name: "body", method: "POST", target: "http://front.example/x", body: "payload",
			check: map[string]string{"X-Seen-Method": "POST"}, wantSts: 200},
		{name: "HEAD", method: "HEAD", target: "http://front.example/x", check: map[string]string{"X-Seen-Method": "HEAD"}, wantSts: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.script != "" {
				req = WithScriptName(req, tt.script)
			}
			if tt.scheme != "" {
				req.URL.Scheme = tt.scheme
			}
			rec := serve(p, req)
			if rec.Code != tt.wantSts {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantSts, rec.Body.String())
			}
			for k, v := range tt.check {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for _, k := range tt.absent {
				if got := rec.Header().Values(k); len(got) != 0 {
					t.Errorf("%s reached upstream: %q", k, got)
				}
			}
			if rec.Body.String() != tt.body {
				t.Errorf("body %q, want %q", rec.Body.String(), tt.body)
			}
			if got := rec.Header().Get("X-Seen-Host"); got != strings.TrimPrefix(up.URL, "http://") {
				t.Errorf("upstream saw Host %q, want its own address", got)
			}
		})
	}
	if a := upstreamStatus(p, up.URL+"/base").Active; a != 0 {
		t.Errorf("%d requests still counted in flight", a)
	}
}

// Behind the server's forwarding policy (forwarded_allow_ips): an
// untrusted peer's X-Forwarded-For is dropped and replaced by its
// address; a trusted peer's chain gets the peer appended, and the scheme
// it reports reaches the upstream.
func TestCatProxyForwardedTrust(t *testing.T) {
	up := echoUpstream(t, "a")
	p, _ := newProxy(t, map[string]string{"address": up.URL})
	tests := []struct {
		name, trusted, remote string
		header                map[string]string
		xff, proto            string
	}{
		{"untrusted peer", "10.0.0.0/8", "192.0.2.7:4000", map[string]string{"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}, "192.0.2.7", "http"},
		{"trusted peer", "192.0.2.0/24", "192.0.2.7:4000", map[string]string{"X-Forwarded-For": "203.0.113.9, 10.1.1.1", "X-Forwarded-Proto": "https"},
			"203.0.113.9, 10.1.1.1, 192.0.2.7", "https"},
		{"trusted peer, several header lines", "192.0.2.0/24", "192.0.2.7:4000", nil, "203.0.113.9, 10.1.1.1, 192.0.2.7", "http"},
		{"trusted peer without a chain", "192.0.2.0/24", "192.0.2.7:4000", map[string]string{}, "192.0.2.7", "http"},
		{"ipv6 peer", "", "[2001:db8::1]:4000", map[string]string{"X-Forwarded-For": "6.6.6.6"}, "2001:db8::1", "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var nets forwarded.Networks
			if tt.trusted != "" {
				var err error
				if nets, err = forwarded.ParseNetworks(tt.trusted); err != nil {
					t.Fatal(err)
				}
			}
			h := forwarded.New(p, forwarded.Config{Trusted: nets, SecureSchemeHeaders: forwarded.DefaultSecureSchemeHeaders})
			req := httptest.NewRequest("GET", "http://front.example/", nil)
			req.RemoteAddr = tt.remote
			if tt.header == nil {
				req.Header["X-Forwarded-For"] = []string{"203.0.113.9", "10.1.1.1"}
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := serve(h, req)
			if got := rec.Header().Get("Seen-X-Forwarded-For"); got != tt.xff || len(rec.Header().Values("Seen-X-Forwarded-For")) != 1 {
				t.Errorf("X-Forwarded-For %q, want %q", rec.Header().Values("Seen-X-Forwarded-For"), tt.xff)
			}
			if got := rec.Header().Get("Seen-X-Forwarded-Proto"); got != tt.proto {
				t.Errorf("X-Forwarded-Proto %q, want %q", got, tt.proto)
			}
		})
	}
}

// Hop-by-hop headers of the response (and those its Connection lists)
// stop at the proxy, on both transports.
func TestCatProxyResponseHopByHop(t *testing.T) {
	u := rawUpstream(t, func(c net.Conn) {
		for {
			req, br, err := readRequestHead(c)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			_ = br
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nConnection: X-Up-Hop\r\nX-Up-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p, _ := newProxy(t, map[string]string{"address": u})
	for _, method := range []string{"GET", "POST"} {
		rec := serve(p, httptest.NewRequest(method, "/", strings.NewReader(strings.Repeat("b", len(method)-3))))
		if rec.Code != 200 || rec.Body.String() != "ok" || rec.Header().Get("X-Kept") != "yes" {
			t.Fatalf("%s: %d %q %v", method, rec.Code, rec.Body.String(), rec.Header())
		}
		for _, h := range []string{"Connection", "X-Up-Hop", "Keep-Alive"} {
			if v := rec.Header().Values(h); len(v) != 0 {
				t.Errorf("%s: %s reached the client: %q", method, h, v)
			}
		}
	}
}

func TestCatProxyBadGateway(t *testing.T) {
	p, _ := newProxy(t, map[string]string{"address": deadURL(t), "connect_timeout": "2"})
	for _, method := range []string{"GET", "POST"} {
		rec := serve(p, httptest.NewRequest(method, "/", strings.NewReader("x")))
		if rec.Code != http.StatusBadGateway {
			t.Fatalf("%s: status %d, want 502", method, rec.Code)
		}
	}
	// A lone upstream is never marked down by failures (nginx too).
	if st := p.status().Upstreams[0]; !st.Healthy || st.Failures != 2 || st.Errors != 2 || st.Active != 0 {
		t.Errorf("status %+v, want healthy with 2 failures and nothing in flight", st)
	}
}

// An upstream that answers something that is not HTTP gets the client a
// 502, on the HTTP/1.1 pool (GET) and the standard transport (POST).
func TestCatProxyMalformedResponse(t *testing.T) {
	answers := map[string]string{
		"garbage":     "this is not http\r\n\r\n",
		"bad status":  "HTTP/1.1 two hundred OK\r\nContent-Length: 0\r\n\r\n",
		"bad length":  "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
		"101 unasked": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n",
		"cut head":    "HTTP/1.1 200 OK\r\nContent-Le",
	}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			u := rawUpstream(t, func(c net.Conn) {
				req, _, err := readRequestHead(c)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, answer)
			})
			p, _ := newProxy(t, map[string]string{"address": u})
			for _, method := range []string{"GET", "POST"} {
				rec := serve(p, httptest.NewRequest(method, "/", strings.NewReader("body")))
				if rec.Code != http.StatusBadGateway {
					t.Errorf("%s: status %d, want 502 (%q)", method, rec.Code, rec.Body.String())
				}
			}
			if a := p.status().Upstreams[0].Active; a != 0 {
				t.Errorf("%d requests still counted in flight", a)
			}
		})
	}
}

func TestCatProxyRoundRobin(t *testing.T) {
	a, b := echoUpstream(t, "a"), echoUpstream(t, "b")
	p, _ := newProxy(t, map[string]string{"upstreams": a.URL + ", " + b.URL})
	seen := map[string]int{}
	for range 10 {
		rec := serve(p, httptest.NewRequest("GET", "/", nil))
		seen[rec.Header().Get("X-Upstream")]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Errorf("distribution %v, want 5/5", seen)
	}
}

// blockingUpstream answers /slow only once release is closed, and
// reports each /slow request it holds on held.
func blockingUpstream(t *testing.T, name string, held chan<- string, release <-chan struct{}) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			held <- name
			<-release
		}
		w.Header().Set("X-Upstream", name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// least_conn sends requests to the upstream with fewer in flight; round
// robin does not care.
func TestCatProxyLeastConn(t *testing.T) {
	for _, tc := range []struct {
		balance  string
		wantBusy int // requests the busy upstream gets of 6
	}{{"least_conn", 0}, {"round_robin", 3}} {
		t.Run(tc.balance, func(t *testing.T) {
			held := make(chan string, 2)
			release := make(chan struct{})
			a := blockingUpstream(t, "a", held, release)
			b := blockingUpstream(t, "b", held, release)
			p, _ := newProxy(t, map[string]string{"upstreams": a.URL + " " + b.URL, "balance": tc.balance})
			done := make(chan int)
			go func() { done <- serve(p, httptest.NewRequest("GET", "/slow", nil)).Code }()
			busy := <-held
			counts := map[string]int{}
			for range 6 {
				rec := serve(p, httptest.NewRequest("GET", "/", nil))
				counts[rec.Header().Get("X-Upstream")]++
			}
			if st := upstreamStatus(p, map[string]string{"a": a.URL, "b": b.URL}[busy]); st.Active != 1 {
				t.Errorf("busy upstream: %d in flight, want 1", st.Active)
			}
			close(release)
			if code := <-done; code != 200 {
				t.Errorf("slow request: %d", code)
			}
			if counts[busy] != tc.wantBusy {
				t.Errorf("busy upstream %s got %d of 6 (%v), want %d", busy, counts[busy], counts, tc.wantBusy)
			}
		})
	}
}

// fakeClock is the proxy's p.now in tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestCatProxyPassiveHealth(t *testing.T) {
	good := echoUpstream(t, "good")
	dead := deadURL(t)
	p, _ := newProxy(t, map[string]string{"upstreams": dead + " " + good.URL, "fail_threshold": "2", "fail_timeout": "1h"})
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p.now = clock.Now

	// Each request starts on the dead upstream (round robin from the
	// first) and is retried on the good one: the client sees no error.
	for i := range 2 {
		p.next.Store(0)
		rec := serve(p, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 || rec.Header().Get("X-Upstream") != "good" {
			t.Fatalf("request %d: %d from %q, want 200 from good after a retry", i, rec.Code, rec.Header().Get("X-Upstream"))
		}
		if st := upstreamStatus(p, dead); st.Failures != int64(i+1) {
			t.Fatalf("request %d: dead upstream failures %d", i, st.Failures)
		}
	}
	st := upstreamStatus(p, dead)
	if st.Healthy || st.State != "down" || st.Reason != "failures" || st.DownForS != 3600 {
		t.Fatalf("after fail_threshold failures: %+v, want down for 1h", st)
	}
	sent := st.Requests
	for range 6 {
		rec := serve(p, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 || rec.Header().Get("X-Upstream") != "good" {
			t.Fatalf("%d from %q, want 200 from good", rec.Code, rec.Header().Get("X-Upstream"))
		}
	}
	if got := upstreamStatus(p, dead).Requests; got != sent {
		t.Errorf("a down upstream got %d requests", got-sent)
	}

	// After fail_timeout exactly one request is its trial; it fails, is
	// retried on good, and the upstream is down for another fail_timeout.
	clock.Add(2 * time.Hour)
	if st := upstreamStatus(p, dead); st.State != "down" || st.DownForS != 0 {
		t.Errorf("fail_timeout over: %+v, want down awaiting its trial", st)
	}
	for range 4 {
		if rec := serve(p, httptest.NewRequest("GET", "/", nil)); rec.Code != 200 {
			t.Fatalf("after fail_timeout: %d", rec.Code)
		}
	}
	st = upstreamStatus(p, dead)
	if st.Requests != sent+1 || st.State != "down" || st.DownForS != 3600 {
		t.Errorf("after the trial: %+v, want exactly one trial request and down for 1h again", st)
	}

	// A trial that works brings the upstream back.
	p2, _ := newProxy(t, map[string]string{"upstreams": good.URL + " " + echoUpstream(t, "other").URL, "fail_threshold": "1", "fail_timeout": "1h"})
	p2.now = clock.Now
	p2.failed(p2.ups[0], errors.New("boom"))
	if st := p2.status().Upstreams[0]; st.State != "down" {
		t.Fatalf("marked: %+v", st)
	}
	clock.Add(2 * time.Hour)
	p2.next.Store(0)
	if rec := serve(p2, httptest.NewRequest("GET", "/", nil)); rec.Header().Get("X-Upstream") != "good" {
		t.Fatalf("trial went to %q", rec.Header().Get("X-Upstream"))
	}
	if st := p2.status().Upstreams[0]; !st.Healthy || st.State != "up" || st.Failures != 0 {
		t.Errorf("after a good trial: %+v, want up", st)
	}
}

// Every upstream down: 503 with Retry-After, no upstream tried.
func TestCatProxyAllDown(t *testing.T) {
	dead := deadURL(t)
	p, _ := newProxy(t, map[string]string{"upstreams": dead + "/a " + dead + "/b", "fail_threshold": "1", "fail_timeout": "30"})
	if rec := serve(p, httptest.NewRequest("GET", "/", nil)); rec.Code != http.StatusBadGateway {
		t.Fatalf("first request: %d, want 502 (both tried and refused)", rec.Code)
	}
	rec := serve(p, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("second request: %d, want 503", rec.Code)
	}
	if ra, _ := strconv.Atoi(rec.Header().Get("Retry-After")); ra < 29 || ra > 30 {
		t.Errorf("Retry-After %q, want 30", rec.Header().Get("Retry-After"))
	}
	for _, st := range p.status().Upstreams {
		if st.Requests != 1 {
			t.Errorf("%s: %d attempts, want 1", st.URL, st.Requests)
		}
	}
	// retries = 0: no second upstream.
	p0, _ := newProxy(t, map[string]string{"upstreams": deadURL(t) + " " + echoUpstream(t, "good").URL, "retries": "0"})
	p0.next.Store(0)
	if rec := serve(p0, httptest.NewRequest("GET", "/", nil)); rec.Code != http.StatusBadGateway {
		t.Errorf("retries = 0: %d, want 502", rec.Code)
	}
}

// Which failed requests are sent to another upstream.
func TestCatProxyRetryRules(t *testing.T) {
	good := echoUpstream(t, "good")
	// dropper reads the request (head and body) and closes without an
	// answer: the request was sent.
	var dropped atomic.Int64
	dropper := rawUpstream(t, func(c net.Conn) {
		req, _, err := readRequestHead(c)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		dropped.Add(1)
	})
	dead := deadURL(t) // refuses: the request was never sent
	tests := []struct {
		name   string
		bad    string
		method string
		body   string
		header map[string]string
		want   int
	}{
		{"refused GET", dead, "GET", "", nil, 200},
		{"refused POST", dead, "POST", "", nil, 200},
		{"refused POST with body", dead, "POST", "data", nil, 200},
		{"dropped GET", dropper, "GET", "", nil, 200},
		{"dropped HEAD", dropper, "HEAD", "", nil, 200},
		{"dropped DELETE", dropper, "DELETE", "", nil, 200},
		{"dropped OPTIONS", dropper, "OPTIONS", "", nil, 200},
		{"dropped PUT without body", dropper, "PUT", "", nil, 200},
		{"dropped POST", dropper, "POST", "", nil, 502},
		{"dropped PATCH", dropper, "PATCH", "", nil, 502},
		{"dropped POST with Idempotency-Key", dropper, "POST", "", map[string]string{"Idempotency-Key": "k1"}, 200},
		{"dropped PUT with body", dropper, "PUT", "data", nil, 502},
		{"dropped POST with body", dropper, "POST", "data", nil, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newProxy(t, map[string]string{"upstreams": tt.bad + " " + good.URL, "fail_threshold": "0"})
			before := dropped.Load()
			p.next.Store(0) // the bad upstream first
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := httptest.NewRequest(tt.method, "/", body)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := serve(p, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d", rec.Code, tt.want)
			}
			if tt.want == 200 && (rec.Header().Get("X-Upstream") != "good" || rec.Header().Get("X-Seen-Method") != tt.method) {
				t.Errorf("answered by %q as %q", rec.Header().Get("X-Upstream"), rec.Header().Get("X-Seen-Method"))
			}
			if tt.want == 200 && tt.method != "HEAD" && rec.Body.String() != tt.body {
				t.Errorf("the retried request's body: %q, want %q", rec.Body.String(), tt.body)
			}
			if tt.bad == dropper && dropped.Load() == before {
				t.Errorf("the dropping upstream never got the request")
			}
			if st := upstreamStatus(p, tt.bad); st.Errors != 1 || st.Active != 0 {
				t.Errorf("bad upstream: %+v, want one error and nothing in flight", st)
			}
		})
	}
}

// A client that went away is not the upstream's failure, and is not
// retried.
func TestCatProxyClientGone(t *testing.T) {
	held := make(chan string, 1)
	release := make(chan struct{})
	slow := blockingUpstream(t, "slow", held, release)
	defer close(release)
	p, _ := newProxy(t, map[string]string{"upstreams": slow.URL + " " + echoUpstream(t, "b").URL, "fail_threshold": "1"})
	p.next.Store(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- serve(p, httptest.NewRequest("GET", "/slow", nil).WithContext(ctx)).Code }()
	<-held
	cancel()
	<-done
	st := upstreamStatus(p, slow.URL)
	if st.Failures != 0 || st.Errors != 0 || st.State != "up" || st.Requests != 1 {
		t.Errorf("after a client went away: %+v, want no failure and one attempt", st)
	}
	proxyWait(t, "slot released", func() bool { return upstreamStatus(p, slow.URL).Active == 0 })
}

func proxyWait(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// response_header_timeout: 504 on both transports, and the request is
// not retried when it is not idempotent.
func TestCatProxyTimeouts(t *testing.T) {
	stall := rawUpstream(t, func(c net.Conn) {
		if _, _, err := readRequestHead(c); err != nil {
			return
		}
		io.Copy(io.Discard, c) // never answers; returns when closed
	})
	p, _ := newProxy(t, map[string]string{"address": stall, "response_header_timeout": "0.2"})
	for _, method := range []string{"GET", "POST"} {
		start := time.Now()
		rec := serve(p, httptest.NewRequest(method, "/", strings.NewReader("x")))
		if rec.Code != http.StatusGatewayTimeout {
			t.Errorf("%s: %d, want 504", method, rec.Code)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s", method, d)
		}
	}
	if !isTimeout(&net.OpError{Op: "dial", Err: timeoutErr{}}) || isTimeout(errors.New("refused")) {
		t.Error("isTimeout misclassifies")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// max_conns_per_upstream bounds the requests in flight; a request that
// gets no slot within connect_timeout answers 503, and round robin
// prefers an upstream with a free slot.
func TestCatProxyMaxConns(t *testing.T) {
	held := make(chan string, 4)
	release := make(chan struct{})
	a := blockingUpstream(t, "a", held, release)
	p, _ := newProxy(t, map[string]string{"address": a.URL, "max_conns_per_upstream": "1", "connect_timeout": "0.2"})
	done := make(chan int)
	go func() { done <- serve(p, httptest.NewRequest("GET", "/slow", nil)).Code }()
	<-held
	rec := serve(p, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("over the limit: %d Retry-After=%q, want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if st := p.status().Upstreams[0]; st.Errors != 0 || st.Active != 1 {
		t.Errorf("a busy upstream is not a failing one: %+v", st)
	}
	close(release)
	if code := <-done; code != 200 {
		t.Fatalf("slow request: %d", code)
	}
	if rec := serve(p, httptest.NewRequest("GET", "/", nil)); rec.Code != 200 {
		t.Errorf("after the slot freed: %d", rec.Code)
	}

	held2 := make(chan string, 4)
	release2 := make(chan struct{})
	b1 := blockingUpstream(t, "b1", held2, release2)
	b2 := blockingUpstream(t, "b2", held2, release2)
	p2, _ := newProxy(t, map[string]string{"upstreams": b1.URL + " " + b2.URL, "max_conns_per_upstream": "1"})
	go func() { done <- serve(p2, httptest.NewRequest("GET", "/slow", nil)).Code }()
	busy := <-held2
	for range 4 {
		rec := serve(p2, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 || rec.Header().Get("X-Upstream") == busy {
			t.Errorf("%d from %q, want 200 from the upstream with a free slot", rec.Code, rec.Header().Get("X-Upstream"))
		}
	}
	close(release2)
	<-done
}

// Active health checks: health_fails failing probes mark an upstream
// down, health_passes passing ones up; requests avoid it meanwhile; a
// lone upstream down answers 503.
func TestCatProxyActiveHealth(t *testing.T) {
	var sick atomic.Bool
	var probes atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			probes.Add(1)
			if r.Header.Get("User-Agent") != "paddock-health-check" {
				t.Errorf("probe User-Agent %q", r.Header.Get("User-Agent"))
			}
			if sick.Load() {
				http.Error(w, "sick", http.StatusServiceUnavailable)
			}
			return
		}
		w.Header().Set("X-Upstream", "flaky")
	}))
	t.Cleanup(flaky.Close)
	other := echoUpstream(t, "other")
	opts := map[string]string{"upstreams": flaky.URL + "/base " + other.URL, "health_path": "/healthz",
		"health_interval": "0.02", "health_timeout": "1", "health_fails": "2", "health_passes": "2"}
	p, c := newProxy(t, opts)
	flakyURL := flaky.URL + "/base"
	proxyWait(t, "first probe", func() bool { return upstreamStatus(p, flakyURL).Check == "passing" })
	if st := upstreamStatus(p, flakyURL); !st.Healthy {
		t.Fatalf("%+v", st)
	}

	sick.Store(true)
	proxyWait(t, "marked down", func() bool { return upstreamStatus(p, flakyURL).State == "down" })
	st := upstreamStatus(p, flakyURL)
	if st.Reason != "health_check" || st.Check != "failing" || !strings.Contains(st.CheckError, "503") {
		t.Errorf("down: %+v", st)
	}
	for range 4 {
		if rec := serve(p, httptest.NewRequest("GET", "/", nil)); rec.Header().Get("X-Upstream") != "other" {
			t.Errorf("request went to %q while flaky is down", rec.Header().Get("X-Upstream"))
		}
	}
	sick.Store(false)
	proxyWait(t, "up again", func() bool { return upstreamStatus(p, flakyURL).State == "up" })

	// Close stops the probes.
	closeAll(c)
	n := probes.Load()
	time.Sleep(100 * time.Millisecond)
	if probes.Load() != n {
		t.Errorf("probes continued after Close")
	}

	sick.Store(true)
	lone, _ := newProxy(t, map[string]string{"address": flaky.URL, "health_path": "/healthz", "health_interval": "0.05", "health_fails": "1"})
	proxyWait(t, "lone upstream down", func() bool { return lone.status().Upstreams[0].State == "down" })
	rec := serve(lone, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("lone upstream down: %d Retry-After=%q, want 503 and 1", rec.Code, rec.Header().Get("Retry-After"))
	}
}

// Streamed responses reach the client as they come: server-sent events
// and chunked bodies are flushed at once.
func TestCatProxyStreaming(t *testing.T) {
	for _, ct := range []string{"text/event-stream", "application/octet-stream"} {
		t.Run(ct, func(t *testing.T) {
			release := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct)
				io.WriteString(w, "data: first\n\n")
				w.(http.Flusher).Flush()
				<-release
				io.WriteString(w, "data: second\n\n")
			}))
			t.Cleanup(up.Close)
			p, _ := newProxy(t, map[string]string{"address": up.URL})
			front := httptest.NewServer(p)
			t.Cleanup(front.Close)
			resp, err := http.Get(front.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			got := make(chan string, 1)
			go func() {
				line, _ := br.ReadString('\n')
				got <- line
			}()
			select {
			case line := <-got:
				if line != "data: first\n" {
					t.Errorf("first line %q", line)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the first event did not arrive before the upstream finished")
			}
			close(release)
			rest, _ := io.ReadAll(br)
			if string(rest) != "\ndata: second\n\n" {
				t.Errorf("rest %q", rest)
			}
		})
	}
}

// WebSocket (any Upgrade) passes through: 101, then bytes both ways.
func TestCatProxyWebSocket(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Fwd: %s\r\n\r\n", r.Header.Get("X-Forwarded-For"))
		brw.Flush()
		io.Copy(conn, brw) // echo
	}))
	t.Cleanup(up.Close)
	p, _ := newProxy(t, map[string]string{"address": up.URL})
	// Behind a wrapper like the catalog's filters: it must keep Hijack.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := getStatusWriter(w)
		defer putStatusWriter(sw)
		p.ServeHTTP(sw, r)
	}))
	t.Cleanup(front.Close)
	c, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: front\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Fwd") != "127.0.0.1" {
		t.Fatalf("status %d, X-Fwd %q", resp.StatusCode, resp.Header.Get("X-Fwd"))
	}
	if st := p.status().Upstreams[0]; st.Active != 1 {
		t.Errorf("an open WebSocket is a connection in use: active %d", st.Active)
	}
	for _, msg := range []string{"hello", "world"} {
		io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: %q %v", msg, buf, err)
		}
	}
	c.Close()
	proxyWait(t, "upgraded connection released", func() bool { return p.status().Upstreams[0].Active == 0 })

	// Behind a writer that cannot hijack: 502, and the upstream's
	// connection is closed rather than leaked.
	req := httptest.NewRequest("GET", "/chat", nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	if rec := serve(p, req); rec.Code != http.StatusBadGateway {
		t.Errorf("no Hijacker: %d, want 502", rec.Code)
	}
	proxyWait(t, "refused upgrade released", func() bool { return p.status().Upstreams[0].Active == 0 })
}

// The HTTP/1.1 pool reuses connections, notices ones the upstream closed
// while idle, and does not reuse one whose body was not read through.
func TestCatProxyConnReuse(t *testing.T) {
	var newConns atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(make([]byte, 1<<20))
			return
		}
		io.WriteString(w, "ok")
	}))
	up.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	p, _ := newProxy(t, map[string]string{"address": up.URL})
	get := func(method, path string) *httptest.ResponseRecorder {
		t.Helper()
		rec := serve(p, httptest.NewRequest(method, path, nil))
		if rec.Code != 200 {
			t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body.String())
		}
		return rec
	}
	for range 5 {
		get("GET", "/")
	}
	if n := newConns.Load(); n != 1 {
		t.Errorf("5 sequential requests used %d connections, want 1", n)
	}
	// The upstream closes its idle connections: a GET finds out on its
	// first read and goes again; a POST (not idempotent) is checked
	// before it is sent.
	up.CloseClientConnections()
	get("GET", "/")
	up.CloseClientConnections()
	time.Sleep(20 * time.Millisecond) // let the FIN arrive
	get("POST", "/")
	if st := p.status().Upstreams[0]; st.Errors != 0 || st.Active != 0 {
		t.Errorf("stale connections are not failures: %+v", st)
	}
	// HEAD and a large body keep the connection usable.
	before := newConns.Load()
	get("HEAD", "/big")
	if rec := get("GET", "/big"); rec.Body.Len() != 1<<20 {
		t.Errorf("big body: %d bytes", rec.Body.Len())
	}
	get("GET", "/")
	if n := newConns.Load() - before; n != 0 {
		t.Errorf("%d new connections for HEAD, a large body and a small one, want 0", n)
	}
	if n := p.ups[0].h1.idleCount(); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
}

// A body not read to its end closes its connection; the slot is released.
func TestCatProxyEarlyClose(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 1<<20))
	}))
	t.Cleanup(up.Close)
	p, _ := newProxy(t, map[string]string{"address": up.URL, "max_conns_per_upstream": "1"})
	req := httptest.NewRequest("GET", "/", nil)
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 100))
	resp.Body.Close()
	if st := p.status().Upstreams[0]; st.Active != 0 {
		t.Errorf("active %d after close", st.Active)
	}
	if n := p.ups[0].h1.idleCount(); n != 0 {
		t.Errorf("a half-read connection went back to the pool")
	}
	if rec := serve(p, httptest.NewRequest("GET", "/", nil)); rec.Code != 200 || rec.Body.Len() != 1<<20 {
		t.Errorf("next request: %d, %d bytes", rec.Code, rec.Body.Len())
	}
}

// Idle connections past idle_conn_timeout are closed by the reaper.
func TestCatProxyIdleReap(t *testing.T) {
	up := echoUpstream(t, "a")
	p, _ := newProxy(t, map[string]string{"address": up.URL, "idle_conn_timeout": "0.05"})
	serve(p, httptest.NewRequest("GET", "/", nil))
	if n := p.ups[0].h1.idleCount(); n != 1 {
		t.Fatalf("%d idle", n)
	}
	p.reap(time.Now().Add(time.Second))
	if n := p.ups[0].h1.idleCount(); n != 0 {
		t.Errorf("%d idle after reaping", n)
	}
	// max_idle_conns = 0 keeps none.
	p0, _ := newProxy(t, map[string]string{"address": up.URL, "max_idle_conns": "0"})
	serve(p0, httptest.NewRequest("GET", "/", nil))
	if n := p0.ups[0].h1.idleCount(); n != 0 {
		t.Errorf("max_idle_conns = 0: %d idle", n)
	}
}

func TestCatProxyOptions(t *testing.T) {
	up := echoUpstream(t, "a")
	good := []struct {
		opts  map[string]string
		check func(*proxyOptions) bool
	}{
		{map[string]string{"address": up.URL}, func(o *proxyOptions) bool {
			return o.balance == "round_robin" && o.retries == 0 && o.failThreshold == 3 && o.failTimeout == 10*time.Second &&
				o.connectTimeout == 10*time.Second && o.headerTimeout == 0 && o.idleTimeout == 90*time.Second &&
				o.maxConns == 0 && o.maxIdle == 64 && o.healthPath == ""
		}},
		{map[string]string{"upstreams": "http://a:1 http://b:2, https://c:3/x"}, func(o *proxyOptions) bool {
			return len(o.targets) == 3 && o.retries == 2
		}},
		{map[string]string{"upstreams": "http://a:1 http://b:2", "balance": "LEAST_CONN", "retries": "0", "fail_threshold": "0"},
			func(o *proxyOptions) bool { return o.balance == "least_conn" && o.retries == 0 && o.failThreshold == 0 }},
		{map[string]string{"address": up.URL, "max_fails": "5", "dial_timeout": "1.5", "max_idle_conns_per_host": "8"},
			func(o *proxyOptions) bool {
				return o.failThreshold == 5 && o.connectTimeout == 1500*time.Millisecond && o.maxIdle == 8
			}},
		{map[string]string{"address": up.URL, "connect_timeout": "2s", "response_header_timeout": "1m", "idle_conn_timeout": "5",
			"max_conns_per_upstream": "100", "max_idle_conns": "10", "fail_timeout": "30"},
			func(o *proxyOptions) bool {
				return o.connectTimeout == 2*time.Second && o.headerTimeout == time.Minute && o.idleTimeout == 5*time.Second &&
					o.maxConns == 100 && o.maxIdle == 10 && o.failTimeout == 30*time.Second
			}},
		{map[string]string{"address": up.URL, "health_path": "/healthz?full=1"}, func(o *proxyOptions) bool {
			return o.healthPath == "/healthz?full=1" && o.healthInterval == 5*time.Second && o.healthTimeout == 2*time.Second &&
				o.healthFails == 2 && o.healthPasses == 2
		}},
	}
	for _, tc := range good {
		c := catConfig(tc.opts)
		o, err := parseProxyOptions(c)
		if err != nil {
			t.Errorf("%v: %v", tc.opts, err)
			continue
		}
		if !tc.check(o) {
			t.Errorf("%v: parsed as %+v", tc.opts, *o)
		}
		if unused := c.Unused(); len(unused) != 0 {
			t.Errorf("%v: options not read: %v", tc.opts, unused)
		}
	}

	bad := []map[string]string{
		{},
		{"address": "   "},
		{"address": up.URL, "upstreams": up.URL},
		{"address": "ftp://example.com"},
		{"address": "example.com:80"},
		{"address": "http://user:pw@example.com"},
		{"upstreams": "http://a.example, ://bad"},
		{"upstreams": "http://a.example http://a.example"},
		{"address": up.URL, "balance": "random"},
		{"address": up.URL, "retries": "-1"},
		{"address": up.URL, "retries": "many"},
		{"address": up.URL, "dial_timeout": "forever"},
		{"address": up.URL, "connect_timeout": "1", "dial_timeout": "1"},
		{"address": up.URL, "fail_threshold": "1", "max_fails": "1"},
		{"address": up.URL, "max_idle_conns": "1", "max_idle_conns_per_host": "1"},
		{"address": up.URL, "response_header_timeout": "-1"},
		{"address": up.URL, "max_fails": "-2"},
		{"address": up.URL, "fail_timeout": "x"},
		{"address": up.URL, "idle_conn_timeout": "-3"},
		{"address": up.URL, "max_conns_per_upstream": "-1"},
		{"address": up.URL, "max_idle_conns_per_host": "x"},
		{"address": up.URL, "health_path": "healthz"},
		{"address": up.URL, "health_path": "http://other/healthz"},
		{"address": up.URL, "health_path": "/h", "health_interval": "0"},
		{"address": up.URL, "health_path": "/h", "health_timeout": "0"},
		{"address": up.URL, "health_path": "/h", "health_fails": "0"},
		{"address": up.URL, "health_path": "/h", "health_passes": "x"},
	}
	for _, opts := range bad {
		c := catConfig(opts)
		_, err := proxyFactory().App(c)
		closeAll(c)
		if err == nil {
			t.Errorf("%v: no error", opts)
			continue
		}
		wantConfigError(t, err)
	}
}

func TestCatProxyMethods(t *testing.T) {
	up := echoUpstream(t, "a")
	p, _ := newProxy(t, map[string]string{"address": up.URL, "allowed_request_methods": "GET HEAD"})
	if rec := serve(p, httptest.NewRequest("DELETE", "/", nil)); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("DELETE: %d Allow=%q, want 405 GET, HEAD", rec.Code, rec.Header().Get("Allow"))
	}
	if rec := serve(p, httptest.NewRequest("GET", "/", nil)); rec.Code != 200 {
		t.Errorf("GET: %d", rec.Code)
	}
}

// The closer stops the maintenance goroutine (with health checks too) and
// closes the pooled connections.
func TestCatProxyCloser(t *testing.T) {
	var open atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	up.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	c := catConfig(map[string]string{"address": up.URL, "health_path": "/", "health_interval": "1h"})
	h, err := proxyFactory().App(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(*c.closers) != 1 || len(*c.statuses) != 1 || (*c.statuses)[0].Name != "upstreams" || (*c.statuses)[0].Section != "test" {
		t.Fatalf("%d closers, statuses %+v; want one each", len(*c.closers), *c.statuses)
	}
	c.Start()
	serve(h, httptest.NewRequest("GET", "/", nil))
	serve(h, httptest.NewRequest("POST", "/", strings.NewReader("x")))
	proxyWait(t, "the first probe", func() bool { return upstreamStatus(h.(*proxyApp), up.URL).Check == "passing" })
	closeAll(c)
	proxyWait(t, "upstream connections closed", func() bool { return open.Load() == 0 })
}

func TestCatProxyUpstreamSet(t *testing.T) {
	for _, n := range []int{2, 64, 65, 200} {
		var s upstreamSet
		if n > 64 {
			s.more = make([]bool, n)
		}
		for i := 0; i < n; i += 3 {
			s.add(i)
		}
		for i := range n {
			if s.has(i) != (i%3 == 0) {
				t.Errorf("n=%d: has(%d) = %v", n, i, s.has(i))
			}
		}
	}
	// With more than 64 upstreams a request still tries each at most once.
	var ups []string
	dead := deadURL(t)
	for i := range 66 {
		ups = append(ups, fmt.Sprintf("%s/p%d", dead, i))
	}
	p, _ := newProxy(t, map[string]string{"upstreams": strings.Join(ups, " "), "fail_threshold": "0", "connect_timeout": "1"})
	if rec := serve(p, httptest.NewRequest("GET", "/", nil)); rec.Code != http.StatusBadGateway {
		t.Errorf("%d", rec.Code)
	}
	for _, st := range p.status().Upstreams {
		if st.Requests != 1 {
			t.Errorf("%s tried %d times", st.URL, st.Requests)
		}
	}
}

// BenchmarkCatProxy is one GET through the proxy to a loopback upstream
// (the upstream's own net/http server is in the numbers too).
func BenchmarkCatProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "Hello, World!\n") }))
	defer up.Close()
	c := catConfig(map[string]string{"address": up.URL})
	h, err := proxyFactory().App(c)
	if err != nil {
		b.Fatal(err)
	}
	defer closeAll(c)
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("User-Agent", "wrk")
	w := newNopWriter()
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.status != 0 && w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}

// Building a proxy starts nothing: no health probe reaches an upstream
// until the pipeline is started, as a worker does when it installs it. A
// reload's validation in the master and paddock check build pipelines
// they never start, and must send nothing.
func TestCatProxyProbesOnlyOnceStarted(t *testing.T) {
	var probes atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			probes.Add(1)
		}
	}))
	t.Cleanup(up.Close)
	cfg := filepath.Join(t.TempDir(), "paste.ini")
	config := "[app:main]\nuse = egg:paddock#proxy\nupstreams = " + up.URL + "\nhealth_path = /healthz\nhealth_interval = 0.02\n"
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(LoadOptions{Path: cfg}); err != nil {
		t.Fatal(err)
	}
	p, err := Load(LoadOptions{Path: cfg})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // ten health intervals
	if n := probes.Load(); n != 0 {
		t.Fatalf("%d health probes before the pipeline was started", n)
	}
	p.Start()
	proxyWait(t, "a health probe once started", func() bool { return probes.Load() > 0 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	n := probes.Load()
	time.Sleep(100 * time.Millisecond)
	if probes.Load() != n {
		t.Error("health probes go on after Close")
	}
	// A pipeline closed without being started closes cleanly too.
	p2, err := Load(LoadOptions{Path: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
}
