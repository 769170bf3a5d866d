package httpguard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// typicalGET is a 200-byte browser-like keep-alive request.
var typicalGET = crlf("GET /static/app.js?v=3 HTTP/1.1|Host: www.example.com|User-Agent: Mozilla/5.0 (X11; Linux x86_64)|" +
	"Accept: */*|Accept-Encoding: gzip, br|Accept-Language: en|Referer: https://www.example.com/||")

// memConn is a net.Conn whose reads return stream over and over, a read
// per request, as a keep-alive client would send them.
type memConn struct {
	net.Conn // nil: only Read is used
	stream   []byte
}

func (c *memConn) Read(b []byte) (int, error) { return copy(b, c.stream), nil }

// BenchmarkGuard is the cost of the guard per request read: the same
// reads through a bare connection and through a Conn.
func BenchmarkGuard(b *testing.B) {
	if len(typicalGET) < 190 || len(typicalGET) > 210 {
		b.Fatalf("the request is %d bytes", len(typicalGET))
	}
	buf := make([]byte, 4096)
	for _, guarded := range []bool{false, true} {
		name := map[bool]string{false: "bare", true: "guard"}[guarded]
		b.Run(name, func(b *testing.B) {
			var c net.Conn = &memConn{stream: typicalGET}
			if guarded {
				c = NewConn(c, nil)
			}
			b.SetBytes(int64(len(typicalGET)))
			b.ReportAllocs()
			for b.Loop() {
				if n, err := c.Read(buf); n != len(typicalGET) || err != nil {
					b.Fatal(n, err)
				}
			}
		})
	}
}

// BenchmarkServer is the whole server hot path: keep-alive GETs over
// loopback to an http.Server, one at a time on one connection, with and
// without the guard. Allocations are the process's (client included).
func BenchmarkServer(b *testing.B) {
	for _, guarded := range []bool{false, true} {
		name := map[bool]string{false: "bare", true: "guard"}[guarded]
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var sl net.Listener = ln
			if guarded {
				sl = NewListener(ln, Options{})
			}
			body := []byte("Hello from paddock\n")
			hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = []string{"text/plain"}
				w.Write(body)
			}), ReadHeaderTimeout: 10 * time.Second}
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = hs.Serve(sl)
			}()
			defer func() {
				hs.Close()
				<-done
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(typicalGET); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
					b.Fatal(resp.StatusCode, err)
				}
				resp.Body.Close()
			}
		})
	}
}
