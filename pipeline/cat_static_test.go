package pipeline

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// staticTree builds:
//
//	outside/secret.txt
//	root/hello.txt, root/index.html, root/sub/index.html, root/empty/,
//	root/escape -> ../outside/secret.txt, root/inside -> hello.txt,
//	root/escapedir -> ../outside
func staticTree(t *testing.T) (base string) {
	t.Helper()
	base = t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(base, "outside"), 0o755))
	must(os.MkdirAll(filepath.Join(base, "root", "sub"), 0o755))
	must(os.MkdirAll(filepath.Join(base, "root", "empty"), 0o755))
	must(os.WriteFile(filepath.Join(base, "outside", "secret.txt"), []byte("secret"), 0o644))
	must(os.WriteFile(filepath.Join(base, "root", "hello.txt"), []byte("hello world"), 0o644))
	must(os.WriteFile(filepath.Join(base, "root", "index.html"), []byte("<p>root index</p>"), 0o644))
	must(os.WriteFile(filepath.Join(base, "root", "sub", "index.html"), []byte("<p>sub index</p>"), 0o644))
	must(os.Symlink("../outside/secret.txt", filepath.Join(base, "root", "escape")))
	must(os.Symlink("../outside", filepath.Join(base, "root", "escapedir")))
	must(os.Symlink("hello.txt", filepath.Join(base, "root", "inside")))
	return base
}

func TestCatStatic(t *testing.T) {
	base := staticTree(t)
	c := catConfig(map[string]string{"document_root": "root", "cache_max_age": "60"})
	c.Global["here"] = base
	h := mustApp(t, staticFactory(), c)

	tests := []struct {
		name       string
		method     string
		path       string
		script     string
		header     map[string]string
		wantStatus int
		wantBody   string
		wantHeader map[string]string
	}{
		{name: "file", method: "GET", path: "/hello.txt", wantStatus: 200, wantBody: "hello world",
			wantHeader: map[string]string{"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "max-age=60"}},
		{name: "head", method: "HEAD", path: "/hello.txt", wantStatus: 200, wantBody: "", wantHeader: map[string]string{"Content-Length": "11"}},
		{name: "root index", method: "GET", path: "/", wantStatus: 200, wantBody: "<p>root index</p>"},
		{name: "empty path is root", method: "GET", path: "", wantStatus: 200, wantBody: "<p>root index</p>"},
		{name: "sub index", method: "GET", path: "/sub/", wantStatus: 200, wantBody: "<p>sub index</p>"},
		{name: "dir redirect keeps script name", method: "GET", path: "/sub", script: "/static", wantStatus: 301,
			wantHeader: map[string]string{"Location": "/static/sub/"}},
		{name: "dir without index", method: "GET", path: "/empty/", wantStatus: 404},
		{name: "missing", method: "GET", path: "/nope.txt", wantStatus: 404},
		{name: "file with trailing slash", method: "GET", path: "/hello.txt/", wantStatus: 404},
		{name: "dotdot", method: "GET", path: "/../outside/secret.txt", wantStatus: 404},
		{name: "dotdot inside", method: "GET", path: "/sub/../hello.txt", wantStatus: 404},
		{name: "backslash dotdot", method: "GET", path: "/..\\outside\\secret.txt", wantStatus: 404},
		{name: "NUL", method: "GET", path: "/hello.txt\x00", wantStatus: 404},
		{name: "relative path", method: "GET", path: "hello.txt", wantStatus: 404},
		{name: "symlink escaping file", method: "GET", path: "/escape", wantStatus: 404},
		{name: "symlink escaping dir", method: "GET", path: "/escapedir/secret.txt", wantStatus: 404},
		{name: "symlink inside", method: "GET", path: "/inside", wantStatus: 200, wantBody: "hello world"},
		{name: "post", method: "POST", path: "/hello.txt", wantStatus: 405, wantHeader: map[string]string{"Allow": "GET, HEAD"}},
		{name: "range", method: "GET", path: "/hello.txt", header: map[string]string{"Range": "bytes=6-"}, wantStatus: 206, wantBody: "world"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/", nil)
			req.URL.Path = tt.path
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.script != "" {
				req = WithScriptName(req, tt.script)
			}
			rec := serve(h, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if tt.wantStatus < 300 && rec.Body.String() != tt.wantBody {
				t.Errorf("body %q, want %q", rec.Body.String(), tt.wantBody)
			}
			if rec.Code == 404 && strings.Contains(rec.Body.String(), "secret") {
				t.Errorf("404 leaks content: %q", rec.Body.String())
			}
			for k, v := range tt.wantHeader {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}

	t.Run("etag revalidation", func(t *testing.T) {
		rec := serve(h, httptest.NewRequest("GET", "/hello.txt", nil))
		etag := rec.Header().Get("Etag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		req := httptest.NewRequest("GET", "/hello.txt", nil)
		req.Header.Set("If-None-Match", etag)
		if rec := serve(h, req); rec.Code != http.StatusNotModified {
			t.Errorf("conditional GET: %d, want 304", rec.Code)
		}
	})
}

func TestCatStaticConfig(t *testing.T) {
	base := staticTree(t)
	file := filepath.Join(base, "root", "hello.txt")
	tests := []struct {
		name    string
		opts    map[string]string
		here    string
		wantErr bool
	}{
		{name: "absolute", opts: map[string]string{"document_root": filepath.Join(base, "root")}},
		{name: "relative to here", opts: map[string]string{"document_root": "root"}, here: base},
		{name: "missing", opts: map[string]string{}, wantErr: true},
		{name: "blank", opts: map[string]string{"document_root": "  "}, wantErr: true},
		{name: "not found", opts: map[string]string{"document_root": filepath.Join(base, "nope")}, wantErr: true},
		{name: "a file", opts: map[string]string{"document_root": file}, wantErr: true},
		{name: "bad index", opts: map[string]string{"document_root": base, "index": "../x"}, wantErr: true},
		{name: "bad max age", opts: map[string]string{"document_root": base, "cache_max_age": "soon"}, wantErr: true},
		{name: "negative max age", opts: map[string]string{"document_root": base, "cache_max_age": "-1"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := catConfig(tt.opts)
			if tt.here != "" {
				c.Global["here"] = tt.here
			}
			h, err := staticFactory().App(c)
			defer closeAll(c)
			if tt.wantErr {
				wantConfigError(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec := serve(h, httptest.NewRequest("GET", "/hello.txt", nil)); rec.Code != 200 {
				t.Errorf("GET /hello.txt: %d", rec.Code)
			}
		})
	}
}

func TestCatStaticCustomIndex(t *testing.T) {
	base := staticTree(t)
	c := catConfig(map[string]string{"document_root": filepath.Join(base, "root"), "index": "hello.txt"})
	h := mustApp(t, staticFactory(), c)
	rec := serve(h, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 || rec.Body.String() != "hello world" {
		t.Errorf("got %d %q", rec.Code, rec.Body.String())
	}
	if rec.Header().Get("Cache-Control") != "" {
		t.Errorf("Cache-Control set without cache_max_age: %q", rec.Header().Get("Cache-Control"))
	}
}
