package pipeline

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
)

// statusWriter wraps a ResponseWriter to record the status code, whether
// the header was committed and how many body bytes were written. It is
// pooled (see getStatusWriter) so filters that only observe the response
// (catch_errors, translogger) allocate nothing per request.
//
// It implements http.Flusher, http.Hijacker and io.ReaderFrom by
// delegating, and Unwrap for http.ResponseController, so wrapping does not
// hide streaming, websockets or sendfile from the handlers inside.
type statusWriter struct {
	w      http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

var statusWriterPool = sync.Pool{New: func() any { return new(statusWriter) }}

func getStatusWriter(w http.ResponseWriter) *statusWriter {
	sw := statusWriterPool.Get().(*statusWriter)
	*sw = statusWriter{w: w}
	return sw
}

// putStatusWriter returns sw to the pool. The handler must have returned:
// net/http forbids using a ResponseWriter after ServeHTTP returns, which is
// what makes reuse safe.
func putStatusWriter(sw *statusWriter) {
	*sw = statusWriter{}
	statusWriterPool.Put(sw)
}

func (sw *statusWriter) Header() http.Header { return sw.w.Header() }

func (sw *statusWriter) WriteHeader(code int) {
	if !sw.wrote {
		// 1xx informational responses (except 101 Switching Protocols)
		// do not commit the final header.
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			sw.w.WriteHeader(code)
			return
		}
		sw.wrote = true
		sw.status = code
	}
	sw.w.WriteHeader(code)
}

func (sw *statusWriter) Write(p []byte) (int, error) {
	if !sw.wrote {
		sw.wrote = true
		sw.status = http.StatusOK
	}
	n, err := sw.w.Write(p)
	sw.bytes += int64(n)
	return n, err
}

// ReadFrom keeps net/http's sendfile path for io.Copy(w, file).
func (sw *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if !sw.wrote {
		sw.wrote = true
		sw.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := sw.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(sw.w, src)
	}
	sw.bytes += n
	return n, err
}

func (sw *statusWriter) Flush() {
	if !sw.wrote {
		sw.wrote = true
		sw.status = http.StatusOK
	}
	if f, ok := sw.w.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(sw.w).Flush()
}

func (sw *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(sw.w).Hijack()
	if err == nil && !sw.wrote {
		sw.wrote = true
		sw.status = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer
// (SetReadDeadline, EnableFullDuplex, ...).
func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.w }
