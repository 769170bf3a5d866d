package accesslog

import (
	"bytes"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Entry is what one request produced: everything a line is made of.
type Entry struct {
	// Request is the request as the server received it.
	Request *http.Request
	// Start is when the handler was called; Duration how long it ran.
	Start    time.Time
	Duration time.Duration
	// Status is the final status sent (200 when the handler wrote
	// nothing).
	Status int
	// Bytes is the number of body bytes written.
	Bytes int64
	// Header is the response header (nil: none).
	Header http.Header
}

// Var is a variable of the server itself, for %({name}e)s atoms and as a
// field of JSON lines: the app served, the config generation, the worker.
type Var struct {
	// Name is what %({name}e)s matches, case-insensitively
	// ("paddock.generation").
	Name string
	// JSONKey is its field in JSON lines ("generation"); "" leaves it out.
	JSONKey string
	// Append appends the current value. Number values are written bare in
	// JSON (Number).
	Append func(b []byte) []byte
	// Number marks a value that is a JSON number.
	Number bool
}

// Options configure a Logger.
type Options struct {
	// Format is the compiled access_log_format; nil is "combined".
	Format *Format
	// JSON renders each line as a JSON object (the fields of FieldsJSON,
	// plus one per {name}i, {name}o and {name}e atom of Format) instead
	// of Format's text. The "json" preset turns it on too.
	JSON bool
	// Out receives one Write per line, newline included. Use a *Writer so
	// a slow disk never holds a request; nil discards.
	Out io.Writer
	// PID is %(p)s and the worker_pid field; 0 means os.Getpid().
	PID int
	// Vars are the server's own variables.
	Vars []Var
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// FieldsJSON are the fields of every JSON line, in the order written
// (sorted, like hclog's), before the per-atom and Vars fields are merged
// in: @level, @message ("request"), @module ("access"), @timestamp
// (request start, RFC 3339 with microseconds), bytes, duration_s,
// host, method, path, proto, query, referer, remote_addr, request_id,
// status, user, user_agent, worker_pid.
var FieldsJSON = []string{"@level", "@message", "@module", "@timestamp", "bytes", "duration_s", "host", "method",
	"path", "proto", "query", "referer", "remote_addr", "request_id", "status", "user", "user_agent", "worker_pid"}

// Logger renders access lines for one format. It is safe for concurrent
// use.
type Logger struct {
	out    io.Writer
	pieces []piece
	envs   []envRef // per kEnv piece, in order
	json   []jsonField
	pid    int
	pidTag []byte // "<pid>"
	now    func() time.Time
	stamp  atomic.Pointer[stamp]
}

// envRef is a resolved %({name}e)s: a CGI variable, an HTTP_ header, or
// one of Vars.
type envRef struct {
	cgi    cgiVar
	header string // HTTP_X_Y: the header X-Y
	v      *Var
}

type cgiVar uint8

const (
	cgiNone cgiVar = iota
	cgiRemoteAddr
	cgiRemotePort
	cgiRequestMethod
	cgiScriptName
	cgiPathInfo
	cgiQueryString
	cgiRawURI
	cgiServerProtocol
	cgiServerName
	cgiServerPort
	cgiContentType
	cgiContentLength
	cgiURLScheme
	cgiHeader
	cgiVar_
)

var cgiNames = map[string]cgiVar{
	"remote_addr": cgiRemoteAddr, "remote_port": cgiRemotePort, "request_method": cgiRequestMethod,
	"script_name": cgiScriptName, "path_info": cgiPathInfo, "query_string": cgiQueryString,
	"raw_uri": cgiRawURI, "request_uri": cgiRawURI, "server_protocol": cgiServerProtocol,
	"server_name": cgiServerName, "server_port": cgiServerPort, "content_type": cgiContentType,
	"content_length": cgiContentLength, "wsgi.url_scheme": cgiURLScheme,
}

// New compiles the options into a Logger.
func New(opts Options) *Logger {
	f := opts.Format
	if f == nil {
		f, _ = Parse("")
	}
	l := &Logger{out: opts.Out, pieces: f.pieces, pid: opts.PID, now: opts.Now}
	if l.out == nil {
		l.out = io.Discard
	}
	if l.pid == 0 {
		l.pid = os.Getpid()
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.pidTag = strconv.AppendInt([]byte{'<'}, int64(l.pid), 10)
	l.pidTag = append(l.pidTag, '>')
	vars := slices.Clone(opts.Vars)
	for _, p := range l.pieces {
		if p.kind != kEnv {
			continue
		}
		l.envs = append(l.envs, resolveEnv(p.text, vars))
	}
	if opts.JSON || f.json {
		l.json = jsonFields(f.pieces, vars, l)
	}
	return l
}

func resolveEnv(name string, vars []Var) envRef {
	for i := range vars {
		if strings.EqualFold(vars[i].Name, name) {
			return envRef{cgi: cgiVar_, v: &vars[i]}
		}
	}
	if c, ok := cgiNames[name]; ok {
		return envRef{cgi: c}
	}
	if h, ok := strings.CutPrefix(name, "http_"); ok && h != "" {
		return envRef{cgi: cgiHeader, header: canonicalFromCGI(h)}
	}
	return envRef{}
}

// canonicalFromCGI turns x_forwarded_for into X-Forwarded-For.
func canonicalFromCGI(s string) string {
	b := []byte(s)
	upper := true
	for i, c := range b {
		switch {
		case c == '_' || c == '-':
			b[i] = '-'
			upper = true
			continue
		case upper && 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case !upper && 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
		upper = false
	}
	return string(b)
}

// Log renders e and writes it to the output as one Write.
func (l *Logger) Log(e *Entry) {
	bp := bufPool.Get().(*[]byte)
	b := l.Append((*bp)[:0], e)
	_, _ = l.out.Write(b)
	if cap(b) <= 64<<10 { // do not keep buffers grown by a giant line
		*bp = b
		bufPool.Put(bp)
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Append appends e's line, newline included, to b.
func (l *Logger) Append(b []byte, e *Entry) []byte {
	if l.json != nil {
		return l.appendJSON(b, e)
	}
	env := 0
	for i := range l.pieces {
		p := &l.pieces[i]
		switch p.kind {
		case kLiteral:
			b = append(b, p.text...)
		case kEnv:
			b = l.appendEnvText(b, e, &l.envs[env])
			env++
		default:
			b = l.appendAtom(b, p, e)
		}
	}
	return append(b, '\n')
}

// appendAtom renders one atom as text (not kLiteral, not kEnv).
func (l *Logger) appendAtom(b []byte, p *piece, e *Entry) []byte {
	r := e.Request
	switch p.kind {
	case kRemoteAddr:
		return appendDash(b, remoteHost(r.RemoteAddr))
	case kIdent:
		return append(b, '-')
	case kUser:
		var buf [96]byte
		return appendDash(b, basicUser(r, buf[:0]))
	case kTime:
		b = append(b, '[')
		b = l.appendStamp(b, e.Start)
		return append(b, ']')
	case kRequestLine:
		b = appendEscaped(b, r.Method)
		b = append(b, ' ')
		b = appendEscaped(b, requestURI(r))
		b = append(b, ' ')
		return appendEscaped(b, r.Proto)
	case kMethod:
		return appendDash(b, r.Method)
	case kPath:
		return appendDash(b, r.URL.Path)
	case kQuery:
		// gunicorn's QUERY_STRING: empty, not "-", without a query.
		return appendEscaped(b, r.URL.RawQuery)
	case kProto:
		return appendDash(b, r.Proto)
	case kStatus:
		return strconv.AppendInt(b, int64(e.Status), 10)
	case kBytesRaw:
		return strconv.AppendInt(b, e.Bytes, 10)
	case kBytesCLF:
		if e.Bytes <= 0 {
			return append(b, '-')
		}
		return strconv.AppendInt(b, e.Bytes, 10)
	case kReferer:
		return appendHeader(b, r.Header["Referer"])
	case kUserAgent:
		return appendHeader(b, r.Header["User-Agent"])
	case kSeconds:
		return strconv.AppendInt(b, int64(e.Duration/time.Second), 10)
	case kMillis:
		return strconv.AppendInt(b, int64(e.Duration/time.Millisecond), 10)
	case kMicros:
		return strconv.AppendInt(b, int64(e.Duration/time.Microsecond), 10)
	case kDecimalSecs:
		return appendDecimalSeconds(b, e.Duration)
	case kPid:
		return append(b, l.pidTag...)
	case kReqHeader:
		return appendHeader(b, r.Header[p.text])
	case kRespHeader:
		return appendHeader(b, e.Header[p.text])
	}
	return append(b, '-')
}

// appendEnvText renders %({name}e)s: "-" when the variable is not set.
func (l *Logger) appendEnvText(b []byte, e *Entry, ref *envRef) []byte {
	if ref.cgi == cgiVar_ {
		return ref.v.Append(b)
	}
	v, ok := cgiValue(e.Request, ref)
	if !ok {
		return append(b, '-')
	}
	return appendEscaped(b, v)
}

// cgiValue is the WSGI environ value of ref (not a Var).
func cgiValue(r *http.Request, ref *envRef) (string, bool) {
	switch ref.cgi {
	case cgiRemoteAddr:
		return remoteHost(r.RemoteAddr), true
	case cgiRemotePort:
		_, port := splitHostPort(r.RemoteAddr)
		return port, true
	case cgiRequestMethod:
		return r.Method, true
	case cgiScriptName:
		return "", true
	case cgiPathInfo:
		return r.URL.Path, true
	case cgiQueryString:
		return r.URL.RawQuery, true
	case cgiRawURI:
		return requestURI(r), true
	case cgiServerProtocol:
		return r.Proto, true
	case cgiServerName, cgiServerPort:
		addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if !ok {
			return "", false
		}
		host, port := splitHostPort(addr.String())
		if ref.cgi == cgiServerName {
			return host, true
		}
		return port, true
	case cgiContentType:
		return headerValue(r.Header["Content-Type"])
	case cgiContentLength:
		return headerValue(r.Header["Content-Length"])
	case cgiURLScheme:
		// A scheme a trusted proxy reported (secure_scheme_headers,
		// http_proxy_to_wsgi) is in r.URL.Scheme, as the pipeline reads it.
		if r.URL != nil && r.URL.Scheme != "" {
			return r.URL.Scheme, true
		}
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	case cgiHeader:
		if ref.header == "Host" {
			return r.Host, r.Host != ""
		}
		return headerValue(r.Header[ref.header])
	}
	return "", false
}

func headerValue(v []string) (string, bool) {
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// stamp caches %(t)s for one second: formatting dominates a line's cost
// otherwise. Zone offsets change on second boundaries, so the second
// (and the location) is a sufficient key.
type stamp struct {
	sec int64
	loc *time.Location
	b   []byte
}

func (l *Logger) appendStamp(b []byte, t time.Time) []byte {
	sec := t.Unix()
	if st := l.stamp.Load(); st != nil && st.sec == sec && st.loc == t.Location() {
		return append(b, st.b...)
	}
	st := &stamp{sec: sec, loc: t.Location(), b: t.AppendFormat(make([]byte, 0, 26), "02/Jan/2006:15:04:05 -0700")}
	l.stamp.Store(st)
	return append(b, st.b...)
}

func appendDecimalSeconds(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	us := int64(d / time.Microsecond)
	b = strconv.AppendInt(b, us/1e6, 10)
	b = append(b, '.')
	frac := us % 1e6
	for div := int64(1e5); div > 0; div /= 10 {
		b = append(b, byte('0'+frac/div%10))
	}
	return b
}

// requestURI is the request target as the client sent it.
func requestURI(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	if r.URL != nil {
		return r.URL.RequestURI()
	}
	return ""
}

// remoteHost is REMOTE_ADDR: the peer's address without the port.
func remoteHost(addr string) string {
	host, _ := splitHostPort(addr)
	return host
}

// splitHostPort splits host:port and [v6]:port; an address without a port
// (a unix socket's "@", "") is all host.
func splitHostPort(addr string) (host, port string) {
	if strings.HasPrefix(addr, "[") {
		if end := strings.IndexByte(addr, ']'); end > 0 {
			host, rest := addr[1:end], addr[end+1:]
			if strings.HasPrefix(rest, ":") {
				return host, rest[1:]
			}
			return host, ""
		}
		return addr, ""
	}
	if i := strings.LastIndexByte(addr, ':'); i >= 0 && strings.IndexByte(addr[:i], ':') < 0 {
		return addr[:i], addr[i+1:]
	}
	return addr, ""
}

// basicUser decodes the user name of HTTP Basic authentication into buf
// and returns it; nil when there is none. With a buf of 96 bytes on the
// caller's stack the common header costs no allocation.
func basicUser(r *http.Request, buf []byte) []byte {
	v := r.Header["Authorization"]
	if len(v) == 0 {
		return nil
	}
	auth := v[0]
	const prefix = "Basic "
	if len(auth) < len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return nil
	}
	enc := strings.TrimSpace(auth[len(prefix):])
	n := base64.StdEncoding.DecodedLen(len(enc))
	if n+len(enc) > cap(buf) {
		buf = make([]byte, 0, n+len(enc))
	}
	src := append(buf[:0], enc...)
	dec := buf[len(src) : len(src)+n]
	m, err := base64.StdEncoding.Decode(dec, src)
	if err != nil {
		return nil
	}
	user, _, ok := bytes.Cut(dec[:m], []byte{':'})
	if !ok {
		return nil
	}
	return user
}

// appendDash appends s escaped, or "-" when it is empty.
func appendDash[S string | []byte](b []byte, s S) []byte {
	if len(s) == 0 {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

// appendHeader appends a header's values joined by ", " (escaped), or
// "-" when it is absent or empty.
func appendHeader(b []byte, v []string) []byte {
	if len(v) == 0 || (len(v) == 1 && v[0] == "") {
		return append(b, '-')
	}
	for i, s := range v {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendEscaped(b, s)
	}
	return b
}

// appendEscaped appends s escaping '"', '\' and bytes outside printable
// ASCII as Apache does (\" \\ \xhh), so client-controlled text cannot
// forge or split lines.
func appendEscaped[S string | []byte](b []byte, s S) []byte {
	const hexdig = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'x', hexdig[c>>4], hexdig[c&0x0f])
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, so every
// line is valid JSON whatever the client sent.
func appendJSONString[S string | []byte](b []byte, s S) []byte {
	const hexdig = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexdig[c>>4], hexdig[c&0x0f])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		var tmp [utf8.UTFMax]byte
		r, size := utf8.DecodeRune(tmp[:copy(tmp[:], s[i:])])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
