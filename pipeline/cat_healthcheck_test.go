package pipeline

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCatHealthcheckApp(t *testing.T) {
	dir := t.TempDir()
	disabled := filepath.Join(dir, "disabled")
	if err := os.WriteFile(disabled, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(dir, "absent")

	tests := []struct {
		name       string
		opts       map[string]string
		method     string
		accept     string
		wantStatus int
		wantCType  string
		wantBody   string // exact for text, substring for others
	}{
		{name: "plain ok", method: "GET", wantStatus: 200, wantCType: "text/plain; charset=UTF-8", wantBody: "OK"},
		{name: "head ok is 204", method: "HEAD", wantStatus: 204, wantBody: ""},
		{name: "post answered too", method: "POST", wantStatus: 200, wantBody: "OK"},
		{name: "disabled by file", opts: map[string]string{"backends": "disable_by_file", "disable_by_file_path": disabled},
			method: "GET", wantStatus: 503, wantBody: "DISABLED BY FILE"},
		{name: "disabled by file, path alone enables the backend", opts: map[string]string{"disable_by_file_path": disabled},
			method: "GET", wantStatus: 503, wantBody: "DISABLED BY FILE"},
		{name: "head disabled", opts: map[string]string{"disable_by_file_path": disabled}, method: "HEAD", wantStatus: 503, wantBody: ""},
		{name: "file absent", opts: map[string]string{"backends": "disable_by_file", "disable_by_file_path": absent},
			method: "GET", wantStatus: 200, wantBody: "OK"},
		{name: "explicit backends without disable_by_file ignore the path", opts: map[string]string{"backends": "", "disable_by_file_path": disabled},
			method: "GET", wantStatus: 200, wantBody: "OK"},
		{name: "unknown backend and oslo options ignored", opts: map[string]string{"backends": "bogus", "oslo_config_project": "nova"},
			method: "GET", wantStatus: 200, wantBody: "OK"},
		{name: "enable_by_files missing", opts: map[string]string{"backends": "enable_by_files", "enable_by_file_paths": absent},
			method: "GET", wantStatus: 503, wantBody: "FILE PATH MISSING"},
		{name: "enable_by_files present", opts: map[string]string{"backends": "enable_by_files", "enable_by_file_paths": disabled},
			method: "GET", wantStatus: 200, wantBody: "OK"},
		{name: "json", method: "GET", accept: "application/json", wantStatus: 200, wantCType: "application/json; charset=UTF-8",
			wantBody: `"reasons": [`},
		{name: "json detailed", opts: map[string]string{"detailed": "true", "disable_by_file_path": disabled},
			method: "GET", accept: "application/json", wantStatus: 503, wantBody: `"details": "Path '` + disabled + `' was found"`},
		{name: "html", method: "GET", accept: "text/html,application/xhtml+xml,*/*;q=0.8", wantStatus: 200, wantCType: "text/html; charset=UTF-8",
			wantBody: "<TD>OK</TD>"},
		{name: "wildcard prefers text", method: "GET", accept: "*/*", wantStatus: 200, wantCType: "text/plain; charset=UTF-8", wantBody: "OK"},
		{name: "unacceptable falls back to text", method: "GET", accept: "image/png", wantStatus: 200, wantCType: "text/plain; charset=UTF-8", wantBody: "OK"},
		{name: "q values", method: "GET", accept: "text/plain;q=0.1, application/json", wantStatus: 200, wantCType: "application/json; charset=UTF-8", wantBody: `"detailed": false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := mustApp(t, healthcheckAppFactory(), catConfig(tt.opts))
			req := httptest.NewRequest(tt.method, "/anything", nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			rec := serve(h, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (%q)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if tt.wantCType != "" && rec.Header().Get("Content-Type") != tt.wantCType {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tt.wantCType)
			}
			body := rec.Body.String()
			if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") || tt.method == "HEAD" {
				if body != tt.wantBody {
					t.Errorf("body %q, want %q", body, tt.wantBody)
				}
			} else if !strings.Contains(body, tt.wantBody) {
				t.Errorf("body %q does not contain %q", body, tt.wantBody)
			}
			if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
				var v map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
					t.Errorf("invalid JSON: %v", err)
				}
			}
		})
	}
}

func TestCatHealthcheckFilter(t *testing.T) {
	mw := mustFilter(t, healthcheckFilterFactory(), map[string]string{"path": "/health"})
	h := mw(okHandler)
	tests := []struct {
		name   string
		path   string
		script string
		want   string
	}{
		{name: "path answered", path: "/health", want: "OK"},
		{name: "other path passes", path: "/healthz", want: "ok"},
		{name: "sub path passes", path: "/health/x", want: "ok"},
		{name: "root passes", path: "/", want: "ok"},
		{name: "script name is part of the path", path: "/health", script: "/v2", want: "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.URL.Path = tt.path
			if tt.script != "" {
				req = WithScriptName(req, tt.script)
			}
			if got := serve(h, req).Body.String(); got != tt.want {
				t.Errorf("body %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("script name plus path matches", func(t *testing.T) {
		h := mustFilter(t, healthcheckFilterFactory(), map[string]string{"path": "/v2/health"})(okHandler)
		req := WithScriptName(httptest.NewRequest("GET", "/health", nil), "/v2")
		if got := serve(h, req).Body.String(); got != "OK" {
			t.Errorf("body %q, want OK", got)
		}
		if got := serve(h, httptest.NewRequest("GET", "/health", nil)).Body.String(); got != "ok" {
			t.Errorf("without script name: body %q, want ok", got)
		}
	})
	t.Run("default path", func(t *testing.T) {
		h := mustFilter(t, healthcheckFilterFactory(), nil)(okHandler)
		if got := serve(h, httptest.NewRequest("GET", "/healthcheck", nil)).Body.String(); got != "OK" {
			t.Errorf("body %q, want OK", got)
		}
	})
	t.Run("pass-through allocates nothing", func(t *testing.T) {
		assertNoAllocs(t, h, httptest.NewRequest("GET", "/other", nil))
	})
}

func TestCatHealthcheckSourcesAndProxied(t *testing.T) {
	h := mustFilter(t, healthcheckFilterFactory(), map[string]string{
		"allowed_source_ranges":   "10.0.0.0/8, ::1",
		"ignore_proxied_requests": "true",
	})(okHandler)
	tests := []struct {
		name   string
		remote string
		header string
		want   string
	}{
		{name: "allowed v4", remote: "10.1.2.3:5555", want: "OK"},
		{name: "allowed v6", remote: "[::1]:5555", want: "OK"},
		{name: "outside range passes through", remote: "192.0.2.1:5555", want: "ok"},
		{name: "proxied passes through", remote: "10.1.2.3:5555", header: "X-Forwarded-For", want: "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/healthcheck", nil)
			req.RemoteAddr = tt.remote
			if tt.header != "" {
				req.Header.Set(tt.header, "1.2.3.4")
			}
			if got := serve(h, req).Body.String(); got != tt.want {
				t.Errorf("body %q, want %q", got, tt.want)
			}
		})
	}
	app := mustApp(t, healthcheckAppFactory(), catConfig(map[string]string{"allowed_source_ranges": "10.0.0.0/8"}))
	if rec := serve(app, httptest.NewRequest("GET", "/", nil)); rec.Code != http.StatusNotFound {
		t.Errorf("app form, source not allowed: %d, want 404", rec.Code)
	}
}

func TestCatHealthcheckPorts(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "off")
	os.WriteFile(f, nil, 0o644)
	h := mustApp(t, healthcheckAppFactory(), catConfig(map[string]string{
		"backends":              "disable_by_files_ports",
		"disable_by_file_paths": "8000:" + f + ", 9000:" + filepath.Join(dir, "absent"),
	}))
	for port, want := range map[int]int{8000: 503, 9000: 200, 7000: 200} {
		req := httptest.NewRequest("GET", "/", nil)
		addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, addr))
		if rec := serve(h, req); rec.Code != want {
			t.Errorf("port %d: %d, want %d", port, rec.Code, want)
		}
	}
}

func TestCatHealthcheckConfigErrors(t *testing.T) {
	bad := []map[string]string{
		{"path": "healthcheck"},
		{"detailed": "maybe"},
		{"allowed_source_ranges": "10.0.0.0/99"},
		{"backends": "disable_by_file enable_by_files"},
		{"backends": "disable_by_files_ports", "disable_by_file_paths": "/no/port"},
		{"backends": "disable_by_files_ports", "disable_by_file_paths": "99999:/x"},
	}
	for _, opts := range bad {
		_, err := healthcheckAppFactory().App(catConfig(opts))
		if err == nil {
			t.Errorf("%v: no error", opts)
			continue
		}
		wantConfigError(t, err)
	}
}
