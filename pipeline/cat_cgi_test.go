package pipeline

import (
	"bufio"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// cgiEnvScript answers with its environment, one NAME=value a line, and
// then its standard input.
const cgiEnvScript = `#!/bin/sh
printf 'Content-Type: text/plain\r\nX-Script: env\r\n\r\n'
env
echo '--body--'
cat
`

// writeScript writes an executable script into dir.
func writeScript(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// cgiEnv parses cgiEnvScript's answer.
func cgiEnv(body string) (map[string]string, string) {
	env := map[string]string{}
	head, input, _ := strings.Cut(body, "--body--\n")
	sc := bufio.NewScanner(strings.NewReader(head))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env, input
}

func TestCatCGIEnvironment(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "env.cgi", cgiEnvScript)
	t.Setenv("PADDOCK_TEST_INHERITED", "inherited-value")
	t.Setenv("PADDOCK_TEST_NOT_INHERITED", "secret")
	c := catConfig(map[string]string{
		"script":       "env.cgi", // relative to here
		"env":          "\nFOO=bar baz\nEMPTY=\n",
		"inherit_env":  "PADDOCK_TEST_INHERITED",
		"query_string": "fixed=1",
	})
	c.Global["here"] = dir
	cgiApp := mustApp(t, cgiFactory(), c)
	if got := c.Unused(); len(got) != 0 {
		t.Errorf("unused options: %v", got)
	}
	mounted, err := urlmapFactory().Composite(catConfig(map[string]string{"/cgi-bin/env": "cgi"}), fakeLoader{"cgi": cgiApp})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		h       http.Handler
		method  string
		target  string
		body    string
		header  map[string]string
		tls     bool
		want    map[string]string // "<unset>" for a variable that must not be set
		wantIn  string            // the script's stdin
		remote  string
		reqHost string
	}{
		{
			name: "mounted", h: mounted, method: "GET", target: "/cgi-bin/env/a/b?x=1&y=2",
			header: map[string]string{"X-Test": "yes", "Proxy": "http://evil:1", "Cookie": "a=1"},
			remote: "192.0.2.7:4242",
			want: map[string]string{
				"SCRIPT_NAME": "/cgi-bin/env", "PATH_INFO": "/a/b", "QUERY_STRING": "x=1&y=2&fixed=1",
				"REQUEST_URI": "/cgi-bin/env/a/b?x=1&y=2", "REQUEST_METHOD": "GET", "REMOTE_ADDR": "192.0.2.7",
				"REMOTE_PORT": "4242", "HTTP_X_TEST": "yes", "HTTP_PROXY": "<unset>", "HTTP_COOKIE": "a=1",
				"SERVER_PORT": "80", "SERVER_NAME": "example.com", "SERVER_SOFTWARE": "paddock",
				"SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1", "HTTPS": "<unset>",
				"REQUEST_SCHEME": "http", "FOO": "bar baz", "EMPTY": "",
				"PADDOCK_TEST_INHERITED": "inherited-value", "PADDOCK_TEST_NOT_INHERITED": "<unset>",
				"SCRIPT_FILENAME": filepath.Join(dir, "env.cgi"), "CONTENT_LENGTH": "<unset>",
			},
		},
		{
			name: "mount itself has an empty PATH_INFO", h: mounted, method: "GET", target: "/cgi-bin/env",
			want: map[string]string{"SCRIPT_NAME": "/cgi-bin/env", "PATH_INFO": "", "QUERY_STRING": "fixed=1", "REQUEST_URI": "/cgi-bin/env"},
		},
		{
			name: "mount with a slash", h: mounted, method: "GET", target: "/cgi-bin/env/",
			want: map[string]string{"SCRIPT_NAME": "/cgi-bin/env", "PATH_INFO": "/"},
		},
		{
			name: "unmounted", h: cgiApp, method: "GET", target: "/x%20y",
			want: map[string]string{"SCRIPT_NAME": "", "PATH_INFO": "/x y", "REQUEST_URI": "/x%20y"},
		},
		{
			name: "post body", h: mounted, method: "POST", target: "/cgi-bin/env/p", body: "name=value&x=y",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			want:   map[string]string{"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "14", "CONTENT_TYPE": "application/x-www-form-urlencoded"},
			wantIn: "name=value&x=y",
		},
		{
			name: "tls and host port", h: mounted, method: "GET", target: "/cgi-bin/env", tls: true, reqHost: "example.com:8443",
			want: map[string]string{"HTTPS": "on", "REQUEST_SCHEME": "https", "SERVER_PORT": "8443", "SERVER_NAME": "example.com", "HTTP_HOST": "example.com:8443"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body *strings.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			var req *http.Request
			if body != nil {
				req = httptest.NewRequest(tt.method, tt.target, body)
			} else {
				req = httptest.NewRequest(tt.method, tt.target, nil)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.remote != "" {
				req.RemoteAddr = tt.remote
			}
			if tt.reqHost != "" {
				req.Host = tt.reqHost
			}
			if tt.tls {
				req.TLS = &tls.ConnectionState{}
			}
			rec := serve(tt.h, req)
			if rec.Code != 200 || rec.Header().Get("X-Script") != "env" {
				t.Fatalf("status %d, headers %v, body %q", rec.Code, rec.Header(), rec.Body.String())
			}
			env, input := cgiEnv(rec.Body.String())
			for k, want := range tt.want {
				got, ok := env[k]
				if want == "<unset>" {
					if ok {
						t.Errorf("%s = %q, want it unset", k, got)
					}
					continue
				}
				if !ok || got != want {
					t.Errorf("%s = %q (set %v), want %q", k, got, ok, want)
				}
			}
			if input != tt.wantIn {
				t.Errorf("stdin %q, want %q", input, tt.wantIn)
			}
		})
	}
}

func TestCatCGIResponses(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name       string
		script     string
		wantStatus int
		wantBody   string
		wantHeader map[string]string
		wantLog    []string
	}{
		{
			name:       "status and headers",
			script:     "#!/bin/sh\nprintf 'Status: 201 Created\\r\\nContent-Type: text/x-test\\r\\nX-A: 1\\r\\n\\r\\ncreated'\n",
			wantStatus: 201, wantBody: "created",
			wantHeader: map[string]string{"Content-Type": "text/x-test", "X-A": "1"},
		},
		{
			name:       "location is a redirect",
			script:     "#!/bin/sh\nprintf 'Location: https://example.com/next\\n\\n'\n",
			wantStatus: 302, wantHeader: map[string]string{"Location": "https://example.com/next"},
		},
		{
			name:       "stderr goes to the log, line by line",
			script:     "#!/bin/sh\necho 'first problem' >&2\nprintf 'partial ' >&2\necho 'second' >&2\nprintf 'no newline' >&2\nprintf 'Content-Type: text/plain\\n\\nok'\n",
			wantStatus: 200, wantBody: "ok",
			wantLog: []string{`line="first problem"`, `line="partial second"`, `line="no newline"`},
		},
		{
			name:       "script fails without output",
			script:     "#!/bin/sh\necho 'cannot connect to the database' >&2\nexit 1\n",
			wantStatus: 500,
			wantLog:    []string{"cannot connect to the database", "cgi: no headers"},
		},
		{
			name:       "no content type",
			script:     "#!/bin/sh\nprintf 'X-A: 1\\n\\nbody'\n",
			wantStatus: 500, wantLog: []string{"missing required Content-Type"},
		},
		{
			name:       "malformed status",
			script:     "#!/bin/sh\nprintf 'Status: abc\\nContent-Type: text/plain\\n\\nbody'\n",
			wantStatus: 502, wantBody: "502 Bad Gateway\n",
			wantLog: []string{"bogus status", "malformed response"},
		},
		{
			name:       "header line too long",
			script:     "#!/bin/sh\nprintf 'X-Long: '\nhead -c 5000 /dev/zero | tr '\\0' a\nprintf '\\n\\n'\n",
			wantStatus: 500, wantLog: []string{"long header line"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := writeScript(t, dir, "s"+string(rune('a'+i))+".cgi", tt.script)
			var logs lockedBuffer
			c := catConfig(map[string]string{"script": script})
			c.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace})
			h := mustApp(t, cgiFactory(), c)
			rec := serve(h, httptest.NewRequest("GET", "/", nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if tt.wantBody != "" && rec.Body.String() != tt.wantBody {
				t.Errorf("body %q, want %q", rec.Body.String(), tt.wantBody)
			}
			for k, v := range tt.wantHeader {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			for _, want := range tt.wantLog {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, logs.String())
				}
			}
		})
	}
}

func TestCatCGIStderrLines(t *testing.T) {
	var logs lockedBuffer
	s := &cgiStderr{log: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace}), script: "x"}
	long := strings.Repeat("y", cgiMaxStderrLine+10)
	for _, chunk := range []string{"a\r\nb", "c\n", long, "\n", "\n\n", "tail"} {
		s.Write([]byte(chunk))
	}
	s.flush()
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		_, v, _ := strings.Cut(l, "line=")
		lines = append(lines, strings.Trim(v, `"`))
	}
	want := []string{"a", "bc", strings.Repeat("y", cgiMaxStderrLine), "yyyyyyyyyy", "tail"}
	if len(lines) != len(want) {
		t.Fatalf("logged %d lines, want %d:\n%s", len(lines), len(want), logs.String())
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: %.40q, want %.40q", i, lines[i], want[i])
		}
	}
}

func TestCatCGIConfigErrors(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "ok.cgi", cgiEnvScript)
	if err := os.WriteFile(filepath.Join(dir, "noexec.cgi"), []byte(cgiEnvScript), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeScript(t, filepath.Join(dir, "sub"), "found.cgi", cgiEnvScript)
	tests := []struct {
		name    string
		opts    map[string]string
		wantKey string // the option whose line the error names
		wantMsg string
	}{
		{"no script", map[string]string{}, "script", "required"},
		{"missing", map[string]string{"script": "nope.cgi"}, "script", "not an executable file"},
		{"not executable", map[string]string{"script": "noexec.cgi"}, "script", "permission denied"},
		{"directory", map[string]string{"script": "sub"}, "script", "not an executable file"},
		{"not in path", map[string]string{"script": "ok.cgi", "path": "sub:/nonexistent"}, "script", "not found in path"},
		{"dir missing", map[string]string{"script": "ok.cgi", "dir": "nodir"}, "dir", "no such file"},
		{"dir is a file", map[string]string{"script": "ok.cgi", "dir": "ok.cgi"}, "dir", "not a directory"},
		{"env without =", map[string]string{"script": "ok.cgi", "env": "A=1\nBROKEN"}, "env", `"BROKEN"`},
		{"env empty name", map[string]string{"script": "ok.cgi", "env": "=1"}, "env", "NAME=value"},
		{"inherit_env bad name", map[string]string{"script": "ok.cgi", "inherit_env": "A=B"}, "inherit_env", "not an environment variable name"},
		{"include_os_environ bad", map[string]string{"script": "ok.cgi", "include_os_environ": "maybe"}, "include_os_environ", "not a boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := catConfigAt(tt.opts)
			c.Global["here"] = dir
			_, err := cgiFactory().App(c)
			wantErrorAt(t, err, c.PosOf(tt.wantKey).String()+": [test]: "+tt.wantKey, tt.wantMsg)
		})
	}
	t.Run("path search", func(t *testing.T) {
		c := catConfig(map[string]string{"script": "found.cgi", "path": "/nonexistent:sub"})
		c.Global["here"] = dir
		h := mustApp(t, cgiFactory(), c)
		if got := h.(*cgiApp).base.Path; got != filepath.Join(dir, "sub", "found.cgi") {
			t.Errorf("script resolved to %q", got)
		}
	})
	t.Run("dir", func(t *testing.T) {
		c := catConfig(map[string]string{"script": filepath.Join(dir, "sub", "found.cgi"), "dir": dir, "args": "a  b"})
		h := mustApp(t, cgiFactory(), c)
		base := h.(*cgiApp).base
		if base.Dir != dir || len(base.Args) != 2 || base.Args[1] != "b" {
			t.Errorf("Dir %q, Args %q", base.Dir, base.Args)
		}
	})
}

// The script runs in dir with args and, with include_os_environ, the
// whole environment.
func TestCatCGIDirArgsEnviron(t *testing.T) {
	dir := t.TempDir()
	work := t.TempDir()
	script := writeScript(t, dir, "pwd.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\necho \"pwd=$(pwd)\"\necho \"args=$*\"\necho \"secret=$PADDOCK_TEST_WHOLE_ENV\"\n")
	t.Setenv("PADDOCK_TEST_WHOLE_ENV", "all")
	h := mustApp(t, cgiFactory(), catConfig(map[string]string{"script": script, "dir": work, "args": "one two", "include_os_environ": "true"}))
	got := serve(h, httptest.NewRequest("GET", "/", nil)).Body.String()
	want := "pwd=" + work + "\nargs=one two\nsecret=all\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// Without dir the script runs in its own directory, and without
	// include_os_environ it does not see the variable.
	h = mustApp(t, cgiFactory(), catConfig(map[string]string{"script": script}))
	got = serve(h, httptest.NewRequest("GET", "/", nil)).Body.String()
	if want := "pwd=" + dir + "\nargs=\nsecret=\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
