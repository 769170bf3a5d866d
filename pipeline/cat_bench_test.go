package pipeline

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkFilter measures each built-in filter around a trivial handler,
// calling the middleware directly with one reused request.
func BenchmarkFilter(b *testing.B) {
	get := httptest.NewRequest("GET", "http://bench.example/v2/servers?limit=10", nil)
	get.RemoteAddr = "127.0.0.1:40000"
	get.Header.Set("User-Agent", "bench/1.0")

	withOrigin := get.Clone(get.Context())
	withOrigin.Header.Set("Origin", "https://a.example")

	forwarded := get.Clone(get.Context())
	forwarded.Header.Set("X-Forwarded-Proto", "https")
	forwarded.Header.Set("X-Forwarded-Host", "api.example")

	post := httptest.NewRequest("POST", "http://bench.example/v2/servers", strings.NewReader("{}"))

	cases := []struct {
		name string
		f    Factory
		opts map[string]string
		req  *http.Request
	}{
		{"cors/no-origin", corsFactory(), map[string]string{"allowed_origin": "https://a.example"}, get},
		{"cors/origin", corsFactory(), map[string]string{"allowed_origin": "https://a.example", "expose_headers": "X-Openstack-Request-Id"}, withOrigin},
		{"sizelimit", sizelimitFactory(), nil, post},
		{"request_id", requestIDFactory(), nil, get},
		{"http_proxy_to_wsgi/disabled", httpProxyToWSGIFactory(), nil, forwarded},
		{"http_proxy_to_wsgi/no-headers", httpProxyToWSGIFactory(), map[string]string{"enable_proxy_headers_parsing": "true"}, get},
		{"http_proxy_to_wsgi/forwarded", httpProxyToWSGIFactory(), map[string]string{"enable_proxy_headers_parsing": "true"}, forwarded},
		{"catch_errors", catchErrorsFactory(), nil, get},
		{"translogger", transloggerFactory(), map[string]string{"output": "discard"}, get},
		{"healthcheck_filter/pass", healthcheckFilterFactory(), nil, get},
		// Response edits through the pooled writer; request_remove of an
		// absent header (the usual case) must not copy the request.
		{"headers/response", headersFactory(), map[string]string{
			"response_set":    "X-Content-Type-Options: nosniff\nX-Frame-Options: DENY",
			"response_add":    "Cache-Control: no-store",
			"response_remove": "Server X-Powered-By",
			"request_remove":  "X-Internal-Auth",
		}, get},
		// Request edits: a shallow request copy with its own header map.
		{"headers/request", headersFactory(), map[string]string{"request_set": "X-Tenant: blue", "request_remove": "User-Agent"}, get},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			h := mustFilter(b, bc.f, bc.opts)(okHandler)
			w := newNopWriter()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, bc.req)
				clear(w.h)
			}
		})
	}
}
