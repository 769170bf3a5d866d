package worker

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Slow and greedy clients. What bounds each (issue 8):
//
//   - a request head sent slowly (slowloris), or a connection that sends
//     nothing: timeout (http.Server.ReadHeaderTimeout, newHTTPServer);
//   - an idle keep-alive connection: keepalive (IdleTimeout);
//   - a request body that stops coming: client_body_timeout, per read
//     (bodyTimeout below);
//   - a client that stops reading its response: send_timeout, per write
//     (clientConn.Write below);
//   - how many of them a worker holds at once: worker_connections
//     (clientListener below).
//
// The two per-operation timeouts are nginx's (client_body_timeout,
// send_timeout): they bound a pause, not a whole request, so a long
// upload or download from a slow but steady client is never cut. A
// client trickling one byte at a time faster than the timeout is not cut
// either; what bounds it is worker_connections (it holds one slot) and
// the small cost of an idle connection (a goroutine and an fd).

// limitClients returns ln with at most s.WorkerConnections accepted
// connections open at once and every write bounded by s.SendTimeout (ln
// itself when both are off). It must wrap the raw socket, below the PROXY
// reader and TLS: net/http recognises TLS by the *tls.Conn it gets, and
// the per-write deadline must see the bytes as the socket takes them.
//
// It is netutil.LimitListener's semaphore, not netutil itself: that
// package's connection type hides the socket's CloseWrite (net/http's
// half-close before closing a connection it answered with an error, so
// the client reads the answer instead of a reset) and ReadFrom
// (sendfile), and it would need its own wrapper under this one anyway.
func limitClients(ln net.Listener, s *Settings) net.Listener {
	if s.WorkerConnections <= 0 && s.SendTimeout <= 0 {
		return ln
	}
	l := &clientListener{Listener: ln, sendTimeout: s.SendTimeout, done: make(chan struct{})}
	if s.WorkerConnections > 0 {
		l.sem = make(chan struct{}, s.WorkerConnections)
	}
	return l
}

// clientListener holds a slot of sem for each open connection. At the
// limit it stops accepting: new connections wait in the kernel's listen
// queue (backlog) until one closes or, with several workers on the same
// socket, another worker accepts them. Queueing rather than refusing is
// deliberate: a refused connection is a failed request, while a queued
// one is served by the first worker with room (or refused by the kernel
// once the queue is full).
type clientListener struct {
	net.Listener
	sem         chan struct{} // nil: no limit
	sendTimeout time.Duration // 0: writes without a deadline of ours
	closeOnce   sync.Once
	done        chan struct{} // closed by Close: a waiting Accept returns
}

func (l *clientListener) Accept() (net.Conn, error) {
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			// Closed while waiting for a slot: the socket's Accept now
			// fails at once with net.ErrClosed, which Serve expects.
			for {
				c, err := l.Listener.Accept()
				if err != nil {
					return nil, err
				}
				c.Close()
			}
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.release()
		return nil, err
	}
	return &clientConn{Conn: c, l: l}, nil
}

func (l *clientListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

func (l *clientListener) release() {
	if l.sem != nil {
		<-l.sem
	}
}

// clientConn is an accepted connection holding a slot of its listener.
// Writes make progress or fail: each waits at most sendTimeout for the
// client to take a byte, and a write that moved some bytes before its
// deadline goes on with a fresh one (the progress rule of HTTP/2's
// WriteByteTimeout, here for HTTP/1 and HTTP/2 alike). A deadline set
// from outside (net/http's TLS handshake deadline, an app's
// ResponseController.SetWriteDeadline) still applies as a hard limit.
type clientConn struct {
	net.Conn
	l        *clientListener
	released atomic.Bool
	external atomic.Int64 // write deadline set through SetDeadline/SetWriteDeadline, unix ns; 0: none
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	if c.released.CompareAndSwap(false, true) {
		c.l.release()
	}
	return err
}

func (c *clientConn) SetDeadline(t time.Time) error {
	c.setExternal(t)
	return c.Conn.SetDeadline(t)
}

func (c *clientConn) SetWriteDeadline(t time.Time) error {
	c.setExternal(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *clientConn) setExternal(t time.Time) {
	if t.IsZero() {
		c.external.Store(0)
		return
	}
	c.external.Store(t.UnixNano())
}

// arm sets the next write's deadline: step from now, or the external
// deadline when that comes first. It reports false when the external
// deadline has passed (the write must not be retried).
func (c *clientConn) arm(step time.Duration) (bool, error) {
	now := time.Now()
	dl := now.Add(step)
	if ext := c.external.Load(); ext != 0 {
		if e := time.Unix(0, ext); e.Before(dl) {
			if !e.After(now) {
				return false, nil
			}
			dl = e
		}
	}
	return true, c.Conn.SetWriteDeadline(dl)
}

// progress runs op (a write of the rest) until it is done, fails for
// another reason than its deadline, or has moved nothing for
// sendTimeout. It waits in steps of a quarter of sendTimeout: a write cut
// by its deadline says how much it moved, not when, so the client is cut
// between sendTimeout and 1.25 sendTimeout after the last byte it took
// (with one deadline of sendTimeout, up to twice that).
func (c *clientConn) progress(op func() (int64, error)) (int64, error) {
	d := c.l.sendTimeout
	step := max(d/4, time.Millisecond)
	var total int64
	last := time.Now()
	for {
		ok, err := c.arm(step)
		if err != nil {
			return total, err
		}
		n, err := op()
		total += n
		if err == nil || !ok || !errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
		if now := time.Now(); n > 0 {
			last = now
		} else if now.Sub(last) >= d {
			return total, err
		}
	}
}

func (c *clientConn) Write(p []byte) (int, error) {
	if c.l.sendTimeout <= 0 {
		return c.Conn.Write(p)
	}
	off := 0
	n, err := c.progress(func() (int64, error) {
		m, err := c.Conn.Write(p[off:])
		off += m
		return int64(m), err
	})
	return int(n), err
}

// ReadFrom keeps sendfile for files (http.ServeContent reaches it
// through net/http's response.ReadFrom). A sendfile cut by its deadline
// can go on where it stopped (the kernel advanced the file's offset,
// net the LimitedReader's N); a generic copy could not (the bytes it
// read but did not write would be lost), so other readers go through
// Write.
func (c *clientConn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok || (c.l.sendTimeout > 0 && !isFile(r)) {
		return io.Copy(writerOnly{c}, r)
	}
	if c.l.sendTimeout <= 0 {
		return rf.ReadFrom(r)
	}
	return c.progress(func() (int64, error) { return rf.ReadFrom(r) })
}

// CloseWrite half-closes the socket, for net/http's close after an error
// answer (the embedded net.Conn does not expose it).
func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func isFile(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	_, ok := r.(*os.File)
	return ok
}

// writerOnly hides clientConn's ReadFrom from io.Copy (which would call
// it back).
type writerOnly struct{ io.Writer }

// bodyTimeout bounds each read of a request body by d
// (client_body_timeout): the connection's read deadline is moved to d
// from now before every read, so the handler's read (or net/http's
// discard of a body the handler left) fails once the client has sent
// nothing for d. It is done here, through http.ResponseController, and
// not in clientConn: only the handler knows when a body is being read,
// and net/http sets the connection's read deadline itself for the head
// (timeout), the idle wait (keepalive) and its background read, which a
// per-read deadline in the connection would override.
//
// On HTTP/1 the deadline is set when the handler starts too, so a body
// the handler never reads is bounded while net/http discards it (that
// read does not go through Body). HTTP/2 has per-stream deadlines: only
// reads set it there (an expired one closes the stream's body, which a
// handler that reads late would then find closed).
func bodyTimeout(next http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if r.ProtoMajor == 1 {
			if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
				next.ServeHTTP(w, r) // a writer without deadlines (tests)
				return
			}
		}
		// A copy: net/http keeps the original request and type-switches
		// on its Body to decide how to discard what is left of it.
		r2 := new(http.Request)
		*r2 = *r
		r2.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, d: d}
		next.ServeHTTP(w, r2)
	})
}

// deadlineBody moves the read deadline before each read. After the last
// one net/http's background read takes over the connection and clears
// the deadline itself; clearing it here too could race its
// abortPendingRead.
type deadlineBody struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.d)) // supported: checked when it was made
	return b.ReadCloser.Read(p)
}

// checkNofile warns when worker_connections cannot be reached: past the
// open-file limit accept fails with EMFILE (net/http logs it and retries)
// instead of the connection waiting in the listen queue. The Go runtime
// has already raised the soft limit to the hard one in every process
// (Go 1.19+; os/exec restores the original for children, and a worker,
// being Go too, raises it again), so only the hard limit matters here
// (systemd: LimitNOFILE=).
func checkNofile(s *Settings, log hclog.Logger) {
	if s.WorkerConnections <= 0 {
		return
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		log.Debug("cannot read the open-file limit", "error", err)
		return
	}
	// Room for the listeners, logs, upstream connections of the app.
	const headroom = 64
	if lim.Cur < uint64(s.WorkerConnections)+headroom {
		log.Warn("worker_connections is above the open-file limit; past it accept fails with EMFILE instead of connections waiting in the listen queue",
			"worker_connections", s.WorkerConnections, "nofile_soft", lim.Cur, "nofile_hard", lim.Max)
	}
}
