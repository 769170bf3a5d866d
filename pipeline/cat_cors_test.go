package pipeline

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCatCORS(t *testing.T) {
	base := map[string]string{
		"allowed_origin": "https://a.example, https://b.example:8443",
		"expose_headers": "X-Openstack-Request-Id, X-Subject-Token",
		"allow_headers":  "X-Auth-Token",
		"max_age":        "600",
	}
	tests := []struct {
		name       string
		opts       map[string]string
		method     string
		header     map[string]string
		preset     map[string]string // response headers the app sets
		wantStatus int
		wantNext   bool
		want       map[string]string // "" means absent
	}{
		{name: "no origin passes untouched", method: "GET", wantStatus: 200, wantNext: true,
			want: map[string]string{"Access-Control-Allow-Origin": "", "Vary": ""}},
		{name: "allowed origin", method: "GET", header: map[string]string{"Origin": "https://a.example"}, wantStatus: 200, wantNext: true,
			want: map[string]string{
				"Access-Control-Allow-Origin":      "https://a.example",
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Expose-Headers":    "X-Openstack-Request-Id,X-Subject-Token",
				"Vary":                             "Origin",
				"Access-Control-Max-Age":           "",
			}},
		{name: "vary appended", method: "GET", header: map[string]string{"Origin": "https://a.example"}, preset: map[string]string{"Vary": "Accept"},
			wantStatus: 200, wantNext: true},
		{name: "disallowed origin", method: "GET", header: map[string]string{"Origin": "https://evil.example"}, wantStatus: 200, wantNext: true,
			want: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Credentials": ""}},
		{name: "port is part of the origin", method: "GET", header: map[string]string{"Origin": "https://b.example"}, wantStatus: 200, wantNext: true,
			want: map[string]string{"Access-Control-Allow-Origin": ""}},
		{name: "preflight allowed", method: "OPTIONS",
			header:     map[string]string{"Origin": "https://b.example:8443", "Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "x-auth-token, Content-Type"},
			wantStatus: 200,
			want: map[string]string{
				"Access-Control-Allow-Origin":      "https://b.example:8443",
				"Access-Control-Allow-Methods":     "PATCH",
				"Access-Control-Allow-Headers":     "x-auth-token,Content-Type",
				"Access-Control-Max-Age":           "600",
				"Access-Control-Allow-Credentials": "true",
				"Vary":                             "Origin",
			}},
		{name: "preflight method not allowed", method: "OPTIONS",
			header:     map[string]string{"Origin": "https://a.example", "Access-Control-Request-Method": "TRACE"},
			wantStatus: 200, want: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": ""}},
		{name: "preflight header not allowed", method: "OPTIONS",
			header:     map[string]string{"Origin": "https://a.example", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "X-Evil"},
			wantStatus: 200, want: map[string]string{"Access-Control-Allow-Origin": ""}},
		{name: "preflight origin not allowed", method: "OPTIONS",
			header:     map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
			wantStatus: 200, want: map[string]string{"Access-Control-Allow-Origin": ""}},
		{name: "plain OPTIONS goes to the app", method: "OPTIONS", header: map[string]string{"Origin": "https://a.example"},
			wantStatus: 200, wantNext: true, want: map[string]string{"Access-Control-Allow-Origin": "https://a.example"}},
		{name: "wildcard", opts: map[string]string{"allowed_origin": "*", "allow_credentials": "false"}, method: "GET",
			header: map[string]string{"Origin": "https://any.example"}, wantStatus: 200, wantNext: true,
			want: map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": "", "Access-Control-Expose-Headers": ""}},
		{name: "custom methods", opts: map[string]string{"allowed_origin": "https://a.example", "allow_methods": "GET"}, method: "OPTIONS",
			header:     map[string]string{"Origin": "https://a.example", "Access-Control-Request-Method": "PUT"},
			wantStatus: 200, want: map[string]string{"Access-Control-Allow-Origin": ""}},
		{name: "default methods allow PUT", opts: map[string]string{"allowed_origin": "https://a.example"}, method: "OPTIONS",
			header:     map[string]string{"Origin": "https://a.example", "Access-Control-Request-Method": "PUT"},
			wantStatus: 200, want: map[string]string{"Access-Control-Allow-Origin": "https://a.example", "Access-Control-Max-Age": "3600"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts == nil {
				opts = base
			}
			called := false
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				for k, v := range tt.preset {
					w.Header().Add(k, v)
				}
				w.WriteHeader(200)
			})
			h := mustFilter(t, corsFactory(), opts)(next)
			req := httptest.NewRequest(tt.method, "/", nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := serve(h, req)
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if called != tt.wantNext {
				t.Errorf("next called = %v, want %v", called, tt.wantNext)
			}
			for k, v := range tt.want {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.preset["Vary"] != "" {
				got := rec.Header().Values("Vary")
				if len(got) != 2 || got[0] != "Origin" || got[1] != tt.preset["Vary"] {
					t.Errorf("Vary = %q, want [Origin %s]", got, tt.preset["Vary"])
				}
			}
		})
	}
	t.Run("vary set further out is extended once", func(t *testing.T) {
		h := mustFilter(t, corsFactory(), base)(okHandler)
		for _, pre := range [][]string{{"Accept"}, {"Accept, Origin"}} {
			rec := httptest.NewRecorder()
			rec.Header()["Vary"] = append([]string(nil), pre...)
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Origin", "https://a.example")
			h.ServeHTTP(rec, req)
			n := 0
			for _, v := range rec.Header().Values("Vary") {
				for _, part := range strings.Split(v, ",") {
					if strings.TrimSpace(part) == "Origin" {
						n++
					}
				}
			}
			if n != 1 {
				t.Errorf("preset %q: Vary %q names Origin %d times, want 1", pre, rec.Header().Values("Vary"), n)
			}
		}
	})
	t.Run("no origin allocates nothing", func(t *testing.T) {
		h := mustFilter(t, corsFactory(), base)(okHandler)
		assertNoAllocs(t, h, httptest.NewRequest("GET", "/", nil))
	})
}

func TestCatCORSConfigErrors(t *testing.T) {
	for _, opts := range []map[string]string{
		{"allowed_origin": "a.example"},
		{"allowed_origin": "https://a.example/path"},
		{"allowed_origin": "https://a.example", "allow_credentials": "perhaps"},
		{"allowed_origin": "https://a.example", "max_age": "-1"},
		{"allowed_origin": "https://a.example", "max_age": "x"},
	} {
		_, err := corsFactory().Filter(catConfig(opts))
		if err == nil {
			t.Errorf("%v: no error", opts)
			continue
		}
		wantConfigError(t, err)
	}
	if _, err := corsFactory().Filter(catConfig(map[string]string{"allowed_origin": "null, https://a.example/", "oslo_config_project": "x"})); err != nil {
		t.Errorf("null origin and trailing slash: %v", err)
	}
}
