package pipeline

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// transloggerFactory writes an access log line per request, like Paste's
// paste.translogger (Apache combined format by default).
func transloggerFactory() Factory {
	return Filter("access log in Apache combined/common format (Paste's translogger)", newTranslogger)
}

type translogger struct {
	mu       sync.Mutex // serialises writes so lines never interleave
	out      io.Writer  // nil: lines go to logger
	logger   hclog.Logger
	level    hclog.Level // of the lines sent to logger
	combined bool
	tmpl     []logField // a Paste format string; nil for the presets
	now      func() time.Time
	// stamp caches the formatted timestamp of the current second:
	// formatting dominates the cost of a line otherwise.
	stamp atomic.Pointer[logStamp]
}

type logStamp struct {
	sec int64
	b   []byte
}

// appendStamp appends start in Apache's %t format. Within one second the
// offset cannot change (zone transitions fall on second boundaries), so
// the Unix second is a sufficient cache key.
func (t *translogger) appendStamp(b []byte, start time.Time) []byte {
	sec := start.Unix()
	if st := t.stamp.Load(); st != nil && st.sec == sec {
		return append(b, st.b...)
	}
	st := &logStamp{sec: sec, b: start.AppendFormat(make([]byte, 0, 26), "02/Jan/2006:15:04:05 -0700")}
	t.stamp.Store(st)
	return append(b, st.b...)
}

// Python logging's level numbers, which Paste's logging_level and
// set_logger_level take (by name or number).
var pyLogLevels = map[string]int{"NOTSET": 0, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40, "CRITICAL": 50, "FATAL": 50}

func pyLogLevel(c *Config, key, def string) (int, error) {
	v := strings.TrimSpace(c.String(key, def))
	if v == "" || strings.EqualFold(v, "none") {
		return 0, nil // Python's None: no level set
	}
	if n, ok := pyLogLevels[strings.ToUpper(v)]; ok {
		return n, nil
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return n, nil
	}
	return 0, c.Errorf(key, "%s: want a logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL or a number), got %q", key, v)
}

// hclogLevel maps a Python level number to the nearest hclog level.
func hclogLevel(n int) hclog.Level {
	switch {
	case n < 20:
		return hclog.Debug
	case n < 30:
		return hclog.Info
	case n < 40:
		return hclog.Warn
	}
	return hclog.Error
}

func newTranslogger(c *Config) (Middleware, error) {
	t := &translogger{now: time.Now}
	switch format := c.String("format", "combined"); strings.ToLower(strings.TrimSpace(format)) {
	case "combined", "":
		t.combined = true
	case "common":
	default:
		if !strings.Contains(format, "%(") {
			return nil, c.Errorf("format", "format: want combined, common or a Paste format string with %%(NAME)s fields, got %q", format)
		}
		tmpl, err := parseLogFormat(format)
		if err != nil {
			return nil, c.Wrapf("format", err, "format")
		}
		t.tmpl = tmpl
	}
	logLevel, err := pyLogLevel(c, "logging_level", "INFO")
	if err != nil {
		return nil, err
	}
	loggerLevel, err := pyLogLevel(c, "set_logger_level", "DEBUG")
	if err != nil {
		return nil, err
	}
	console, err := c.Bool("setup_console_handler", true)
	if err != nil {
		return nil, err
	}
	name := strings.TrimSpace(c.String("logger_name", "wsgi"))
	if name == "" {
		name = "wsgi"
	}
	if logLevel < loggerLevel {
		// Paste's logger drops records below its level: nothing is
		// logged at all.
		catLogger(c).Debug("translogger: logging_level is below set_logger_level; no lines are logged", "logger_name", name)
		return func(next http.Handler) http.Handler { return next }, nil
	}
	out, explicit := c.Lookup("output")
	switch out = strings.TrimSpace(out); {
	case !explicit && !console:
		// Paste hands the lines to the logging system: paddock's is
		// its error log.
		t.logger = catLogger(c).ResetNamed(name)
		t.level = hclogLevel(logLevel)
	case out == "-" || out == "stderr" || out == "":
		t.out = os.Stderr
	case out == "stdout":
		t.out = os.Stdout
	case out == "discard" || out == "none":
		t.out = io.Discard
	default:
		p, err := catResolvePath(c, out)
		if err != nil {
			return nil, catErr(c, "output", "ValueError", err, "output: %q", out)
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, catErr(c, "output", "OSError", err, "output: cannot open log file")
		}
		c.AddCloser(f)
		t.out = f
	}
	return t.wrap, nil
}

// logField is one piece of a Paste format: literal text, or a field.
type logField struct {
	lit   string
	field int // one of the lf* constants; lfLiteral for text
}

const (
	lfLiteral = iota
	lfRemoteAddr
	lfRemoteUser
	lfTime
	lfMethod
	lfURI
	lfVersion
	lfStatus
	lfBytes
	lfReferer
	lfUserAgent
)

// pasteLogFields are the keys TransLogger.write_log offers to its format.
var pasteLogFields = map[string]int{
	"REMOTE_ADDR": lfRemoteAddr, "REMOTE_USER": lfRemoteUser, "time": lfTime,
	"REQUEST_METHOD": lfMethod, "REQUEST_URI": lfURI, "HTTP_VERSION": lfVersion,
	"status": lfStatus, "bytes": lfBytes, "HTTP_REFERER": lfReferer, "HTTP_USER_AGENT": lfUserAgent,
}

// parseLogFormat compiles a Python %-format string over Paste's keys:
// %(NAME)s fields and %% for a percent sign.
func parseLogFormat(f string) ([]logField, error) {
	var out []logField
	var lit strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			lit.WriteByte(f[i])
			continue
		}
		rest := f[i+1:]
		switch {
		case strings.HasPrefix(rest, "%"):
			lit.WriteByte('%')
			i++
			continue
		case strings.HasPrefix(rest, "("):
		default:
			return nil, fmt.Errorf("a %% that is neither %%%% nor %%(NAME)s at byte %d of %q", i, f)
		}
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return nil, fmt.Errorf("unclosed %%( at byte %d of %q", i, f)
		}
		name := rest[1:end]
		id, ok := pasteLogFields[name]
		if !ok {
			return nil, fmt.Errorf("unknown field %%(%s)s (known: REMOTE_ADDR REMOTE_USER time REQUEST_METHOD REQUEST_URI HTTP_VERSION status bytes HTTP_REFERER HTTP_USER_AGENT)", name)
		}
		if end+1 >= len(rest) || rest[end+1] != 's' {
			return nil, fmt.Errorf("field %%(%s) must be followed by s (got %%(%s)%s)", name, name, rest[end+1:min(len(rest), end+2)])
		}
		if lit.Len() > 0 {
			out = append(out, logField{lit: lit.String()})
			lit.Reset()
		}
		out = append(out, logField{field: id})
		i += end + 2
	}
	if lit.Len() > 0 {
		out = append(out, logField{lit: lit.String()})
	}
	return out, nil
}

var logBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (t *translogger) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := t.now()
		sw := getStatusWriter(w)
		completed := false
		defer func() {
			status := sw.status
			if !sw.wrote {
				// A handler that returns without writing gets an implicit
				// 200; one that panicked gets whatever is made of the
				// panic further out, logged here as 500.
				status = http.StatusOK
				if !completed {
					status = http.StatusInternalServerError
				}
			}
			t.log(r, start, status, sw.bytes)
			putStatusWriter(sw)
		}()
		next.ServeHTTP(sw, r)
		completed = true
	})
}

// log formats one line with append-style calls into a pooled buffer and
// writes it with a single Write.
func (t *translogger) log(r *http.Request, start time.Time, status int, n int64) {
	bp := logBufPool.Get().(*[]byte)
	b := (*bp)[:0]
	if t.tmpl != nil {
		for _, f := range t.tmpl {
			if f.field == lfLiteral {
				b = append(b, f.lit...)
				continue
			}
			b = t.appendField(b, f.field, r, start, status, n)
		}
	} else {
		b = t.appendField(b, lfRemoteAddr, r, start, status, n)
		// %l: identd is never used.
		b = append(b, " - "...)
		b = t.appendField(b, lfRemoteUser, r, start, status, n)
		b = append(b, " ["...)
		b = t.appendField(b, lfTime, r, start, status, n)
		b = append(b, "] \""...)
		b = t.appendField(b, lfMethod, r, start, status, n)
		b = append(b, ' ')
		b = t.appendField(b, lfURI, r, start, status, n)
		b = append(b, ' ')
		b = t.appendField(b, lfVersion, r, start, status, n)
		b = append(b, "\" "...)
		b = t.appendField(b, lfStatus, r, start, status, n)
		b = append(b, ' ')
		b = t.appendField(b, lfBytes, r, start, status, n)
		if t.combined {
			b = append(b, " \""...)
			b = t.appendField(b, lfReferer, r, start, status, n)
			b = append(b, "\" \""...)
			b = t.appendField(b, lfUserAgent, r, start, status, n)
			b = append(b, '"')
		}
	}

	if t.out != nil {
		b = append(b, '\n')
		t.mu.Lock()
		_, _ = t.out.Write(b)
		t.mu.Unlock()
	} else {
		t.logger.Log(t.level, string(b))
	}

	// Do not keep buffers grown by a giant request line.
	if cap(b) <= 64<<10 {
		*bp = b
		logBufPool.Put(bp)
	}
}

// appendField appends one of Paste's fields.
func (t *translogger) appendField(b []byte, field int, r *http.Request, start time.Time, status int, n int64) []byte {
	switch field {
	case lfRemoteAddr:
		// The peer address without port (REMOTE_ADDR). Paste prefers
		// X-Forwarded-For, which any client can forge; paddock does not.
		if host, _, ok := catSplitHostPort(r.RemoteAddr); ok && host != "" {
			return append(b, host...)
		} else if r.RemoteAddr != "" {
			return appendLogEscaped(b, r.RemoteAddr)
		}
		return append(b, '-')
	case lfRemoteUser:
		// REMOTE_USER: the HTTP Basic user, decoded as the server's
		// access log (%(u)s) and basic_auth decode it.
		if v := r.Header["Authorization"]; len(v) > 0 && len(v[0]) <= basicAuthMaxHeader {
			var buf [256]byte
			if user, _, ok := parseBasicAuth(v[0], buf[:0]); ok && len(user) > 0 {
				return appendLogEscaped(b, user)
			}
		}
		return append(b, '-')
	case lfTime:
		return t.appendStamp(b, start)
	case lfMethod:
		return appendLogEscaped(b, r.Method)
	case lfURI:
		if r.RequestURI != "" {
			return appendLogEscaped(b, r.RequestURI)
		}
		return appendLogEscaped(b, r.URL.RequestURI())
	case lfVersion:
		return appendLogEscaped(b, r.Proto)
	case lfStatus:
		return strconv.AppendInt(b, int64(status), 10)
	case lfBytes:
		if n > 0 {
			return strconv.AppendInt(b, n, 10)
		}
		return append(b, '-')
	case lfReferer:
		return appendLogHeader(b, r.Header["Referer"])
	case lfUserAgent:
		return appendLogHeader(b, r.Header["User-Agent"])
	}
	return b
}

func appendLogHeader(b []byte, v []string) []byte {
	if len(v) == 0 || v[0] == "" {
		return append(b, '-')
	}
	return appendLogEscaped(b, v[0])
}

// appendLogEscaped appends s escaping '"', '\\' and non-printable bytes as
// Apache does (\" \\ \xhh), so client-controlled text cannot forge lines.
func appendLogEscaped[S string | []byte](b []byte, s S) []byte {
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
