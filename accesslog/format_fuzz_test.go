package accesslog

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzFormatRequest renders any format that parses with a request whose
// client-controlled parts (method, target, headers, peer address) and
// outcome (status, bytes, duration) are fuzzed. It never panics, and what
// the client sends cannot add a line: a text line has no more line breaks
// than the format's own text, and a JSON line is one valid JSON object.
func FuzzFormatRequest(f *testing.F) {
	f.Add(Combined, "GET", "/a?b=c", "curl/8.0", "192.0.2.1:5", 200, int64(10), int64(1500))
	f.Add("json", "POST", "/x\ny", "a\r\nb\"c", "[::1]:80", 404, int64(-1), int64(-5))
	f.Add(`%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(T)s %(D)s %(L)s %(p)s %(M)s %(U)s %(q)s %(H)s %(m)s %(B)s`,
		"G\x00T", "//\xff?\x7f", "\xc3\x28", "@", 999, int64(1<<40), int64(-1<<62))
	f.Add("%({x-fuzz}i)s|%({x-fuzz}o)s|%({remote_addr}e)s|%({raw_uri}e)s|%({http_x_fuzz}e)s|%({remote_port}e)s",
		"", "", "v\nw", "", -1, int64(0), int64(0))
	f.Add("line1\n%(r)s\nline3", "PUT", "*", "", "10.0.0.1", 0, int64(5), int64(1))
	f.Fuzz(func(t *testing.T, format, method, target, header, remote string, status int, size, dur int64) {
		fm, err := Parse(format)
		if err != nil {
			return // FuzzParse covers the errors
		}
		u := &url.URL{Path: target}
		if p, q, ok := strings.Cut(target, "?"); ok {
			u = &url.URL{Path: p, RawQuery: q}
		}
		r := &http.Request{
			Method:     method,
			URL:        u,
			RequestURI: target,
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Host:       header,
			RemoteAddr: remote,
			Header: http.Header{
				"User-Agent":      {header},
				"Referer":         {header, header},
				"X-Fuzz":          {header},
				"X-Forwarded-For": {header},
				"Authorization":   {"Basic " + header},
			},
		}
		e := &Entry{
			Request:  r,
			Start:    time.Unix(0, dur),
			Duration: time.Duration(dur),
			Status:   status,
			Bytes:    size,
			Header:   http.Header{"X-Fuzz": {header}, "Content-Type": {header}},
		}
		line := New(Options{Format: fm, PID: 7}).Append(nil, e)
		if !fm.JSON() {
			if len(line) == 0 || line[len(line)-1] != '\n' {
				t.Fatalf("format %q: line %q does not end in a newline", format, line)
			}
			// The format's own text may hold line breaks; the request's
			// values may not add any.
			for _, c := range []string{"\n", "\r"} {
				if got, own := bytes.Count(line, []byte(c)), strings.Count(format, c); got > own+btoi(c == "\n") {
					t.Fatalf("format %q: %d %q in line %q, format has %d", format, got, c, line, own)
				}
			}
		}
		js := New(Options{Format: fm, PID: 7, JSON: true}).Append(nil, e)
		if bytes.IndexByte(js, '\n') != len(js)-1 || bytes.ContainsRune(js, '\r') {
			t.Fatalf("format %q: JSON line %q is not one line", format, js)
		}
		var obj map[string]any
		if err := json.Unmarshal(js, &obj); err != nil {
			t.Fatalf("format %q: JSON line %q: %v", format, js, err)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
