package pipeline

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// transloggerFactory writes an access log line per request, like Paste's
// paste.translogger (Apache combined format by default).
func transloggerFactory() Factory {
	return Filter("access log in Apache combined/common format (Paste's translogger)", newTranslogger)
}

type translogger struct {
	mu       sync.Mutex // serialises writes so lines never interleave
	out      io.Writer
	combined bool
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

func newTranslogger(c *Config) (Middleware, error) {
	// Paste's options for its logging-module plumbing; output goes
	// straight to a writer here.
	catAcceptOptions(c, "logger_name", "setup_console_handler", "set_logger_level")
	t := &translogger{now: time.Now}
	switch format := strings.ToLower(strings.TrimSpace(c.String("format", "combined"))); format {
	case "combined", "":
		t.combined = true
	case "common":
	default:
		return nil, c.Errorf("format", "format: want combined or common, got %q", format)
	}
	switch out := strings.TrimSpace(c.String("output", "stderr")); out {
	case "-", "stderr", "":
		t.out = os.Stderr
	case "stdout":
		t.out = os.Stdout
	case "discard", "none":
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

	// %h: the peer address without port (what Paste's REMOTE_ADDR holds).
	if host, _, ok := catSplitHostPort(r.RemoteAddr); ok && host != "" {
		b = append(b, host...)
	} else if r.RemoteAddr != "" {
		b = appendLogEscaped(b, r.RemoteAddr)
	} else {
		b = append(b, '-')
	}
	// %l and %u: identd is never used; Go has no REMOTE_USER.
	b = append(b, " - - ["...)
	b = t.appendStamp(b, start)
	b = append(b, "] \""...)
	b = appendLogEscaped(b, r.Method)
	b = append(b, ' ')
	if r.RequestURI != "" {
		b = appendLogEscaped(b, r.RequestURI)
	} else {
		b = appendLogEscaped(b, r.URL.RequestURI())
	}
	b = append(b, ' ')
	b = appendLogEscaped(b, r.Proto)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if n > 0 {
		b = strconv.AppendInt(b, n, 10)
	} else {
		b = append(b, '-')
	}
	if t.combined {
		b = append(b, " \""...)
		b = appendLogHeader(b, r.Header["Referer"])
		b = append(b, "\" \""...)
		b = appendLogHeader(b, r.Header["User-Agent"])
		b = append(b, '"')
	}
	b = append(b, '\n')

	t.mu.Lock()
	_, _ = t.out.Write(b)
	t.mu.Unlock()

	// Do not keep buffers grown by a giant request line.
	if cap(b) <= 64<<10 {
		*bp = b
		logBufPool.Put(bp)
	}
}

func appendLogHeader(b []byte, v []string) []byte {
	if len(v) == 0 || v[0] == "" {
		return append(b, '-')
	}
	return appendLogEscaped(b, v[0])
}

// appendLogEscaped appends s escaping '"', '\\' and non-printable bytes as
// Apache does (\" \\ \xhh), so client-controlled text cannot forge lines.
func appendLogEscaped(b []byte, s string) []byte {
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
