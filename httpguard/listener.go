package httpguard

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// NewListener returns ln with every accepted connection a Conn.
func NewListener(ln net.Listener, o Options) net.Listener {
	return &plainListener{Listener: ln, onReject: o.OnReject}
}

type plainListener struct {
	net.Listener
	onReject func(net.Addr, string)
}

func (l *plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewConn(c, l.onReject), nil
}

// closeGrace is how long handshakes still running when a TLS listener is
// closed get to finish (and be handed to Accept): a graceful stop serves
// connections already accepted, a stuck client does not hold it.
const closeGrace = time.Second

// NewTLSListener returns a listener over ln, whose Accept returns
// *tls.Conn (tls.NewListener's), handing out connections whose handshake
// is done: those that negotiated HTTP/2 ("h2" through ALPN) as they are,
// the others as a *TLSConn. net/http recognises TLS, and serves HTTP/2, by
// the *tls.Conn type it gets, so the choice has to be made before Accept
// returns: the handshakes run in goroutines of the listener, bounded by
// o.HandshakeTimeout, and Accept hands out the connections that finished
// theirs. Close stops accepting; the connections still in their handshake
// get closeGrace to finish and are handed out before Accept fails.
func NewTLSListener(ln net.Listener, o Options) net.Listener {
	l := &tlsListener{
		inner:    ln,
		o:        o,
		ready:    make(chan net.Conn),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
		inflight: map[*tls.Conn]struct{}{},
		active:   1, // the accept loop
	}
	go l.acceptLoop()
	return l
}

type tlsListener struct {
	inner    net.Listener
	o        Options
	ready    chan net.Conn // connections done with their handshake
	done     chan struct{} // closed by Close
	finished chan struct{} // closed once nothing more can become ready
	closeOne sync.Once

	mu       sync.Mutex
	closed   bool
	inflight map[*tls.Conn]struct{}
	active   int   // the accept loop and the handshakes still running
	err      error // why the accept loop ended
}

// exit is the end of the accept loop or of a handshake; the last one
// closes finished.
func (l *tlsListener) exit() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active--; l.active == 0 {
		close(l.finished)
	}
}

func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.finished:
	}
	// Closed: a handshake may have finished just before finished was.
	select {
	case c := <-l.ready:
		return c, nil
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return nil, l.err
}

func (l *tlsListener) Close() error {
	var err error
	l.closeOne.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.mu.Lock()
		l.closed = true
		deadline := time.Now().Add(closeGrace)
		for c := range l.inflight {
			_ = c.SetDeadline(deadline)
		}
		l.mu.Unlock()
	})
	return err
}

// acceptLoop accepts until the inner listener fails for good (Close),
// starting a handshake goroutine per connection; each ends with its
// handshake, bounded by HandshakeTimeout and, after Close, closeGrace.
func (l *tlsListener) acceptLoop() {
	defer l.exit()
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// What net/http's Serve does with a temporary error
				// (EMFILE, ...): back off and try again.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-l.done:
				}
			}
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			return
		}
		backoff = 0
		l.mu.Lock()
		l.active++
		l.mu.Unlock()
		go l.handshake(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// handshake finishes c's handshake and hands it to Accept.
func (l *tlsListener) handshake(c net.Conn) {
	defer l.exit()
	tc, ok := c.(*tls.Conn)
	if !ok { // not TLS after all: checked as it is
		l.deliver(NewConn(c, l.o.OnReject))
		return
	}
	l.mu.Lock()
	l.inflight[tc] = struct{}{}
	switch {
	case l.closed:
		_ = tc.SetDeadline(time.Now().Add(closeGrace))
	case l.o.HandshakeTimeout > 0:
		_ = tc.SetDeadline(time.Now().Add(l.o.HandshakeTimeout))
	}
	l.mu.Unlock()
	err := tc.HandshakeContext(context.Background())
	l.mu.Lock()
	delete(l.inflight, tc)
	l.mu.Unlock()
	if err != nil {
		// As net/http does: a client speaking plain HTTP gets a plain
		// 400 telling it so.
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && recordLooksLikeHTTP(re.RecordHeader) {
			_ = re.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			err = errors.New("client sent an HTTP request to an HTTPS server")
		}
		if l.o.OnHandshakeError != nil {
			l.o.OnHandshakeError(c.RemoteAddr(), err)
		}
		_ = tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		l.deliver(tc)
		return
	}
	l.deliver(&TLSConn{Conn: Conn{Conn: tc, onReject: l.o.OnReject}, tls: tc})
}

// deliver hands c to Accept. Once the listener is closed it waits at most
// closeGrace for an Accept (Serve keeps calling it until it fails), then
// closes c.
func (l *tlsListener) deliver(c net.Conn) {
	select {
	case l.ready <- c:
		return
	case <-l.done:
	}
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case l.ready <- c:
	case <-t.C:
		_ = c.Close()
	}
}

func recordLooksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}
