package pipeline

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// tagApp answers "tag path script rawpath".
func tagApp(tag string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(tag + " " + r.URL.Path + " " + ScriptName(r) + " " + r.URL.RawPath))
	})
}

func TestCatURLMap(t *testing.T) {
	apps := fakeLoader{}
	for _, n := range []string{"root", "api", "apiv2", "host", "hostport", "sslhost", "nf", "deep"} {
		apps[n] = tagApp(n)
	}
	c := catConfig(map[string]string{
		"/":                              "root",
		"/api/":                          "api",
		"/api/v2":                        "apiv2",
		"/a//b/c":                        "deep",
		"domain Example.COM /api":        "host",
		"domain example.com port 8080 /": "hostport",
		"https://secure.example/":        "sslhost",
		"http://ported.example:443/":     "hostport",
		"not_found_app":                  "nf",
		"unrelated_option":               "x",
	})
	h, err := urlmapFactory().Composite(c, apps)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Unused(); len(got) != 1 || got[0] != "unrelated_option" {
		t.Errorf("Unused() = %v, want [unrelated_option]", got)
	}

	tests := []struct {
		name   string
		target string
		tls    bool
		script string
		want   string
	}{
		{name: "root", target: "http://any.host/", want: "root /  "},
		{name: "root deep", target: "http://any.host/x/y", want: "root /x/y  "},
		{name: "prefix exact", target: "http://any.host/api", want: "api / /api "},
		{name: "prefix slash", target: "http://any.host/api/", want: "api / /api "},
		{name: "prefix sub", target: "http://any.host/api/x", want: "api /x /api "},
		{name: "segment boundary", target: "http://any.host/apix", want: "root /apix  "},
		{name: "longest first", target: "http://any.host/api/v2/servers", want: "apiv2 /servers /api/v2 "},
		{name: "v2x is not v2", target: "http://any.host/api/v2x", want: "api /v2x /api "},
		{name: "double slashes collapse", target: "http://any.host/api//x", want: "api /x /api "},
		{name: "key slashes normalised", target: "http://any.host/a/b/c/d", want: "deep /d /a/b/c "},
		{name: "existing script name", target: "http://any.host/api/x", script: "/mnt", want: "api /x /mnt/api "},
		{name: "host match case-insensitive", target: "http://EXAMPLE.com/api/x", want: "host /x /api "},
		{name: "host with default port", target: "http://example.com:80/api/x", want: "host /x /api "},
		{name: "host and port", target: "http://example.com:8080/other", want: "hostport /other  "},
		{name: "host and port, domain-only entry wins for its path", target: "http://example.com:8080/api", want: "host / /api "},
		{name: "https default port", target: "https://secure.example/z", tls: true, want: "sslhost /z  "},
		{name: "key scheme is not matched (Paste)", target: "http://secure.example/z", want: "sslhost /z  "},
		{name: "key port 443 matches https", target: "https://ported.example/q", tls: true, want: "hostport /q  "},
		{name: "key port 443 does not match http", target: "http://ported.example/q", want: "root /q  "},
		{name: "encoded slash kept", target: "http://any.host/api/a%2Fb", want: "api /a/b /api /a%2Fb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tt.target, nil)
			if !tt.tls {
				req.TLS = nil
			}
			if tt.script != "" {
				req = WithScriptName(req, tt.script)
			}
			orig := req.URL.Path
			if got := serve(h, req).Body.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if req.URL.Path != orig {
				t.Errorf("original request modified: %q", req.URL.Path)
			}
		})
	}
}

func TestCatURLMapNotFound(t *testing.T) {
	apps := fakeLoader{"api": tagApp("api"), "nf": tagApp("nf")}
	h, err := urlmapFactory().Composite(catConfig(map[string]string{"/api": "api"}), apps)
	if err != nil {
		t.Fatal(err)
	}
	if rec := serve(h, httptest.NewRequest("GET", "/other", nil)); rec.Code != 404 {
		t.Errorf("no match: %d, want 404", rec.Code)
	}
	c := catConfig(map[string]string{"/api": "api"})
	c.Global["not_found_app"] = "nf"
	h, err = urlmapFactory().Composite(c, apps)
	if err != nil {
		t.Fatal(err)
	}
	if got := serve(h, httptest.NewRequest("GET", "/other", nil)).Body.String(); got != "nf /other  " {
		t.Errorf("global not_found_app: %q", got)
	}
}

func TestCatURLMapErrors(t *testing.T) {
	apps := fakeLoader{"a": tagApp("a")}
	tests := []struct {
		name string
		opts map[string]string
	}{
		{name: "port without domain", opts: map[string]string{"port 8080 /p": "a"}},
		{name: "domain twice", opts: map[string]string{"domain a domain b /": "a"}},
		{name: "domain without name", opts: map[string]string{"domain": "a"}},
		{name: "two paths", opts: map[string]string{"/a /b": "a"}},
		{name: "unknown app", opts: map[string]string{"/a": "missing"}},
		{name: "empty app name", opts: map[string]string{"/a": " "}},
		{name: "unknown not_found_app", opts: map[string]string{"/a": "a", "not_found_app": "missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := urlmapFactory().Composite(catConfig(tt.opts), apps)
			wantConfigError(t, err)
		})
	}
	t.Run("loader errors wrapped", func(t *testing.T) {
		sentinel := errors.New("boom")
		_, err := urlmapFactory().Composite(catConfig(map[string]string{"/a": "x"}), errLoader{sentinel})
		if !errors.Is(err, sentinel) {
			t.Errorf("error %v does not wrap the loader's error", err)
		}
	})
}

type errLoader struct{ err error }

func (l errLoader) LoadApp(string) (http.Handler, error) { return nil, l.err }

func TestCatURLMapExpressions(t *testing.T) {
	tests := []struct {
		key, domain, prefix string
	}{
		{"/", "", ""},
		{"/foo/", "", "/foo"},
		{"//foo//bar//", "", "/foo/bar"},
		{"domain example.com", "example.com", ""},
		{"domain example.com /x", "example.com", "/x"},
		{"/x domain example.com", "example.com", "/x"},
		{"domain h port 81 /x", "h:81", "/x"},
		{"domain h port 80 /x", "h:80", "/x"},
		{"http://H.example:8080/p/", "h.example:8080", "/p"},
		{"https://h.example:443/p", "h.example:443", "/p"},
		{"https://[::1]:8443/p", "[::1]:8443", "/p"},
	}
	for _, tt := range tests {
		expr, err := parsePathExpression(tt.key)
		if err != nil {
			t.Errorf("%q: %v", tt.key, err)
			continue
		}
		d, p, err := normalizeURLMapKey(expr)
		if err != nil || d != tt.domain || p != tt.prefix {
			t.Errorf("%q: got (%q, %q, %v), want (%q, %q)", tt.key, d, p, err, tt.domain, tt.prefix)
		}
	}
}
