package worker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// smallRcvbuf dials with a small fixed receive buffer, so a client that
// does not read stops the server's writes at once.
func smallRcvbuf(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10) })
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveOne accepts one connection from a limitClients listener with
// send_timeout d and runs f on it; it returns f's result.
func serveOne(t *testing.T, s *Settings, f func(c net.Conn) (int64, error)) (string, <-chan writeResult) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitClients(raw, s)
	t.Cleanup(func() { ln.Close() })
	out := make(chan writeResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			out <- writeResult{err: err}
			return
		}
		defer c.Close()
		// A small send buffer too: what the kernel takes before the
		// client's window closes stays small.
		if tc, ok := c.(*clientConn).Conn.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(8 << 10)
		}
		start := time.Now()
		n, err := f(c)
		out <- writeResult{n: n, err: err, took: time.Since(start)}
	}()
	return raw.Addr().String(), out
}

type writeResult struct {
	n    int64
	err  error
	took time.Duration
}

// A client that reads nothing fails a write after send_timeout of no
// progress; one that reads slowly but steadily never does, however long
// the whole write takes.
func TestSendTimeoutProgress(t *testing.T) {
	const d = 200 * time.Millisecond
	s := &Settings{SendTimeout: d}
	payload := bytes.Repeat([]byte("x"), 1<<20)
	dir := t.TempDir()
	file := filepath.Join(dir, "big")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	writers := map[string]func(c net.Conn) (int64, error){
		"write": func(c net.Conn) (int64, error) {
			n, err := c.Write(payload)
			return int64(n), err
		},
		"sendfile": func(c net.Conn) (int64, error) {
			f, err := os.Open(file)
			if err != nil {
				return 0, err
			}
			defer f.Close()
			return c.(io.ReaderFrom).ReadFrom(io.LimitReader(f, int64(len(payload))))
		},
	}
	for name, write := range writers {
		t.Run(name+"/stalled", func(t *testing.T) {
			addr, res := serveOne(t, s, write)
			smallRcvbuf(t, addr)
			r := <-res
			t.Logf("stalled client: write failed after %v, %d bytes: %v", r.took, r.n, r.err)
			if !errors.Is(r.err, os.ErrDeadlineExceeded) {
				t.Fatalf("write to a client that reads nothing: %d bytes, %v; want a deadline error", r.n, r.err)
			}
			if r.took < d || r.took > d+time.Second {
				t.Errorf("gave up after %v; send_timeout is %v", r.took, d)
			}
		})
		t.Run(name+"/slow", func(t *testing.T) {
			addr, res := serveOne(t, s, write)
			c := smallRcvbuf(t, addr)
			// 64 KiB every 100 ms: the whole 1 MiB takes about 1.6 s, 8
			// times send_timeout, while no pause reaches it.
			var got int64
			buf := make([]byte, 64<<10)
			for got < int64(len(payload)) {
				n, err := io.ReadFull(c, buf[:min(len(buf), len(payload)-int(got))])
				got += int64(n)
				if err != nil {
					t.Fatalf("after %d bytes: %v", got, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			r := <-res
			t.Logf("slow client: write done after %v, %d bytes: %v", r.took, r.n, r.err)
			if r.err != nil || r.n != int64(len(payload)) {
				t.Fatalf("write to a slow but steady client: %d bytes, %v", r.n, r.err)
			}
			if r.took < 5*d {
				t.Errorf("the write took only %v: the client did not slow it down, the test proves nothing", r.took)
			}
		})
	}
}

// An external write deadline (net/http's TLS handshake, an app's
// ResponseController) still ends a write that keeps progressing.
func TestSendTimeoutExternalDeadline(t *testing.T) {
	s := &Settings{SendTimeout: time.Hour}
	payload := bytes.Repeat([]byte("x"), 4<<20)
	addr, res := serveOne(t, s, func(c net.Conn) (int64, error) {
		if err := c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
			return 0, err
		}
		n, err := c.Write(payload)
		return int64(n), err
	})
	c := smallRcvbuf(t, addr)
	go func() { _, _ = io.Copy(io.Discard, &slowReader{c}) }()
	r := <-res
	if !errors.Is(r.err, os.ErrDeadlineExceeded) || r.took > 2*time.Second {
		t.Fatalf("write with an external deadline of 300ms: %d bytes after %v, %v", r.n, r.took, r.err)
	}
}

type slowReader struct{ c net.Conn }

func (r *slowReader) Read(p []byte) (int, error) {
	time.Sleep(50 * time.Millisecond)
	return r.c.Read(p[:min(len(p), 16<<10)])
}

// worker_connections: past the limit Accept waits, a close frees the
// slot, and Close ends a waiting Accept with net.ErrClosed.
func TestWorkerConnectionsLimit(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitClients(raw, &Settings{WorkerConnections: 2})
	defer ln.Close()
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	accepted := make(chan net.Conn, 3)
	failed := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				failed <- err
				return
			}
			accepted <- c
		}
	}()
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted with worker_connections = 2")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	first.Close() // a second Close must not free another slot
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting connection was not accepted once a slot freed")
	}
	defer second.Close()
	// Full again: Accept is waiting for a slot; Close ends it.
	ln.Close()
	select {
	case err := <-failed:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end the waiting Accept")
	}
}

// The connection keeps what net/http looks for on the socket: CloseWrite
// (half-close after an error answer) and ReadFrom.
func TestClientConnMethods(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitClients(raw, &Settings{WorkerConnections: 1, SendTimeout: time.Second})
	defer ln.Close()
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, ok := sc.(io.ReaderFrom); !ok {
		t.Error("no ReadFrom")
	}
	cw, ok := sc.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("no CloseWrite")
	}
	if _, err := sc.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "bye" {
		t.Fatalf("after CloseWrite the client read %q, %v", b, err)
	}
}

// client_body_timeout: a body that keeps coming, one byte at a time, is
// read to the end however long it takes; one that stops fails the
// handler's read once it has paused for the timeout.
func TestBodyTimeout(t *testing.T) {
	const d = 300 * time.Millisecond
	type result struct {
		n    int64
		err  error
		took time.Duration
	}
	results := make(chan result, 1)
	h := bodyTimeout(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		n, err := io.Copy(io.Discard, r.Body)
		results <- result{n, err, time.Since(start)}
	}), d)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(raw) }()
	defer srv.Close()

	send := func(t *testing.T, body string, gap time.Duration, stallAfter int) net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
		for i := range len(body) {
			if i == stallAfter {
				return c
			}
			if _, err := c.Write([]byte{body[i]}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(gap)
		}
		return c
	}
	t.Run("steady", func(t *testing.T) {
		// 8 bytes at 2 a timeout: 4 times the timeout in all.
		c := send(t, "12345678", d/2, -1)
		r := <-results
		if r.err != nil || r.n != 8 {
			t.Fatalf("steady slow body: read %d bytes, %v", r.n, r.err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("answer: %v %v", resp, err)
		}
	})
	t.Run("stalled", func(t *testing.T) {
		send(t, "12345678", 10*time.Millisecond, 3)
		r := <-results
		if !errors.Is(r.err, os.ErrDeadlineExceeded) || r.n != 3 {
			t.Fatalf("stalled body: read %d bytes, %v; want 3 and a deadline error", r.n, r.err)
		}
		if r.took < d || r.took > d+time.Second {
			t.Errorf("the read failed after %v; client_body_timeout is %v", r.took, d)
		}
	})
}
