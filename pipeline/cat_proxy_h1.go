package pipeline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"syscall"
	"time"
)

// h1Pool is the HTTP/1.1 connection pool of one plain-http upstream, for
// the requests that make up most proxy traffic: no body, no upgrade.
//
// Why not http.Transport for these: it runs a reader and a writer
// goroutine per connection and hands every request and response between
// them and the caller over channels: on a busy box about a quarter of
// the proxy's CPU per request (53 against 38 µs in a wrk -c64 run). Here the caller's goroutine writes the
// request and reads the response itself, and the connection goes back to
// the pool when the response body has been read to its end.
//
// Keep-alive hazards, handled as the standard transport does:
//   - an idle connection the upstream closed is noticed when it answers
//     nothing (EOF before the first byte): an idempotent request is sent
//     again on another connection; before reusing a connection for a
//     request that is not, or one idle for more than a second, the pool
//     peeks at the socket (recv MSG_PEEK|MSG_DONTWAIT) and drops it if
//     the upstream has closed it or sent something unasked;
//   - a response that is not read to its end, is delimited by the end of
//     the connection, carries Connection: close or leaves bytes behind
//     closes the connection instead of reusing it;
//   - the client going away closes the connection (context.AfterFunc),
//     which ends a blocked read.
type h1Pool struct {
	up            *upstream
	addr          string
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle       int
	idleTimeout   time.Duration // 0: no limit
	headerTimeout time.Duration // 0: no limit

	mu     sync.Mutex
	idle   []*h1Conn // the most recently used last
	closed bool
}

// h1Conn is one connection to the upstream.
type h1Conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

// h1LivenessAge is how long a connection may sit idle before the pool
// checks that the upstream has not closed it.
const h1LivenessAge = time.Second

// h1Max1xx bounds the informational responses before the final one (as
// net/http).
const h1Max1xx = 5

// h1Eligible reports whether r can use the HTTP/1.1 pool: no body, no
// protocol upgrade (the ReverseProxy keeps Upgrade only for those), not
// CONNECT.
func h1Eligible(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	if r.Method == http.MethodConnect {
		return false
	}
	_, upgrade := r.Header["Upgrade"]
	return !upgrade
}

// errNoResponse wraps a failure before any byte of the response arrived.
var errNoResponse = errors.New("upstream closed the connection without a response")

// roundTrip sends r on a pooled (or new) connection and reads the
// response head. The response body, unless http.NoBody, is an *h1Body
// that returns the connection to the pool (and releases the upstream's
// slot) when closed.
func (p *h1Pool) roundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	replayable := idempotent(r)
	for {
		pc, reused, err := p.get(ctx, !replayable)
		if err != nil {
			return nil, err
		}
		resp, err := p.exchange(ctx, pc, r)
		if err == nil {
			return resp, nil
		}
		// A connection from the pool that answered nothing was most
		// likely closed by the upstream while idle: send an
		// idempotent request again on another one.
		if reused && replayable && errors.Is(err, errNoResponse) && ctx.Err() == nil {
			continue
		}
		return nil, err
	}
}

// get returns an idle connection (reused) or dials one.
func (p *h1Pool) get(ctx context.Context, mustBeAlive bool) (*h1Conn, bool, error) {
	now := time.Now()
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		pc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		idle := now.Sub(pc.idleAt)
		switch {
		case p.idleTimeout > 0 && idle > p.idleTimeout:
			pc.nc.Close()
		case (mustBeAlive || idle > h1LivenessAge) && !pc.alive():
			pc.nc.Close()
		default:
			return pc, true, nil
		}
		p.mu.Lock()
	}
	p.mu.Unlock()
	nc, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	return &h1Conn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, false, nil
}

// put returns a connection whose response was read to its end.
func (p *h1Pool) put(pc *h1Conn) {
	if pc.br.Buffered() > 0 { // bytes nobody asked for: out of sync
		pc.nc.Close()
		return
	}
	pc.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		pc.nc.Close()
		return
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// reap closes the connections idle for longer than idle_conn_timeout.
func (p *h1Pool) reap(now time.Time) {
	if p.idleTimeout <= 0 {
		return
	}
	var stale []*h1Conn
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].idleAt) > p.idleTimeout {
		i++
	}
	if i > 0 {
		stale = append(stale, p.idle[:i]...)
		n := copy(p.idle, p.idle[i:])
		clear(p.idle[n:])
		p.idle = p.idle[:n]
	}
	p.mu.Unlock()
	for _, pc := range stale {
		pc.nc.Close()
	}
}

// closeIdle closes every idle connection and makes put close the ones
// still in use when they come back (the pipeline is closed).
func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, pc := range idle {
		pc.nc.Close()
	}
}

// idleCount is the number of pooled connections (tests).
func (p *h1Pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// alive peeks at an idle connection without blocking: the upstream may
// have closed it (EOF), or written to it unasked (a 408 before closing).
func (pc *h1Conn) alive() bool {
	if pc.br.Buffered() > 0 {
		return false
	}
	sc, ok := pc.nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && (rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK || rerr == syscall.EINTR)
		return true // never wait for readability
	})
	return err == nil && alive
}

// exchange writes r on pc and reads the response head. On error pc is
// closed.
func (p *h1Pool) exchange(ctx context.Context, pc *h1Conn, r *http.Request) (*http.Response, error) {
	// The client going away (or the request's deadline) closes the
	// connection: a blocked read or write returns at once.
	stop := context.AfterFunc(ctx, func() { pc.nc.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.nc.Close()
		return nil, err
	}
	if err := r.Write(pc.bw); err != nil {
		return fail(fmt.Errorf("write request: %w", err))
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(fmt.Errorf("%w: write request: %w", errNoResponse, err))
	}
	if p.headerTimeout > 0 {
		if err := pc.nc.SetReadDeadline(time.Now().Add(p.headerTimeout)); err != nil {
			return fail(fmt.Errorf("set response header deadline: %w", err))
		}
	}
	if _, err := pc.br.Peek(1); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return fail(fmt.Errorf("timeout awaiting response headers: %w", err))
		}
		return fail(fmt.Errorf("%w: %w", errNoResponse, err))
	}
	var resp *http.Response
	for n1xx := 0; ; n1xx++ {
		var err error
		resp, err = http.ReadResponse(pc.br, r)
		if err != nil {
			return fail(fmt.Errorf("read response: %w", err))
		}
		if resp.StatusCode >= 200 {
			break
		}
		if resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode < 100 {
			return fail(fmt.Errorf("malformed response: status %d to a request without Upgrade", resp.StatusCode))
		}
		if n1xx >= h1Max1xx {
			return fail(errors.New("malformed response: too many 1xx responses"))
		}
		// 100 Continue, 103 Early Hints: the ReverseProxy passes them
		// on through its client trace.
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	if p.headerTimeout > 0 {
		if err := pc.nc.SetReadDeadline(time.Time{}); err != nil {
			return fail(fmt.Errorf("clear response header deadline: %w", err))
		}
	}
	reusable := !resp.Close && !r.Close
	if resp.Body == http.NoBody {
		if stop() && reusable {
			p.put(pc)
		} else {
			pc.nc.Close()
		}
		return resp, nil
	}
	resp.Body = &h1Body{rc: resp.Body, pool: p, pc: pc, stop: stop, reusable: reusable}
	return resp, nil
}

// h1Body is a response body on a pooled connection: read to its end and
// closed, the connection goes back to the pool; closed early, it is
// closed. Either way the upstream's slot is released on Close.
type h1Body struct {
	rc       io.ReadCloser
	pool     *h1Pool
	pc       *h1Conn
	stop     func() bool
	reusable bool
	eof      bool
	done     bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.ErrClosedPipe
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	if b.stop() && b.eof && b.reusable {
		b.pool.put(b.pc)
	} else {
		// Close the connection first: closing net/http's body reader
		// early would read the rest of the body to discard it.
		b.pc.nc.Close()
		_ = b.rc.Close()
	}
	b.pool.up.release()
	return nil
}
