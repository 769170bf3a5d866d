package accesslog

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// knownEntry is the request every atom test renders.
func knownEntry() *Entry {
	r := httptest.NewRequest(http.MethodGet, "/a%20b/c?x=1&y=%22", nil)
	r.RemoteAddr = "192.0.2.7:54321"
	r.Host = "example.test"
	r.Header.Set("Referer", "https://ref.example/")
	r.Header.Set("User-Agent", `curl/8.0 "quoted"`)
	r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:secret")))
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	r.Header.Add("Accept", "text/html")
	r.Header.Add("Accept", "*/*")
	r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}))
	return &Entry{
		Request:  r,
		Start:    time.Date(2026, 11, 30, 13, 55, 36, 123456789, time.FixedZone("", -7*3600)),
		Duration: 2*time.Second + 345678*time.Microsecond + 900*time.Nanosecond,
		Status:   201,
		Bytes:    5120,
		Header:   http.Header{"Content-Type": {"text/plain"}, "X-Request-Id": {"req-1"}},
	}
}

func generationVar(n int) Var {
	return Var{Name: "paddock.generation", JSONKey: "generation", Number: true,
		Append: func(b []byte) []byte { return strconv.AppendInt(b, int64(n), 10) }}
}

func render(t *testing.T, format string, e *Entry, opts Options) string {
	t.Helper()
	f, err := Parse(format)
	if err != nil {
		t.Fatalf("Parse(%q): %v", format, err)
	}
	opts.Format = f
	if opts.PID == 0 {
		opts.PID = 4242
	}
	out := string(New(opts).Append(nil, e))
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("%q: line %q does not end with a newline", format, out)
	}
	return strings.TrimSuffix(out, "\n")
}

// One row per atom of ECOSYSTEM §2.3, rendered against knownEntry.
func TestAtoms(t *testing.T) {
	tests := []struct{ format, want string }{
		{"%(h)s", "192.0.2.7"},
		{"%(l)s", "-"},
		{"%(u)s", "alice"},
		{"%(t)s", "[30/Nov/2026:13:55:36 -0700]"},
		{"%(r)s", "GET /a%20b/c?x=1&y=%22 HTTP/1.1"},
		{"%(m)s", "GET"},
		{"%(U)s", "/a b/c"},
		{"%(q)s", "x=1&y=%22"},
		{"%(H)s", "HTTP/1.1"},
		{"%(s)s", "201"},
		{"%(B)s", "5120"},
		{"%(b)s", "5120"},
		{"%(f)s", "https://ref.example/"},
		{"%(a)s", `curl/8.0 \"quoted\"`},
		{"%(T)s", "2"},
		{"%(M)s", "2345"},
		{"%(D)s", "2345678"},
		{"%(L)s", "2.345678"},
		{"%(p)s", "<4242>"},
		{"%({x-forwarded-for}i)s", "203.0.113.9"},
		{"%({content-type}o)s", "text/plain"},
		{"%({REMOTE_PORT}e)s", "54321"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			if got := render(t, tc.format, knownEntry(), Options{}); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.format, got, tc.want)
			}
		})
	}
}

// The details around the atoms: defaults, missing values, case, escaping,
// the environment, literals.
func TestAtomDetails(t *testing.T) {
	empty := knownEntry()
	empty.Bytes = 0
	bare := &Entry{Request: httptest.NewRequest(http.MethodHead, "/", nil), Start: knownEntry().Start, Status: 204}
	bare.Request.RemoteAddr = "[2001:db8::1]:443"
	bare.Request.Header = http.Header{}
	evil := knownEntry()
	evil.Request.Header.Set("User-Agent", "x\"\n127.0.0.1 - - [forged] \\ \xff")
	tests := []struct {
		name, format string
		e            *Entry
		want         string
	}{
		{"default is combined", "", knownEntry(),
			`192.0.2.7 - alice [30/Nov/2026:13:55:36 -0700] "GET /a%20b/c?x=1&y=%22 HTTP/1.1" 201 5120 "https://ref.example/" "curl/8.0 \"quoted\""`},
		{"combined preset", "combined", bare, `2001:db8::1 - - [30/Nov/2026:13:55:36 -0700] "HEAD / HTTP/1.1" 204 - "-" "-"`},
		{"common preset", "COMMON", knownEntry(), `192.0.2.7 - alice [30/Nov/2026:13:55:36 -0700] "GET /a%20b/c?x=1&y=%22 HTTP/1.1" 201 5120`},
		{"b is - for no body, B is 0", "%(b)s %(B)s", empty, "- 0"},
		{"missing headers and query", "%(f)s|%(a)s|%(u)s|%(q)s|%({x-nope}i)s|%({x-nope}o)s", bare, "-|-|-||-|-"},
		{"header name case and repeated values", "%({ACCEPT}i)s %({X-Request-ID}o)s", knownEntry(), "text/html, */* req-1"},
		{"literals and %%", `100%% "%(s)s" done`, knownEntry(), `100% "201" done`},
		{"no atoms", "just text", knownEntry(), "just text"},
		{"escaping", "%(a)s", evil, `x\"\x0a127.0.0.1 - - [forged] \\ \xff`},
		{"environ", "%({REQUEST_METHOD}e)s %({path_info}e)s %({QUERY_STRING}e)s %({SERVER_NAME}e)s:%({SERVER_PORT}e)s %({wsgi.url_scheme}e)s [%({SCRIPT_NAME}e)s] %({HTTP_X_FORWARDED_FOR}e)s %({http_host}e)s %({RAW_URI}e)s %({REMOTE_ADDR}e)s %({nope}e)s",
			knownEntry(), "GET /a b/c x=1&y=%22 127.0.0.1:8080 http [] 203.0.113.9 example.test /a%20b/c?x=1&y=%22 192.0.2.7 -"},
		{"server variables", "gen=%({paddock.generation}e)s %({PADDOCK.GENERATION}e)s", knownEntry(), "gen=7 7"},
		{"durations round down", "%(T)s %(M)s %(D)s %(L)s", &Entry{Request: bare.Request, Duration: 999999 * time.Nanosecond}, "0 0 999 0.000999"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := render(t, tc.format, tc.e, Options{Vars: []Var{generationVar(7)}})
			if got != tc.want {
				t.Errorf("%q\n got %q\nwant %q", tc.format, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		format string
		offset int
		msg    string
	}{
		{`%(h)s %(x)s`, 6, "unknown atom %(x)s (known: h l u t r m U q H s B b f a T M D L p {NAME}i {NAME}o {NAME}e)"},
		{`%(hh)s`, 0, "unknown atom %(hh)s"},
		{`%(h)`, 0, "%(h) has no conversion (want %(h)s)"},
		{`%(h)d`, 4, "%(h)d: only the s conversion is supported"},
		{`%(h`, 0, "unclosed %( (want %(NAME)s)"},
		{`ab %(h`, 3, "unclosed %("},
		{`100%`, 3, "a lone % at the end (write %% for a literal %)"},
		{`%d`, 0, "%d is not an atom: write %(NAME)s, or %% for a literal %"},
		{`%s`, 0, "%s is not an atom"},
		{`%({}i)s`, 0, "atom %({}i)s has an empty name"},
		{`%({x}z)s`, 0, "unknown atom %({x}z)s: {NAME} is followed by i (request header), o (response header) or e (environment)"},
		{`%({x)s`, 0, "malformed atom %({x)s"},
		{`%({x}ii)s`, 0, "malformed atom %({x}ii)s"},
		{`%((h))s`, 0, "unknown atom %((h))s"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			_, err := Parse(tc.format)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) = %v, want a *SyntaxError", tc.format, err)
			}
			if se.Offset != tc.offset || !strings.HasPrefix(se.Msg, tc.msg) {
				t.Errorf("Parse(%q): offset %d, msg %q; want offset %d, msg starting %q", tc.format, se.Offset, se.Msg, tc.offset, tc.msg)
			}
			if !strings.Contains(err.Error(), strconv.Quote(tc.format)) {
				t.Errorf("error %q does not quote the format", err)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	e := knownEntry()
	vars := []Var{generationVar(7), {Name: "paddock.app", JSONKey: "app", Append: func(b []byte) []byte { return append(b, "main"...) }}}
	got := render(t, `%(h)s %({x-forwarded-for}i)s %({content-type}o)s %({REMOTE_PORT}e)s %({paddock.generation}e)s`, e, Options{JSON: true, Vars: vars})
	want := `{"@level":"info","@message":"request","@module":"access","@timestamp":"2026-11-30T13:55:36.123456-07:00",` +
		`"app":"main","bytes":5120,"duration_s":2.345678,"env_remote_port":"54321","generation":7,"host":"example.test",` +
		`"method":"GET","path":"/a b/c","proto":"HTTP/1.1","query":"x=1&y=%22","referer":"https://ref.example/",` +
		`"remote_addr":"192.0.2.7","request_header_x_forwarded_for":"203.0.113.9","request_id":"req-1",` +
		`"response_header_content_type":"text/plain","status":201,"user":"alice","user_agent":"curl/8.0 \"quoted\"","worker_pid":4242}`
	if got != want {
		t.Errorf("JSON line\n got %s\nwant %s", got, want)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(got), &m); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	for _, k := range FieldsJSON {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}

	// The json preset, and hostile input stays valid JSON.
	evil := knownEntry()
	evil.Request.Header.Set("User-Agent", "a\"b\\c\n\x01\xff\u2028é")
	evil.Request.Header.Del("Authorization")
	line := render(t, "json", evil, Options{})
	m = nil
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	if m["user_agent"] != "a\"b\\c\n\x01\uFFFD\u2028é" || m["user"] != "" || m["worker_pid"] != float64(4242) {
		t.Errorf("decoded %q, user %q, pid %v", m["user_agent"], m["user"], m["worker_pid"])
	}
}

// A format rendered by many goroutines at once (the %(t)s cache).
func TestConcurrentRender(t *testing.T) {
	l := New(Options{PID: 1})
	done := make(chan string)
	for i := range 8 {
		go func() {
			e := knownEntry()
			e.Start = e.Start.Add(time.Duration(i%2) * time.Second)
			var s string
			for range 200 {
				s = string(l.Append(nil, e))
			}
			done <- s
		}()
	}
	for range 8 {
		s := <-done
		if !strings.Contains(s, "[30/Nov/2026:13:55:36 -0700]") && !strings.Contains(s, "[30/Nov/2026:13:55:37 -0700]") {
			t.Errorf("bad stamp in %q", s)
		}
	}
}
