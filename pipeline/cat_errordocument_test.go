package pipeline

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const page404 = "<h1>Not here</h1>\n"

// errorDocDir holds pages for the tests.
func errorDocDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"404.html": page404, "401.html": "<h1>Who are you?</h1>\n", "500.txt": "broken\n", "503": "{\"busy\":true}"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func errorDocFilter(t *testing.T, dir string, opts map[string]string) Middleware {
	t.Helper()
	c := catConfig(opts)
	c.Global["here"] = dir
	mw, err := errordocumentFactory().Filter(c)
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Unused(); len(u) != 0 {
		t.Errorf("unused %v", u)
	}
	return mw
}

func TestCatErrorDocumentOptions(t *testing.T) {
	dir := errorDocDir(t)
	for name, opts := range map[string]map[string]string{
		"not a status":  {"notfound": "404.html"},
		"not an error":  {"200": "404.html"},
		"too big":       {"600": "404.html"},
		"missing file":  {"404": "nope.html"},
		"a directory":   {"404": "."},
		"empty value":   {"404": " "},
		"bad type":      {"404": "404.html", "content_type": "text/html\r\nX-Evil: 1"},
		"Paste URL":     {"500": "/lib/msg/500.html"},
		"one bad of ok": {"404": "404.html", "abc": "x"},
	} {
		t.Run(name, func(t *testing.T) {
			c := catConfig(opts)
			c.Global["here"] = dir
			_, err := errordocumentFactory().Filter(c)
			wantConfigError(t, err)
		})
	}
	big := filepath.Join(dir, "big.html")
	if err := os.WriteFile(big, make([]byte, errorPageMaxBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := errordocumentFactory().Filter(catConfig(map[string]string{"404": big}))
	wantConfigError(t, err)
	var e *Error
	_, err = errordocumentFactory().Filter(catConfig(map[string]string{"404": filepath.Join(dir, "nope")}))
	if !errors.As(err, &e) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing page: %v does not wrap ErrNotExist", err)
	}
}

func TestCatErrorDocument(t *testing.T) {
	dir := errorDocDir(t)
	mw := errorDocFilter(t, dir, map[string]string{"404": "404.html", "401": filepath.Join(dir, "401.html"), "500": "500.txt", "503": "503"})
	tests := []struct {
		name     string
		method   string
		next     http.HandlerFunc
		status   int
		body     string
		ctype    string
		wantHdrs map[string]string
	}{
		{name: "404 replaced", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "9")
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("ETag", `"x"`)
			w.Header().Set("Set-Cookie", "a=b")
			w.WriteHeader(404)
			io.WriteString(w, "not found")
		}, status: 404, body: page404, ctype: "text/html; charset=utf-8",
			wantHdrs: map[string]string{"Content-Length": "18", "Content-Encoding": "", "Etag": "", "Set-Cookie": "a=b"}},
		{name: "401 keeps the challenge", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
			http.Error(w, "no", 401)
		}, status: 401, body: "<h1>Who are you?</h1>\n", ctype: "text/html; charset=utf-8",
			wantHdrs: map[string]string{"Www-Authenticate": `Basic realm="x"`}},
		{name: "text page", next: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", 500) },
			status: 500, body: "broken\n", ctype: "text/plain; charset=utf-8"},
		{name: "sniffed type", next: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) },
			status: 503, body: `{"busy":true}`, ctype: "text/plain; charset=utf-8"},
		{name: "io.Copy body discarded", next: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(404)
			io.Copy(w, strings.NewReader("the app's own 404 page"))
		}, status: 404, body: page404},
		{name: "HEAD: headers only", method: "HEAD", next: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) },
			status: 404, body: "", wantHdrs: map[string]string{"Content-Length": "18"}},
		{name: "other error untouched", next: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "teapot", 418) },
			status: 418, body: "teapot\n"},
		{name: "success untouched", next: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine") },
			status: 200, body: "fine"},
		{name: "404 after body already started", next: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "fine")
			w.WriteHeader(404) // superfluous: the 200 stands
		}, status: 200, body: "fine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "GET"
			}
			h := mw(tt.next)
			for range 2 { // the second run reuses a pooled writer
				rec := serve(h, httptest.NewRequest(method, "/", nil))
				if rec.Code != tt.status || rec.Body.String() != tt.body {
					t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tt.status, tt.body)
				}
				if tt.ctype != "" && rec.Header().Get("Content-Type") != tt.ctype {
					t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tt.ctype)
				}
				for k, v := range tt.wantHdrs {
					if got := rec.Header().Get(k); got != v {
						t.Errorf("%s = %q, want %q", k, got, v)
					}
				}
			}
		})
	}
}

func TestCatErrorDocumentContentType(t *testing.T) {
	dir := errorDocDir(t)
	h := errorDocFilter(t, dir, map[string]string{"404": "404.html", "content_type": "application/xhtml+xml"})(http.NotFoundHandler())
	rec := serve(h, httptest.NewRequest("GET", "/", nil))
	if rec.Header().Get("Content-Type") != "application/xhtml+xml" || rec.Body.String() != page404 {
		t.Errorf("%q %q", rec.Header().Get("Content-Type"), rec.Body.String())
	}
	// No pages: a warning and no wrapper.
	c := catConfig(nil)
	mw, err := errordocumentFactory().Filter(c)
	if err != nil {
		t.Fatal(err)
	}
	if h := mw(okHandler); h == nil {
		t.Fatal("nil handler")
	}
}

func TestCatErrorDocumentNoAllocs(t *testing.T) {
	mw := errorDocFilter(t, errorDocDir(t), map[string]string{"404": "404.html"})
	assertNoAllocs(t, mw(okHandler), httptest.NewRequest("GET", "/", nil))
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })
	t.Run("replaced", func(t *testing.T) { assertNoAllocs(t, mw(notFound), httptest.NewRequest("GET", "/", nil)) })
}
