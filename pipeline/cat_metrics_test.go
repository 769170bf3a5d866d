package pipeline

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMetricsApp(t *testing.T) {
	const exposition = "paddock_http_requests_total{code=\"200\",method=\"GET\",route=\"/\"} 3\n"
	tests := []struct {
		name, method string
		src          MetricsSource
		code         int
		body         string
	}{
		{"scrape", "GET", func(context.Context) ([]byte, error) { return []byte(exposition), nil }, 200, exposition},
		{"head", "HEAD", func(context.Context) ([]byte, error) { return []byte(exposition), nil }, 200, ""},
		{"post", "POST", func(context.Context) ([]byte, error) { return []byte(exposition), nil }, 405, "405 Method Not Allowed\n"},
		{"no source (check)", "GET", nil, 503, "metrics are served by paddock serve only\n"},
		{"master unreachable", "GET", func(context.Context) ([]byte, error) { return nil, errors.New("master gone") }, 503, "metrics unavailable: master gone\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfig(nil)
			c.metrics = tt.src
			h, err := metricsFactory().App(c)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, "/metrics", nil))
			if rec.Code != tt.code || rec.Body.String() != tt.body {
				t.Errorf("%s = %d %q, want %d %q", tt.method, rec.Code, rec.Body.String(), tt.code, tt.body)
			}
			if tt.code == 200 && !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
				t.Errorf("Content-Type %q", rec.Header().Get("Content-Type"))
			}
		})
	}
}

// TrackRoute reports the urlmap mount a request went to, "/" for the
// root mount and for pipelines without urlmap, "" when no mount matched.
func TestTrackRoute(t *testing.T) {
	path := writeINI(t, "main.ini", "[composite:main]\nuse = egg:paddock#urlmap\n/ = root\n/api = api\n\n[composite:api]\nuse = egg:paddock#urlmap\n/v2 = root\n\n[app:root]\nuse = egg:paddock#hello\n")
	p, err := Load(LoadOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, tc := range []struct {
		h           http.Handler
		path, route string
	}{
		{p.Handler, "/x", "/"},
		{p.Handler, "/api/v2/x", "/api/v2"},
		{p.Handler, "/api/nope", ""},
		{plain, "/anything", "/"},
	} {
		r, route := TrackRoute(httptest.NewRequest("GET", tc.path, nil))
		tc.h.ServeHTTP(httptest.NewRecorder(), r)
		if *route != tc.route {
			t.Errorf("GET %s: route %q, want %q", tc.path, *route, tc.route)
		}
	}
}
