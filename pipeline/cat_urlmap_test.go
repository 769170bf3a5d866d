package pipeline

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
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

// TestCatURLMapDomains matches domain keys against Host headers: ports
// (explicit and the scheme's default), IPv6 literals, case, a trailing
// dot, missing and malformed hosts.
func TestCatURLMapDomains(t *testing.T) {
	apps := fakeLoader{}
	for _, n := range []string{"dom", "dom8080", "dom8080admin", "domapi", "v6", "v6port", "v4port", "org", "any"} {
		apps[n] = tagApp(n)
	}
	c := catConfig(map[string]string{
		"domain example.com /":           "dom",
		"domain example.com port 8080 /": "dom8080",
		"http://example.com:8080/admin":  "dom8080admin",
		"domain example.com /api":        "domapi",
		"domain ::1 /":                   "v6",
		"http://[::1]:8443/":             "v6port",
		"https://127.0.0.1:8080/":        "v4port",
		"domain WWW.Example.ORG. /":      "org",
		"/":                              "any",
	})
	h, err := urlmapFactory().Composite(c, apps)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		host string
		tls  bool
		path string
		want string // the tag of the app that answers
	}{
		{"plain host", "example.com", false, "/x", "dom"},
		{"upper case host", "EXAMPLE.COM", false, "/x", "dom"},
		{"mixed case host and port", "Example.Com:8080", false, "/x", "dom8080"},
		{"trailing dot", "example.com.", false, "/x", "dom"},
		{"trailing dot and port", "example.com.:8080", false, "/x", "dom8080"},
		{"explicit default port", "example.com:80", false, "/x", "dom"},
		{"https default port", "example.com", true, "/x", "dom"},
		// Paste would answer "dom" here: its sort puts every
		// "example.com" entry before "example.com:8080" ones.
		{"port key wins over host key for the same prefix", "example.com:8080", false, "/x", "dom8080"},
		{"longer prefix on the port", "example.com:8080", false, "/admin/u", "dom8080admin"},
		{"longer prefix without port", "example.com:8080", false, "/api/u", "domapi"},
		{"host key without port matches any port", "example.com:9090", false, "/api", "domapi"},
		{"other port falls to host key", "example.com:9090", false, "/admin", "dom"},
		{"port with TLS", "example.com:8080", true, "/x", "dom8080"},
		{"non-numeric port matches host keys only", "example.com:http", false, "/x", "dom"},
		{"empty port is the default", "example.com:", false, "/x", "dom"},
		{"other host", "example.net", false, "/x", "any"},
		{"suffix is not the host", "www.example.com", false, "/x", "any"},
		{"missing Host", "", false, "/x", "any"},
		{"IPv6", "[::1]", false, "/x", "v6"},
		{"IPv6 other port", "[::1]:9000", false, "/x", "v6"},
		{"IPv6 with key port", "[::1]:8443", false, "/x", "v6port"},
		{"IPv6 non-canonical", "[0:0:0::1]:8443", false, "/x", "v6port"},
		{"IPv6 other address", "[::2]", false, "/x", "any"},
		{"IPv6 malformed", "[::1", false, "/x", "any"},
		{"IPv4 key port", "127.0.0.1:8080", false, "/x", "v4port"},
		{"IPv4 without the port (https key, http request)", "127.0.0.1", false, "/x", "any"},
		{"key with trailing dot and case", "www.example.org", false, "/x", "org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tt.path, nil)
			req.Host = tt.host
			if !tt.tls {
				req.TLS = nil
			} else if req.TLS == nil {
				req.TLS = &tls.ConnectionState{}
			}
			got := serve(h, req).Body.String()
			if tag, _, _ := strings.Cut(got, " "); tag != tt.want {
				t.Errorf("Host %q %s: answered by %q, want %q", tt.host, tt.path, got, tt.want)
			}
		})
	}
}

func TestCatURLMapDomainKeys(t *testing.T) {
	tests := []struct {
		key, domain, prefix string
	}{
		{"domain ::1", "[::1]", ""},
		{"domain ::1 port 8080 /x", "[::1]:8080", "/x"},
		{"domain [::1] port 8080 /x", "[::1]:8080", "/x"},
		{"http://[0:0::1]:08080/", "[::1]:8080", ""},
		{"http://::1/p", "[::1]", "/p"},
		{"domain Example.COM.", "example.com", ""},
		{"http://127.0.0.1:80/", "127.0.0.1:80", ""},
		{"domain example.com port 0080", "example.com:80", ""},
		{"https://Host.Example/", "host.example", ""},
	}
	for _, tt := range tests {
		expr, err := parsePathExpression(tt.key)
		if err != nil {
			t.Errorf("%q: %v", tt.key, err)
			continue
		}
		d, p, err := normalizeURLMapKey(expr)
		if err != nil {
			t.Errorf("%q: %v", tt.key, err)
			continue
		}
		_, canon, err := parseURLMapDomain(d)
		if err != nil || canon != tt.domain || p != tt.prefix {
			t.Errorf("%q: got (%q, %q, %v), want (%q, %q)", tt.key, canon, p, err, tt.domain, tt.prefix)
		}
	}

	bad := []string{
		"http://[::1/",
		"http://[::1]x/",
		"http://[127.0.0.1]/",
		"http://example.com:0/",
		"http://example.com:99999/",
		"http://example.com:/",
		"http://example.com:http/",
		"http://:80/",
		"domain exa:mple:com /",
		"domain example.com port x /",
	}
	apps := fakeLoader{"a": tagApp("a")}
	for _, key := range bad {
		t.Run(key, func(t *testing.T) {
			c := catConfig(map[string]string{key: "a"})
			c.optPos = map[string]Pos{key: {File: "site.ini", Line: 7}}
			_, err := urlmapFactory().Composite(c, apps)
			wantConfigError(t, err)
			if !strings.HasPrefix(err.Error(), "site.ini:7: [test]: ") {
				t.Errorf("error %q does not name the key's line", err)
			}
		})
	}

	// Keys that differ only in spelling map the same location: the later
	// line wins, as in Paste.
	c := catConfig(nil)
	c.Local = map[string]string{"domain example.com port 80 /x": "a", "http://EXAMPLE.com:0080/x/": "b"}
	c.keys = []string{"domain example.com port 80 /x", "http://EXAMPLE.com:0080/x/"}
	h, err := urlmapFactory().Composite(c, fakeLoader{"a": tagApp("a"), "b": tagApp("b")})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://example.com/x/y", nil)
	if got := serve(h, req).Body.String(); got != "b /y /x " {
		t.Errorf("duplicate location: got %q, want the later key's app", got)
	}
	if n := len(h.(*urlMap).entries); n != 1 {
		t.Errorf("%d entries, want 1", n)
	}
}

// Domain matching allocates nothing per request.
func TestCatURLMapDomainNoAllocs(t *testing.T) {
	h, err := urlmapFactory().Composite(catConfig(map[string]string{
		"domain example.com port 8080 /": "a",
		"domain ::1 /":                   "a",
		"/":                              "b",
	}), fakeLoader{"a": okHandler, "b": okHandler})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"EXAMPLE.com:8080", "[::1]:80", "other.example"} {
		req := httptest.NewRequest("GET", "http://x/", nil)
		req.Host = host
		// The mount itself allocates one request copy; matching must not
		// add to it.
		if raceEnabled {
			t.Skip("allocation counts are not meaningful under -race")
		}
		if n := allocsPerRequest(h, newNopWriter(), req); n > 1 {
			t.Errorf("Host %q: %.1f allocations per request, want at most 1 (the mount)", host, n)
		}
	}
}

// In an INI file an option name ends at the first ':' or '=': URL keys
// and IPv6 domains cannot be written there, and the error says so at the
// key's line; "domain HOST port N /path" keys work.
func TestCatURLMapINIKeys(t *testing.T) {
	tests := []struct {
		name, key, want string
	}{
		{"http URL key", "http://example.com:8080/p = a", `main.ini:3: [composite:main]: http://example.com:8080/p = a: an option name ends at the first ':' or '=', so this is the option "http"`},
		{"https URL key", "https://example.com/ = a", `main.ini:3: [composite:main]: https://example.com/ = a: an option name ends`},
		{"IPv6 domain", "domain ::1 / = a", `main.ini:3: [composite:main]: 'domain' must be followed with a domain name (an option name ends at the first ':' or '=': an IPv6 address cannot be written in a key)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeINI(t, "main.ini", "[composite:main]\nuse = egg:paddock#urlmap\n"+tt.key+"\n\n[app:a]\nuse = egg:paddock#hello\n")
			_, err := Load(LoadOptions{Path: path})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	path := writeINI(t, "main.ini", "[composite:main]\nuse = egg:paddock#urlmap\ndomain Example.com port 8080 /p = a\ndomain 127.0.0.1 / = b\n/ = c\n\n[app:a]\nuse = egg:paddock#hello\nbody = a\n\n[app:b]\nuse = egg:paddock#hello\nbody = b\n\n[app:c]\nuse = egg:paddock#hello\nbody = c\n")
	p, err := Load(LoadOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for host, want := range map[string]string{"example.com:8080": "a", "EXAMPLE.COM.:8080": "a", "example.com": "c", "127.0.0.1:9": "b", "": "c"} {
		req := httptest.NewRequest("GET", "/p/x", nil)
		req.Host = host
		if got := serve(p.Handler, req).Body.String(); got != want {
			t.Errorf("Host %q: %q, want %q", host, got, want)
		}
	}
}
