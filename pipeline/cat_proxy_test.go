package pipeline

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoUpstream answers with its name, the path it saw and selected
// request headers.
func echoUpstream(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", name)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Seen-Host", r.Host)
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Prefix", "X-Secret", "Connection", "X-Hop"} {
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

func TestCatProxy(t *testing.T) {
	up := echoUpstream(t, "a")
	h := mustApp(t, proxyFactory(), catConfig(map[string]string{
		"address":               up.URL + "/base",
		"suppress_http_headers": "X-Secret",
	}))

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
			absent:  []string{"Seen-X-Secret", "Seen-X-Hop"},
			wantSts: 200},
		{name: "spoofed forwarding headers replaced", method: "GET", target: "http://front.example/x",
			header: map[string]string{"X-Forwarded-Host": "evil", "X-Forwarded-Proto": "https", "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Prefix": "/evil"},
			check:  map[string]string{"Seen-X-Forwarded-Host": "front.example", "Seen-X-Forwarded-Proto": "http", "Seen-X-Forwarded-For": "192.0.2.1"},
			absent: []string{"Seen-X-Forwarded-Prefix"}, wantSts: 200},
		{name: "body", method: "POST", target: "http://front.example/x", body: "payload", wantSts: 200},
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
			rec := serve(h, req)
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
}

func TestCatProxyBadGateway(t *testing.T) {
	h := mustApp(t, proxyFactory(), catConfig(map[string]string{"address": deadURL(t), "dial_timeout": "2"}))
	rec := serve(h, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", rec.Code)
	}
}

func TestCatProxyRoundRobin(t *testing.T) {
	a, b := echoUpstream(t, "a"), echoUpstream(t, "b")
	h := mustApp(t, proxyFactory(), catConfig(map[string]string{"upstreams": a.URL + ", " + b.URL}))
	seen := map[string]int{}
	for range 10 {
		rec := serve(h, httptest.NewRequest("GET", "/", nil))
		seen[rec.Header().Get("X-Upstream")]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Errorf("distribution %v, want 5/5", seen)
	}
}

func TestCatProxyPassiveHealth(t *testing.T) {
	good := echoUpstream(t, "good")
	dead := deadURL(t)
	c := catConfig(map[string]string{"upstreams": dead + " " + good.URL, "max_fails": "1", "fail_timeout": "1h"})
	h := mustApp(t, proxyFactory(), c)
	p := h.(*proxyApp)
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	p.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

	first := serve(h, httptest.NewRequest("GET", "/", nil)) // dead upstream: 502, marked down
	if first.Code != http.StatusBadGateway {
		t.Fatalf("first request: %d, want 502 from the dead upstream", first.Code)
	}
	for i := range 6 {
		rec := serve(h, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 || rec.Header().Get("X-Upstream") != "good" {
			t.Fatalf("request %d: %d from %q, want 200 from good (dead one should be skipped)", i, rec.Code, rec.Header().Get("X-Upstream"))
		}
	}
	// After fail_timeout the dead upstream gets a trial request again.
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	codes := map[int]int{}
	for range 2 {
		codes[serve(h, httptest.NewRequest("GET", "/", nil)).Code]++
	}
	if codes[http.StatusBadGateway] != 1 {
		t.Errorf("after fail_timeout: %v, want exactly one trial (502) on the dead upstream", codes)
	}
}

func TestCatProxyMethodsAndConfig(t *testing.T) {
	up := echoUpstream(t, "a")
	h := mustApp(t, proxyFactory(), catConfig(map[string]string{"address": up.URL, "allowed_request_methods": "GET HEAD"}))
	if rec := serve(h, httptest.NewRequest("DELETE", "/", nil)); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("DELETE: %d Allow=%q, want 405 GET, HEAD", rec.Code, rec.Header().Get("Allow"))
	}
	if rec := serve(h, httptest.NewRequest("GET", "/", nil)); rec.Code != 200 {
		t.Errorf("GET: %d", rec.Code)
	}

	bad := []map[string]string{
		{},
		{"address": "   "},
		{"address": up.URL, "upstreams": up.URL},
		{"address": "ftp://example.com"},
		{"address": "example.com:80"},
		{"address": "http://user:pw@example.com"},
		{"upstreams": "http://a.example, ://bad"},
		{"address": up.URL, "dial_timeout": "forever"},
		{"address": up.URL, "response_header_timeout": "-1"},
		{"address": up.URL, "max_fails": "-2"},
		{"address": up.URL, "max_idle_conns_per_host": "x"},
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

func TestCatProxyCloser(t *testing.T) {
	up := echoUpstream(t, "a")
	c := catConfig(map[string]string{"address": up.URL})
	if _, err := proxyFactory().App(c); err != nil {
		t.Fatal(err)
	}
	if len(*c.closers) != 1 {
		t.Fatalf("%d closers registered, want 1 (idle connections)", len(*c.closers))
	}
	closeAll(c)
}
