package pipeline

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"paddock/forwarded"
)

// Behind the server's forwarded_allow_ips handling, r.RemoteAddr is the
// client; the filter still judges the proxy, the connection's peer.
func TestCatHTTPProxyToWSGIJudgesThePeer(t *testing.T) {
	var host, scheme, remote string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, scheme, remote = r.Host, catRequestScheme(r), r.RemoteAddr
	})
	filter := mustFilter(t, httpProxyToWSGIFactory(), map[string]string{"enable_proxy_headers_parsing": "true"})(next)
	server := forwarded.New(filter, forwarded.Config{Trusted: forwarded.MustNetworks("127.0.0.1"), SecureSchemeHeaders: forwarded.DefaultSecureSchemeHeaders})

	req := httptest.NewRequest("GET", "/x", nil)
	req.Host = "internal:8080"
	req.RemoteAddr = "127.0.0.1:5000"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Forwarded-Host", "api.example")
	req.Header.Set("X-Forwarded-Proto", "https")
	server.ServeHTTP(httptest.NewRecorder(), req)
	if remote != "203.0.113.9:0" || host != "api.example" || scheme != "https" {
		t.Errorf("trusted proxy: remote %q host %q scheme %q", remote, host, scheme)
	}

	// A client that is not a proxy: the server strips the headers.
	req = httptest.NewRequest("GET", "/x", nil)
	req.Host = "internal:8080"
	req.RemoteAddr = "203.0.113.9:5000"
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("X-Forwarded-Proto", "https")
	server.ServeHTTP(httptest.NewRecorder(), req)
	if remote != "203.0.113.9:5000" || host != "internal:8080" || scheme != "http" {
		t.Errorf("untrusted client: remote %q host %q scheme %q", remote, host, scheme)
	}
}
