package pipeline

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// lockedBuffer is an io.Writer safe for concurrent use in tests.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newTestTranslogger returns a translogger writing to a buffer with a fixed
// clock, so lines can be compared exactly.
func newTestTranslogger(t *testing.T, opts map[string]string) (*translogger, *lockedBuffer) {
	t.Helper()
	var buf lockedBuffer
	tl := &translogger{out: &buf, combined: opts["format"] != "common", now: func() time.Time {
		return time.Date(2024, time.March, 5, 14, 3, 9, 0, time.FixedZone("", 3600))
	}}
	return tl, &buf
}

func TestCatTranslogger(t *testing.T) {
	tests := []struct {
		name   string
		format string
		method string
		target string
		remote string
		header map[string]string
		next   http.HandlerFunc
		want   string
	}{
		{name: "combined", method: "GET", target: "/a/b?c=d", remote: "192.0.2.1:5555",
			header: map[string]string{"Referer": "http://ref.example/", "User-Agent": "curl/8.0"},
			next:   func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201); w.Write([]byte("hello")) },
			want:   `192.0.2.1 - - [05/Mar/2024:14:03:09 +0100] "GET /a/b?c=d HTTP/1.1" 201 5 "http://ref.example/" "curl/8.0"` + "\n"},
		{name: "common, no body", format: "common", method: "HEAD", target: "/", remote: "[2001:db8::1]:80",
			next: func(w http.ResponseWriter, r *http.Request) {},
			want: `2001:db8::1 - - [05/Mar/2024:14:03:09 +0100] "HEAD / HTTP/1.1" 200 -` + "\n"},
		{name: "escaping", method: "GET", target: "/q", remote: "10.0.0.1:1",
			header: map[string]string{"User-Agent": "evil\" \\ \x01agent"},
			next:   func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) },
			want:   `10.0.0.1 - - [05/Mar/2024:14:03:09 +0100] "GET /q HTTP/1.1" 404 - "-" "evil\" \\ \x01agent"` + "\n"},
		{name: "unix socket peer", method: "POST", target: "/p", remote: "@",
			next: func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 1234)) },
			want: `@ - - [05/Mar/2024:14:03:09 +0100] "POST /p HTTP/1.1" 200 1234 "-" "-"` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl, buf := newTestTranslogger(t, map[string]string{"format": tt.format})
			req := httptest.NewRequest(tt.method, tt.target, nil)
			req.RemoteAddr = tt.remote
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			tl.wrap(tt.next).ServeHTTP(httptest.NewRecorder(), req)
			if got := buf.String(); got != tt.want {
				t.Errorf("line\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	t.Run("panic logged as 500 and propagated", func(t *testing.T) {
		tl, buf := newTestTranslogger(t, nil)
		h := tl.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("x") }))
		func() {
			defer func() {
				if recover() == nil {
					t.Error("panic swallowed")
				}
			}()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}()
		if !strings.Contains(buf.String(), `"GET / HTTP/1.1" 500 -`) {
			t.Errorf("line %q", buf.String())
		}
	})
	t.Run("concurrent lines stay whole", func(t *testing.T) {
		tl, buf := newTestTranslogger(t, nil)
		h := tl.wrap(okHandler)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				for range 50 {
					req := httptest.NewRequest("GET", "/"+strings.Repeat("x", i), nil)
					h.ServeHTTP(httptest.NewRecorder(), req)
				}
			})
		}
		wg.Wait()
		line := regexp.MustCompile(`^192\.0\.2\.1 - - \[[^]]+\] "GET /x* HTTP/1\.1" 200 2 "-" "-"$`)
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		if len(lines) != 1000 {
			t.Fatalf("%d lines, want 1000", len(lines))
		}
		for _, l := range lines {
			if !line.MatchString(l) {
				t.Fatalf("mangled line %q", l)
			}
		}
	})
}

func TestCatTransloggerOutput(t *testing.T) {
	dir := t.TempDir()
	c := catConfig(map[string]string{"output": "logs/access.log", "logger_name": "wsgi", "format": "COMMON"})
	c.Global["here"] = dir
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	mw, err := transloggerFactory().Filter(c)
	if err != nil {
		t.Fatal(err)
	}
	mw(okHandler).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/file", nil))
	closeAll(c)
	data, err := os.ReadFile(filepath.Join(dir, "logs", "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^192\.0\.2\.1 - - \[.+\] "GET /file HTTP/1\.1" 200 2\n$`).Match(data) {
		t.Errorf("log file %q", data)
	}
	if got := c.Unused(); len(got) != 0 {
		t.Errorf("unused options %v", got)
	}

	for _, opts := range []map[string]string{
		{"format": "json"},
		{"output": filepath.Join(dir, "missing-dir", "x.log")},
	} {
		_, err := transloggerFactory().Filter(catConfig(opts))
		wantConfigError(t, err)
	}
	for _, out := range []string{"-", "stderr", "stdout", "discard", "none"} {
		if _, err := transloggerFactory().Filter(catConfig(map[string]string{"output": out})); err != nil {
			t.Errorf("output=%s: %v", out, err)
		}
	}
	t.Run("discard allocates nothing", func(t *testing.T) {
		h := mustFilter(t, transloggerFactory(), map[string]string{"output": "discard"})(okHandler)
		req := httptest.NewRequest("GET", "/some/path?q=1", nil)
		req.Header.Set("User-Agent", "bench")
		assertNoAllocs(t, h, req)
	})
}

func TestCatTransloggerStampCache(t *testing.T) {
	tl := &translogger{}
	t0 := time.Date(2024, time.March, 5, 14, 3, 9, 100, time.UTC)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{t0, "05/Mar/2024:14:03:09 +0000"},
		{t0.Add(500 * time.Millisecond), "05/Mar/2024:14:03:09 +0000"},
		{t0.Add(time.Second), "05/Mar/2024:14:03:10 +0000"},
		{t0.Add(-time.Hour), "05/Mar/2024:13:03:09 +0000"},
	} {
		if got := string(tl.appendStamp(nil, tc.at)); got != tc.want {
			t.Errorf("stamp(%v) = %q, want %q", tc.at, got, tc.want)
		}
	}
}

func TestCatTransloggerPasteFormat(t *testing.T) {
	tmpl, err := parseLogFormat(`%(REMOTE_ADDR)s %(REMOTE_USER)s [%(time)s] "%(REQUEST_METHOD)s %(REQUEST_URI)s %(HTTP_VERSION)s" %(status)s %(bytes)s "%(HTTP_REFERER)s" "%(HTTP_USER_AGENT)s" 100%%`)
	if err != nil {
		t.Fatal(err)
	}
	tl, buf := newTestTranslogger(t, nil)
	tl.tmpl = tmpl
	req := httptest.NewRequest("PUT", "/x?y=1", nil)
	req.RemoteAddr = "[2001:db8::5]:443"
	req.Header.Set("Authorization", basicHeader(`bo"b`, "pw"))
	req.Header.Set("User-Agent", "ua")
	tl.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })).ServeHTTP(httptest.NewRecorder(), req)
	want := `2001:db8::5 bo\"b [05/Mar/2024:14:03:09 +0100] "PUT /x?y=1 HTTP/1.1" 204 - "-" "ua" 100%` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("line\n got %q\nwant %q", got, want)
	}
	for _, bad := range []string{"%(nope)s", "%(status)d", "%(status)", "%(status", "50% %(status)s", "%(status)s %"} {
		if _, err := parseLogFormat(bad); err == nil {
			t.Errorf("format %q accepted", bad)
		}
		_, err := transloggerFactory().Filter(catConfig(map[string]string{"format": bad, "output": "discard"}))
		wantConfigError(t, err)
	}
	_, err = transloggerFactory().Filter(catConfig(map[string]string{"format": "apache"}))
	wantConfigError(t, err)
}

// The user field of the presets is the HTTP Basic user, as in the
// server's access log.
func TestCatTransloggerUser(t *testing.T) {
	tl, buf := newTestTranslogger(t, map[string]string{"format": "common"})
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", basicHeader("alice", "pw"))
	tl.wrap(okHandler).ServeHTTP(httptest.NewRecorder(), req)
	if !strings.HasPrefix(buf.String(), "192.0.2.1 - alice [") {
		t.Errorf("line %q", buf.String())
	}
}

// setup_console_handler = false without output: the lines go to the
// logging system (paddock's error log), named logger_name, at
// logging_level; set_logger_level above it silences them (Python's
// logger level).
func TestCatTransloggerLogging(t *testing.T) {
	tests := []struct {
		opts map[string]string
		want string // regexp; "" for no line
	}{
		{map[string]string{"setup_console_handler": "false"}, `^\[INFO\]  wsgi: 192\.0\.2\.1 - - \[.*\] "GET /p HTTP/1\.1" 200 2 "-" "-"\n$`},
		{map[string]string{"setup_console_handler": "off", "logger_name": "access", "logging_level": "WARNING"}, `^\[WARN\]  access: 192\.0\.2\.1 `},
		{map[string]string{"setup_console_handler": "0", "logging_level": "40", "format": "%%(status)s"}, `^\[ERROR\] wsgi: %\(status\)s\n$`},
		{map[string]string{"setup_console_handler": "no", "set_logger_level": "ERROR"}, ""},
		{map[string]string{"setup_console_handler": "no", "set_logger_level": "NOTSET", "logging_level": "DEBUG"}, `^\[DEBUG\] wsgi: `},
	}
	for _, tt := range tests {
		var out lockedBuffer
		c := catConfig(tt.opts)
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Trace, DisableTime: true})
		mw, err := transloggerFactory().Filter(c)
		if err != nil {
			t.Fatalf("%v: %v", tt.opts, err)
		}
		if u := c.Unused(); len(u) != 0 {
			t.Errorf("%v: unused %v", tt.opts, u)
		}
		mw(okHandler).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/p", nil))
		got := out.String()
		if tt.want == "" {
			if strings.Contains(got, "GET /p") {
				t.Errorf("%v: logged %q", tt.opts, got)
			}
			continue
		}
		if !regexp.MustCompile(tt.want).MatchString(got) {
			t.Errorf("%v: logged %q, want %s", tt.opts, got, tt.want)
		}
	}
	for _, opts := range []map[string]string{
		{"logging_level": "LOUD"},
		{"set_logger_level": "-5"},
		{"setup_console_handler": "maybe"},
	} {
		_, err := transloggerFactory().Filter(catConfig(opts))
		wantConfigError(t, err)
	}
}
