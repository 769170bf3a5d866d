package pipeline

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// timeoutFactory gives each request a deadline, like http.TimeoutHandler
// but without buffering the response: the inner handler writes straight
// to the client, so streaming works.
func timeoutFactory() Factory {
	return Filter("per-request deadline: 503 (or 504) when the app has not answered in time, abort when it has started", newTimeout)
}

const timeoutDefault = 30 * time.Second

type timeoutFilter struct {
	d      time.Duration
	status int
	body   string
}

func newTimeout(c *Config) (Middleware, error) {
	d, err := c.Duration("timeout", timeoutDefault)
	if err != nil {
		return nil, err
	}
	if d <= 0 {
		return nil, c.Errorf("timeout", "timeout: must be more than 0")
	}
	status, err := c.Int("status", http.StatusServiceUnavailable)
	if err != nil {
		return nil, err
	}
	if status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout {
		return nil, c.Errorf("status", "status: want 503 or 504, got %d", status)
	}
	body := c.String("message", "")
	if body == "" {
		body = strings.TrimSpace(http.StatusText(status)) + ": the request took too long.\n"
	} else if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	f := &timeoutFilter{d: d, status: status, body: body}
	return f.wrap, nil
}

func (f *timeoutFilter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) {
			// A WebSocket (or other upgraded) connection lives as long as
			// it lives; its context must not be cancelled under it.
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), f.d)
		defer cancel()
		tw := &timeoutWriter{w: w, h: cloneHeader(w.Header()), done: make(chan any, 1), ctx: ctx}
		r2 := r.WithContext(ctx)
		go func() {
			defer func() {
				// A panic travels to the serving goroutine, where
				// catch_errors and net/http expect it.
				p := recover()
				tw.mu.Lock()
				tw.finished = true
				tw.mu.Unlock()
				tw.done <- p
			}()
			next.ServeHTTP(tw, r2)
		}()
		select {
		case p := <-tw.done:
			if p != nil {
				panic(p)
			}
			tw.mu.Lock()
			late := !tw.started && !tw.hijacked && tw.expired()
			tw.mu.Unlock()
			if !late {
				tw.copyTrailers()
				return
			}
			// It returned without an answer after the deadline (a
			// handler that gave up when its context ended).
			catWriteText(w, f.status, f.body)
			return
		case <-ctx.Done():
		}
		if r.Context().Err() != nil {
			// The client went away (or the server is shutting down):
			// nobody is there to read an answer.
			tw.abandon()
			panic(http.ErrAbortHandler)
		}
		interrupted := tw.lockOrInterrupt()
		if tw.finished && tw.started && !tw.timedOut && !interrupted {
			// It ended just now, with its answer written before the
			// deadline: that answer stands.
			tw.mu.Unlock()
			if p := <-tw.done; p != nil {
				panic(p)
			}
			tw.copyTrailers()
			return
		}
		tw.timedOut = true
		started := tw.started
		tw.mu.Unlock()
		if started || interrupted {
			// Part of the answer is on the wire: cut the connection so
			// the client sees the truncation.
			panic(http.ErrAbortHandler)
		}
		catWriteText(w, f.status, f.body)
	})
}

// isUpgrade reports whether r asks for a protocol upgrade (WebSocket).
func isUpgrade(r *http.Request) bool {
	if len(r.Header["Upgrade"]) == 0 {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// timeoutWriter is the inner handler's writer. The handler runs on its
// own goroutine; mu serialises its writes with the timeout's decision, so
// once the serving goroutine has timed out nothing the handler does
// reaches the real writer. The handler gets its own header map until it
// commits the header: the timeout answer is written with the real one.
type timeoutWriter struct {
	w    http.ResponseWriter
	h    http.Header
	done chan any        // the handler returned (with its panic value)
	ctx  context.Context // the request's, with the deadline

	mu       sync.Mutex
	writing  atomic.Bool // a write to the client is under way (mu is held)
	started  bool        // the final header was written
	timedOut bool
	finished bool
	hijacked bool
}

// Header is the handler's own map: only the handler's goroutine uses it.
func (tw *timeoutWriter) Header() http.Header { return tw.h }

// expired reports, before the header is committed, whether the deadline
// has passed: then the handler's answer (often its reaction to the
// cancelled context, such as proxy's 502) gives way to the timeout's.
// mu is held.
func (tw *timeoutWriter) expired() bool {
	if !tw.timedOut && errors.Is(tw.ctx.Err(), context.DeadlineExceeded) {
		tw.timedOut = true
	}
	return tw.timedOut
}

// commitHeader copies the handler's header into the real one. mu is held.
func (tw *timeoutWriter) commitHeader() {
	dst := tw.w.Header()
	clear(dst)
	for k, v := range tw.h {
		dst[k] = v[:len(v):len(v)]
	}
}

// copyTrailers copies the trailer values the handler set after the header
// was written (keys declared in Trailer, or with http.TrailerPrefix) into
// the real header map, where net/http looks for them after the handler
// returned. Called on the serving goroutine once the handler finished.
func (tw *timeoutWriter) copyTrailers() {
	if !tw.started || tw.hijacked {
		return
	}
	dst := tw.w.Header()
	for k, v := range tw.h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			dst[k] = v
		}
	}
	for _, decl := range tw.h["Trailer"] {
		for decl != "" {
			var k string
			k, decl, _ = strings.Cut(decl, ",")
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if v, ok := tw.h[k]; ok {
				dst[k] = v
			}
		}
	}
}

// cloneHeader copies h with cap-limited value slices, so appends on
// either side never write into the other's arrays.
func cloneHeader(h http.Header) http.Header {
	out := make(http.Header, len(h)+4)
	for k, v := range h {
		out[k] = v[:len(v):len(v)]
	}
	return out
}

func (tw *timeoutWriter) WriteHeader(code int) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.timedOut || tw.hijacked {
		return
	}
	if tw.started {
		tw.w.WriteHeader(code) // net/http reports the superfluous call
		return
	}
	if tw.expired() {
		return
	}
	tw.commitHeader()
	if code < 100 || code >= 200 || code == http.StatusSwitchingProtocols {
		tw.started = true
		tw.w.WriteHeader(code) // buffered: nothing is sent yet
		return
	}
	tw.write(func() { tw.w.WriteHeader(code) }) // 1xx: sent at once
}

func (tw *timeoutWriter) Write(p []byte) (int, error) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.timedOut {
		return 0, http.ErrHandlerTimeout
	}
	if tw.hijacked {
		return 0, http.ErrHijacked
	}
	if !tw.started {
		if tw.expired() {
			return 0, http.ErrHandlerTimeout
		}
		tw.commitHeader()
		tw.started = true
	}
	tw.writing.Store(true)
	defer tw.writing.Store(false)
	return tw.w.Write(p)
}

// ReadFrom copies in chunks, each written under the lock, so a slow
// source never holds the lock (and the timeout) up. The sendfile path is
// given up: the copy must stay interruptible.
func (tw *timeoutWriter) ReadFrom(src io.Reader) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	return io.CopyBuffer(writerOnly{tw}, src, *bp)
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (tw *timeoutWriter) Flush() {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.timedOut || tw.hijacked {
		return
	}
	if !tw.started {
		if tw.expired() {
			return
		}
		tw.commitHeader()
		tw.started = true
	}
	tw.write(func() { _ = http.NewResponseController(tw.w).Flush() })
}

// FlushError is http.ResponseController's Flush.
func (tw *timeoutWriter) FlushError() error {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.timedOut {
		return http.ErrHandlerTimeout
	}
	if tw.hijacked {
		return http.ErrHijacked
	}
	if !tw.started {
		if tw.expired() {
			return http.ErrHandlerTimeout
		}
		tw.commitHeader()
		tw.started = true
	}
	var err error
	tw.write(func() { err = http.NewResponseController(tw.w).Flush() })
	return err
}

// Hijack hands the connection over; the deadline still ends the
// request's context (use no timeout in front of long-lived connections,
// or let them ask for an Upgrade, which is exempt).
func (tw *timeoutWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.timedOut || (!tw.started && tw.expired()) {
		return nil, nil, http.ErrHandlerTimeout
	}
	conn, rw, err := http.NewResponseController(tw.w).Hijack()
	if err == nil {
		tw.hijacked = true
		tw.started = true
	}
	return conn, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer
// (SetReadDeadline, SetWriteDeadline, EnableFullDuplex).
func (tw *timeoutWriter) Unwrap() http.ResponseWriter { return tw.w }

// abandon makes sure the handler no longer touches the real writer.
func (tw *timeoutWriter) abandon() {
	tw.lockOrInterrupt()
	tw.timedOut = true
	tw.mu.Unlock()
}

// lockOrInterrupt takes mu for the serving goroutine. The handler holds
// it briefly, except in a write to the client, which a slow client can
// block for long: that write is interrupted with a past write deadline,
// and interrupted is true (the connection must then be aborted).
func (tw *timeoutWriter) lockOrInterrupt() (interrupted bool) {
	for !tw.mu.TryLock() {
		if tw.writing.Load() {
			_ = http.NewResponseController(tw.w).SetWriteDeadline(time.Now())
			tw.mu.Lock()
			return true
		}
		time.Sleep(50 * time.Microsecond)
	}
	return false
}

// write runs fn, a call that writes to the client, marked as such for
// lockOrInterrupt. mu is held.
func (tw *timeoutWriter) write(fn func()) {
	tw.writing.Store(true)
	fn()
	tw.writing.Store(false)
}
