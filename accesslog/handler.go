package accesslog

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
)

// Wrap returns a handler that serves next and logs one line per request
// once next returns. The ResponseWriter next gets records the status and
// the body bytes and passes everything else through (see responseWriter):
// the response is the one next writes, byte for byte.
func (l *Logger) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := l.now()
		rw := rwPool.Get().(*responseWriter)
		rw.w = w
		completed := false
		defer func() {
			status := rw.status
			if !rw.wrote {
				// net/http sends 200 for a handler that returns without
				// writing; one that panicked gets its connection closed
				// (or a 500 from a filter further out): logged as 500.
				status = http.StatusOK
				if !completed {
					status = http.StatusInternalServerError
				}
			}
			e := Entry{Request: r, Start: start, Duration: durationOf(start, l.now()), Status: status, Bytes: rw.bytes, Header: w.Header()}
			l.Log(&e)
			*rw = responseWriter{}
			rwPool.Put(rw)
		}()
		next.ServeHTTP(rw, r)
		completed = true
	})
}

// rwPool recycles responseWriters: net/http forbids using a
// ResponseWriter after ServeHTTP returns, which makes reuse safe.
var rwPool = sync.Pool{New: func() any { return new(responseWriter) }}

// responseWriter records the status and body size of a response and
// delegates everything else. It implements http.Flusher, the
// FlushError of http.ResponseController, http.Hijacker, http.Pusher and
// io.ReaderFrom (net/http's sendfile path) by delegating, and Unwrap for
// http.ResponseController (SetReadDeadline, SetWriteDeadline,
// EnableFullDuplex reach the server's writer).
type responseWriter struct {
	w      http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

var (
	_ http.Flusher  = (*responseWriter)(nil)
	_ http.Hijacker = (*responseWriter)(nil)
	_ http.Pusher   = (*responseWriter)(nil)
	_ io.ReaderFrom = (*responseWriter)(nil)
)

func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

func (rw *responseWriter) WriteHeader(code int) {
	if !rw.wrote {
		// 1xx informational responses (but 101) do not commit the
		// final header.
		if code < 100 || code >= 200 || code == http.StatusSwitchingProtocols {
			rw.wrote = true
			rw.status = code
		}
	}
	rw.w.WriteHeader(code)
}

func (rw *responseWriter) commit() {
	if !rw.wrote {
		rw.wrote = true
		rw.status = http.StatusOK
	}
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	rw.commit()
	n, err := rw.w.Write(p)
	rw.bytes += int64(n)
	return n, err
}

// ReadFrom keeps net/http's sendfile path for io.Copy(w, file).
func (rw *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	rw.commit()
	var n int64
	var err error
	if rf, ok := rw.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{rw.w}, src)
	}
	rw.bytes += n
	return n, err
}

// writerOnly hides everything but Write, so io.Copy cannot loop back
// into ReadFrom.
type writerOnly struct{ io.Writer }

func (rw *responseWriter) Flush() { _ = rw.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (rw *responseWriter) FlushError() error {
	rw.commit()
	return http.NewResponseController(rw.w).Flush()
}

func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(rw.w).Hijack()
	if err == nil && !rw.wrote {
		rw.wrote = true
		rw.status = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

func (rw *responseWriter) Push(target string, opts *http.PushOptions) error {
	if p, ok := rw.w.(http.Pusher); ok {
		return p.Push(target, opts)
	}
	return http.ErrNotSupported
}

// Unwrap lets http.ResponseController reach the server's writer.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }
