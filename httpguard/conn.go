// Package httpguard validates the raw bytes of HTTP/1.x request heads on a
// server connection before net/http parses them.
//
// net/http is lenient where a front server must not be: it takes a bare LF
// as a line end, joins obs-fold lines, lets Transfer-Encoding override
// Content-Length, accepts chunked in HTTP/1.0 and forbidden trailer fields.
// Each is a way for two parsers (a proxy in front and this server) to see
// different requests in the same bytes (request smuggling). A Conn follows
// the HTTP/1 framing of what the client sends and refuses a request head
// that breaks one of these rules with a 400 of its own, before net/http
// has the whole head: the request never reaches a handler.
//
// What is refused, in a head: a line not ending in CRLF (bare LF or bare
// CR), obs-fold, a field name with a non-token character or whitespace
// before the colon, a Content-Length that is not digits or that differs
// from another, Content-Length together with Transfer-Encoding, chunked
// that is not the last coding or appears twice, Transfer-Encoding in
// HTTP/1.0, a "*" target on a method other than OPTIONS, an authority-form
// target on a method other than CONNECT, and Content-Type given twice. In a
// chunked body: chunk-size lines and chunk ends that are not exactly CRLF,
// sizes that are not hex, and trailer fields RFC 9110 §6.5.1 keeps out of
// trailers (Content-Length, Host, Transfer-Encoding, ...). Everything else
// (methods, targets, versions, field values, limits) is left to net/http.
//
// The bytes net/http reads are exactly the bytes the client sent; the
// guard only withholds those from a violation on. It stops looking after
// the HTTP/2 preface, and while an Upgrade or CONNECT request may have
// switched protocols (see Release).
package httpguard

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// ErrRejected is wrapped by the error a Conn's Read returns once it has
// refused a request.
var ErrRejected = errors.New("httpguard: request rejected")

// How long the guard's own answer may take to write, and how long it waits
// for the client to close after it (so closing with unread input does not
// reset the connection before the client read the answer, as net/http's
// closeWriteAndWait does), reading at most lingerMax bytes meanwhile.
const (
	writeTimeout = 2 * time.Second
	lingerTime   = 500 * time.Millisecond
	lingerMax    = 64 << 10
)

// Options configure NewListener and NewTLSListener.
type Options struct {
	// HandshakeTimeout bounds a TLS handshake (NewTLSListener); 0: no
	// limit.
	HandshakeTimeout time.Duration
	// OnReject, if set, is told of each refused request: the client's
	// address and why.
	OnReject func(remote net.Addr, reason string)
	// OnHandshakeError, if set, is told of each failed TLS handshake.
	OnHandshakeError func(remote net.Addr, err error)
}

// Conn is a server connection whose reads are checked (see the package
// documentation). net/http must be the one reading it.
type Conn struct {
	net.Conn
	p        parser
	onReject func(net.Addr, string)
	released atomic.Bool
	// stash holds bytes read past an Upgrade or CONNECT request, until it
	// is known whether they are a new protocol's or the next request's.
	stash []byte
	err   error // sticky, once a request was refused
}

// NewConn returns c with its reads checked; onReject may be nil.
func NewConn(c net.Conn, onReject func(remote net.Addr, reason string)) *Conn {
	return &Conn{Conn: c, onReject: onReject}
}

// Release stops checking c, if it is a connection of this package: call
// it when net/http hands the connection over (http.StateHijacked), since
// whatever the handler speaks on it next is not the guard's business. It
// is safe to call from another goroutine than the reading one.
func Release(c net.Conn) {
	switch g := c.(type) {
	case *Conn:
		g.released.Store(true)
	case *TLSConn:
		g.released.Store(true)
	}
}

// Read reads from the connection, delivering bytes up to the first
// violation. At the violation it answers 400 itself, then returns an error
// net/http takes for a failed read (it closes the connection without
// answering again).
func (c *Conn) Read(b []byte) (int, error) {
	for {
		if c.err != nil {
			return 0, c.err
		}
		if c.released.Load() || c.p.state == stPass {
			if len(c.stash) > 0 {
				n := copy(b, c.stash)
				c.stash = c.stash[n:]
				return n, nil
			}
			return c.Conn.Read(b)
		}
		switch c.p.state {
		case stBad:
			return c.reject(len(b))
		case stPaused:
			if len(b) == 1 {
				// net/http's background read while the Upgrade or
				// CONNECT handler runs: wait for it to hijack or not.
				return 0, nil
			}
			// net/http reads the next request: no switch happened.
			c.p.resume()
		}
		if len(c.stash) > 0 {
			k := c.p.feed(c.stash[:min(len(b), len(c.stash))])
			n := copy(b, c.stash[:k])
			c.stash = c.stash[k:]
			if n > 0 {
				return n, nil
			}
			continue // paused again, or refused, at the stash's start
		}
		n, err := c.Conn.Read(b)
		if n == 0 {
			return 0, err
		}
		k := c.p.feed(b[:n])
		if k == n {
			return n, err
		}
		if c.p.state == stPaused {
			c.stash = append(c.stash[:0], b[k:n]...)
		}
		if k > 0 {
			// The rest is acted on at the next Read, which comes once
			// net/http has taken these bytes in.
			return k, nil
		}
	}
}

// reject answers the refused request (when its head had not gone on to
// net/http) and makes the connection's reads fail from now on.
func (c *Conn) reject(n int) (int, error) {
	if !c.p.inBody && n == 1 {
		// A one-byte read is net/http's background read while a handler
		// still runs (pipelining): answering now would mix with that
		// response. The next request read comes after it.
		return 0, nil
	}
	reason := c.p.reason
	if c.onReject != nil {
		c.onReject(c.Conn.RemoteAddr(), reason)
	}
	if !c.p.inBody {
		// The head never reached net/http, so nothing answers it but us.
		c.answer(reason)
	}
	// A read error net/http counts as the client's (a *net.OpError from
	// Read): it closes the connection without writing its own 400.
	c.err = &net.OpError{Op: "read", Net: c.Conn.LocalAddr().Network(), Source: c.Conn.LocalAddr(), Addr: c.Conn.RemoteAddr(),
		Err: fmt.Errorf("%w: %s", ErrRejected, reason)}
	return 0, c.err
}

type closeWriter interface{ CloseWrite() error }

// answer writes the 400, half-closes, and lingers briefly so the client
// reads it rather than a reset.
func (c *Conn) answer(reason string) {
	body := "400 Bad Request: " + reason + "\n"
	msg := "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	_ = c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := io.WriteString(c.Conn, msg); err != nil {
		return
	}
	if cw, ok := c.Conn.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
	buf := make([]byte, 4096)
	for total := 0; total < lingerMax; {
		n, err := c.Conn.Read(buf)
		total += n
		if err != nil {
			break
		}
	}
}

// CloseWrite half-closes the connection when the one underneath can
// (net/http does before closing a connection it answered with an error).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom lets net/http's response bodies use the connection's own
// ReadFrom (sendfile) when it has one.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// writerOnly hides a writer's ReadFrom, so io.Copy does not call back.
type writerOnly struct{ io.Writer }

// NetConn is the connection underneath.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// TLSConn is a Conn over a TLS connection whose handshake is done. net/http
// takes its TLS state from ConnectionState (Request.TLS), as it would from
// the *tls.Conn itself.
type TLSConn struct {
	Conn
	tls *tls.Conn
}

// ConnectionState is the TLS connection's.
func (c *TLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// CloseWrite, ReadFrom and NetConn are Conn's; ReadFrom on a TLS
// connection is a plain copy.
