package pipeline

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCatHTTPProxyToWSGI(t *testing.T) {
	enabled := map[string]string{"enable_proxy_headers_parsing": "true"}
	tests := []struct {
		name       string
		opts       map[string]string
		remote     string
		header     map[string]string
		script     string
		wantScheme string
		wantHost   string
		wantScript string
	}{
		{name: "disabled by default", opts: nil, remote: "127.0.0.1:1", header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example", "X-Forwarded-Prefix": "/p"},
			wantScheme: "http", wantHost: "internal:8080", wantScript: ""},
		{name: "x-forwarded from loopback", opts: enabled, remote: "127.0.0.1:1",
			header:     map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example", "X-Forwarded-Prefix": "/identity/"},
			wantScheme: "https", wantHost: "api.example", wantScript: "/identity"},
		{name: "ipv6 loopback trusted", opts: enabled, remote: "[::1]:1", header: map[string]string{"X-Forwarded-Proto": "https"},
			wantScheme: "https", wantHost: "internal:8080"},
		{name: "untrusted peer ignored", opts: enabled, remote: "192.0.2.7:1", header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil", "X-Forwarded-Prefix": "/x"},
			wantScheme: "http", wantHost: "internal:8080"},
		{name: "CIDR trust", opts: map[string]string{"enable_proxy_headers_parsing": "1", "forwarded_allow_ips": "10.0.0.0/8 192.0.2.7"}, remote: "10.9.9.9:1",
			header: map[string]string{"X-Forwarded-Proto": "https"}, wantScheme: "https", wantHost: "internal:8080"},
		{name: "CIDR list replaces default", opts: map[string]string{"enable_proxy_headers_parsing": "1", "forwarded_allow_ips": "10.0.0.0/8"}, remote: "127.0.0.1:1",
			header: map[string]string{"X-Forwarded-Proto": "https"}, wantScheme: "http", wantHost: "internal:8080"},
		{name: "star trusts all", opts: map[string]string{"enable_proxy_headers_parsing": "true", "forwarded_allow_ips": "*"}, remote: "203.0.113.5:1",
			header: map[string]string{"X-Forwarded-Host": "api.example:8443"}, wantScheme: "http", wantHost: "api.example:8443"},
		{name: "Forwarded wins, first element", opts: enabled, remote: "127.0.0.1:1",
			header:     map[string]string{"Forwarded": `for=1.2.3.4;proto=https;host="fw.example", proto=http;host=second`, "X-Forwarded-Proto": "http", "X-Forwarded-Host": "xf.example"},
			wantScheme: "https", wantHost: "fw.example"},
		{name: "prefix prepended to existing script name", opts: enabled, remote: "127.0.0.1:1", script: "/v3",
			header: map[string]string{"X-Forwarded-Prefix": "/identity"}, wantScheme: "http", wantHost: "internal:8080", wantScript: "/identity/v3"},
		{name: "invalid values dropped", opts: enabled, remote: "127.0.0.1:1",
			header:     map[string]string{"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "a.example/evil", "X-Forwarded-Prefix": "/a/../b"},
			wantScheme: "http", wantHost: "internal:8080"},
		{name: "prefix with query dropped", opts: enabled, remote: "127.0.0.1:1", header: map[string]string{"X-Forwarded-Prefix": "/a?x=1"},
			wantScheme: "http", wantHost: "internal:8080"},
		{name: "list values use the first", opts: enabled, remote: "127.0.0.1:1", header: map[string]string{"X-Forwarded-Proto": "HTTPS, http", "X-Forwarded-Host": "one.example, two.example"},
			wantScheme: "https", wantHost: "one.example"},
		{name: "unix socket peer trusted", opts: enabled, remote: "@", header: map[string]string{"X-Forwarded-Proto": "https"},
			wantScheme: "https", wantHost: "internal:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var scheme, host, script, urlHost string
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				scheme, host, script, urlHost = catRequestScheme(r), r.Host, ScriptName(r), r.URL.Host
			})
			h := mustFilter(t, httpProxyToWSGIFactory(), tt.opts)(next)
			req := httptest.NewRequest("GET", "/x", nil)
			req.Host = "internal:8080"
			req.RemoteAddr = tt.remote
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.script != "" {
				req = WithScriptName(req, tt.script)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			if scheme != tt.wantScheme || host != tt.wantHost || script != tt.wantScript {
				t.Errorf("got scheme=%q host=%q script=%q, want %q %q %q", scheme, host, script, tt.wantScheme, tt.wantHost, tt.wantScript)
			}
			if scheme == "https" && urlHost != host {
				t.Errorf("URL.Host %q does not match Host %q", urlHost, host)
			}
			if req.Host != "internal:8080" || req.URL.Scheme != "" {
				t.Errorf("incoming request modified")
			}
		})
	}
	t.Run("no headers allocates nothing", func(t *testing.T) {
		h := mustFilter(t, httpProxyToWSGIFactory(), enabled)(okHandler)
		req := httptest.NewRequest("GET", "/x", nil)
		req.RemoteAddr = "127.0.0.1:1234"
		assertNoAllocs(t, h, req)
	})
	t.Run("config errors", func(t *testing.T) {
		for _, opts := range []map[string]string{
			{"enable_proxy_headers_parsing": "maybe"},
			{"enable_proxy_headers_parsing": "true", "forwarded_allow_ips": "10.0.0.0/33"},
			{"enable_proxy_headers_parsing": "true", "forwarded_allow_ips": "not-an-ip"},
		} {
			_, err := httpProxyToWSGIFactory().Filter(catConfig(opts))
			wantConfigError(t, err)
		}
	})
}
