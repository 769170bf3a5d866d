package pipeline

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCatRedirect(t *testing.T) {
	tests := []struct {
		name       string
		opts       map[string]string
		target     string
		host       string // overrides the request's Host when set ("-" for none)
		tls        bool
		mount      string // serve through a urlmap mounting the app here
		wantStatus int
		wantLoc    string
	}{
		{name: "fixed", opts: map[string]string{"location": "https://example.com/"}, target: "/a/b?q=1", wantStatus: 302, wantLoc: "https://example.com/"},
		{name: "status 301", opts: map[string]string{"location": "https://example.com/", "status": "301"}, target: "/", wantStatus: 301, wantLoc: "https://example.com/"},
		{name: "status 308", opts: map[string]string{"location": "https://example.com/", "status": "308"}, target: "/", wantStatus: 308, wantLoc: "https://example.com/"},
		{name: "path and query", opts: map[string]string{"location": "https://example.com{path}{query}"}, target: "/a/b?q=1&r=2", wantStatus: 302, wantLoc: "https://example.com/a/b?q=1&r=2"},
		{name: "no query", opts: map[string]string{"location": "https://example.com{path}{query}"}, target: "/a", wantStatus: 302, wantLoc: "https://example.com/a"},
		{name: "escaped path kept", opts: map[string]string{"location": "https://example.com/new{path}"}, target: "/a%2Fb/c%20d", wantStatus: 302, wantLoc: "https://example.com/new/a%2Fb/c%20d"},
		{name: "same host https upgrade", opts: map[string]string{"location": "https://{host}{request_uri}", "status": "301"}, target: "http://www.example.com:8080/x?y=1", wantStatus: 301, wantLoc: "https://www.example.com:8080/x?y=1"},
		{name: "scheme placeholder", opts: map[string]string{"location": "{scheme}://example.org{path}"}, target: "/p", tls: true, wantStatus: 302, wantLoc: "https://example.org/p"},
		{name: "ipv6 host", opts: map[string]string{"location": "https://{host}/"}, target: "/", host: "[::1]:8443", wantStatus: 302, wantLoc: "https://[::1]:8443/"},
		{name: "host with a path is refused", opts: map[string]string{"location": "https://{host}/"}, target: "/", host: "evil.example/x", wantStatus: 400},
		{name: "host with user info is refused", opts: map[string]string{"location": "https://{host}/"}, target: "/", host: "good.example@evil.example", wantStatus: 400},
		{name: "host with a bad port is refused", opts: map[string]string{"location": "https://{host}/"}, target: "/", host: "example.com:80x", wantStatus: 400},
		{name: "missing host is refused", opts: map[string]string{"location": "https://{host}/"}, target: "/", host: "-", wantStatus: 400},
		{name: "mounted: path below the mount", opts: map[string]string{"location": "https://new.example{path}"}, target: "/old/a/b", mount: "/old", wantStatus: 302, wantLoc: "https://new.example/a/b"},
		{name: "mounted: script name", opts: map[string]string{"location": "https://new.example{script_name}/moved{path}"}, target: "/old/a", mount: "/old", wantStatus: 302, wantLoc: "https://new.example/old/moved/a"},
		{name: "mounted: request uri", opts: map[string]string{"location": "https://new.example{request_uri}"}, target: "/old/a?x", mount: "/old", wantStatus: 302, wantLoc: "https://new.example/old/a?x"},
		{name: "relative", opts: map[string]string{"location": "/login?next={path}"}, target: "/private", wantStatus: 302, wantLoc: "/login?next=/private"},
		{name: "relative path placeholder", opts: map[string]string{"location": "{path}/"}, target: "/dir", wantStatus: 302, wantLoc: "/dir/"},
		{name: "relative never becomes //host", opts: map[string]string{"location": "{path}"}, target: "http://h//evil.example/x", wantStatus: 302, wantLoc: "/evil.example/x"},
		{name: "relative slash then path", opts: map[string]string{"location": "/{path}"}, target: "/evil.example", wantStatus: 302, wantLoc: "/evil.example"},
		{name: "backslash escaped", opts: map[string]string{"location": "{path}"}, target: "http://h/%5Cevil.example", wantStatus: 302, wantLoc: "/%5Cevil.example"},
		{name: "query is sanitised", opts: map[string]string{"location": "https://example.com/{query}"}, target: "/?a=%22&b=<x>", wantStatus: 302, wantLoc: "https://example.com/?a=%22&b=%3Cx%3E"},
		{name: "preserve_path", opts: map[string]string{"location": "https://new.example/", "preserve_path": "true"}, target: "/old/a?x=1", mount: "/old", wantStatus: 302, wantLoc: "https://new.example/a?x=1"},
		{name: "preserve_path without slash", opts: map[string]string{"location": "https://new.example/base", "preserve_path": "yes"}, target: "/a", wantStatus: 302, wantLoc: "https://new.example/base/a"},
		{name: "preserve_path bare host", opts: map[string]string{"location": "https://new.example", "preserve_path": "on"}, target: "/", wantStatus: 302, wantLoc: "https://new.example/"},
		{name: "literal braces", opts: map[string]string{"location": "https://example.com/{{x}}"}, target: "/", wantStatus: 302, wantLoc: "https://example.com/{x}"},
		{name: "query placeholder cannot extend the host", opts: map[string]string{"location": "https://example.com{query}x"}, target: "/", wantStatus: 500},
		{name: "query placeholder after the host", opts: map[string]string{"location": "https://example.com{query}x"}, target: "/?a", wantStatus: 302, wantLoc: "https://example.com?ax"},
		{name: "post is redirected too", opts: map[string]string{"location": "https://example.com/", "status": "307"}, target: "/", wantStatus: 307, wantLoc: "https://example.com/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := mustApp(t, redirectFactory(), catConfig(tt.opts))
			if tt.mount != "" {
				var err error
				h, err = urlmapFactory().Composite(catConfig(map[string]string{tt.mount: "r"}), fakeLoader{"r": h})
				if err != nil {
					t.Fatal(err)
				}
			}
			req := httptest.NewRequest("GET", tt.target, nil)
			switch tt.host {
			case "":
			case "-":
				req.Host = ""
			default:
				req.Host = tt.host
			}
			if tt.tls {
				req.TLS = &tls.ConnectionState{}
			}
			rec := serve(h, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (Location %q)", rec.Code, tt.wantStatus, rec.Header().Get("Location"))
			}
			if got := rec.Header().Get("Location"); got != tt.wantLoc {
				t.Errorf("Location %q, want %q", got, tt.wantLoc)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestCatRedirectHead(t *testing.T) {
	h := mustApp(t, redirectFactory(), catConfig(map[string]string{"location": "/x"}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Head(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/x" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestCatRedirectConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		opts    map[string]string
		wantKey string
		wantMsg string
	}{
		{"no location", map[string]string{}, "location", "required"},
		{"bad status", map[string]string{"location": "/", "status": "200"}, "status", "not a redirect status"},
		{"status 304", map[string]string{"location": "/", "status": "304"}, "status", "not a redirect status"},
		{"status not a number", map[string]string{"location": "/", "status": "moved"}, "status", "not an integer"},
		{"unknown placeholder", map[string]string{"location": "https://example.com{uri}"}, "location", "unknown placeholder {uri}"},
		{"unclosed brace", map[string]string{"location": "https://example.com/{path"}, "location", "unclosed"},
		{"stray brace", map[string]string{"location": "https://example.com/}"}, "location", "unmatched"},
		{"space", map[string]string{"location": "https://example.com/a b"}, "location", "percent-encoded"},
		{"network path", map[string]string{"location": "//example.com/"}, "location", "names another host"},
		{"relative word", map[string]string{"location": "elsewhere"}, "location", "must start with"},
		{"other scheme", map[string]string{"location": "javascript:alert(1)"}, "location", "must start with"},
		{"host first", map[string]string{"location": "{host}/x"}, "location", "needs a scheme"},
		{"query first", map[string]string{"location": "{query}"}, "location", "must start with"},
		{"path in the host", map[string]string{"location": "https://{path}"}, "location", "no host"},
		{"request uri in the host", map[string]string{"location": "https://{request_uri}"}, "location", "no host"},
		{"scheme in the host", map[string]string{"location": "https://{scheme}.example.com/"}, "location", "cannot be part of the host"},
		{"scheme without ://", map[string]string{"location": "{scheme}:example.com"}, "location", "must be followed by ://"},
		{"empty host", map[string]string{"location": "https:///x"}, "location", "no host"},
		{"preserve_path with path", map[string]string{"location": "https://example.com{path}", "preserve_path": "true"}, "preserve_path", "already"},
		{"preserve_path with query", map[string]string{"location": "https://example.com/?a=1", "preserve_path": "true"}, "preserve_path", "already"},
		{"preserve_path not a bool", map[string]string{"location": "https://example.com/", "preserve_path": "sometimes"}, "preserve_path", "not a boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := catConfigAt(tt.opts)
			_, err := redirectFactory().App(c)
			wantErrorAt(t, err, c.PosOf(tt.wantKey).String()+": [test]: "+tt.wantKey, tt.wantMsg)
		})
	}
}
