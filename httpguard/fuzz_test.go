package httpguard

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// FuzzGuard checks, for any bytes: the parser does not panic, its verdict
// does not depend on how the bytes are split into reads, and net/http
// reading what it delivers sees no request it did not (and ends each where
// it does). For a stream built from valid pieces (the same bytes read as
// choices), it checks every request is let through whole.
func FuzzGuard(f *testing.F) {
	for _, tc := range accepted {
		f.Add(crlf(tc.stream))
	}
	for _, tc := range refused {
		f.Add(crlf(tc.stream))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := follow(data, nil)
		if got := follow(data, cutsFrom(data)); !got.equal(whole) {
			t.Fatalf("split reads: %v, whole: %v\n%q", got, whole, data)
		}
		checkAgainstGo(t, data, whole)

		stream, n := validStream(data)
		o := follow(stream, nil)
		if o.reason != "" || o.delivered != len(stream) || o.messages != n {
			t.Fatalf("valid stream of %d requests: %v\n%q", n, o, stream)
		}
		if got := follow(stream, cutsFrom(data)); !got.equal(o) {
			t.Fatalf("valid stream, split reads: %v, whole: %v\n%q", got, o, stream)
		}
		if g := goEnds(stream); fmt.Sprint(g) != fmt.Sprint(o.ends) {
			t.Fatalf("valid stream: net/http ends requests at %v, the guard at %v\n%q", g, o.ends, stream)
		}
	})
}

// cutsFrom derives read boundaries (1 to 16 bytes apart) from data.
func cutsFrom(data []byte) []int {
	var cuts []int
	pos := 0
	for i := 0; pos < len(data); i++ {
		pos += int(data[i%len(data)]%16) + 1
		cuts = append(cuts, pos)
	}
	return cuts
}

// chooser reads choices from fuzz bytes (0 once they run out).
type chooser struct {
	b []byte
	i int
}

func (c *chooser) n(k int) int {
	if c.i >= len(c.b) {
		return 0
	}
	v := int(c.b[c.i]) % k
	c.i++
	return v
}

func (c *chooser) bytes(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(c.n(256))
	}
	return out
}

// validStream builds 1 to 4 pipelined requests that are valid HTTP/1.1
// (or 1.0) by RFC 9112 and that net/http accepts, from pieces chosen by
// data.
func validStream(data []byte) ([]byte, int) {
	c := &chooser{b: data}
	var b bytes.Buffer
	count := 1 + c.n(4)
	for range count {
		http10 := c.n(5) == 0
		method := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "QUERY"}[c.n(8)]
		target := []string{"/", "/a/b?c=d&e", "/%20x;p", "http://example.com/x", "https://[::1]:8/y?z#f", "/" + strings.Repeat("x", 300)}[c.n(6)]
		if method == "OPTIONS" && c.n(2) == 0 {
			target = "*"
		}
		ver := "HTTP/1.1"
		if http10 {
			ver = "HTTP/1.0"
		}
		fmt.Fprintf(&b, "%s %s %s\r\n", method, target, ver)
		if !http10 || c.n(2) == 0 {
			b.WriteString("Host: example.com\r\n")
		}
		fields := []string{"Accept: */*", "X-Obs: caf\xe9 \x80", "Cookie: a=b; c=d", "X-Empty:", "X-Tab:\tv\t", "User-Agent: fuzz/1.0",
			"Connection: keep-alive", "X-Long: " + strings.Repeat("v", 200), "Upgrade-Insecure-Requests: 1", "Content-Typo: x"}
		for range c.n(5) {
			b.WriteString(fields[c.n(len(fields))] + "\r\n")
		}
		if c.n(3) == 0 {
			b.WriteString("Content-Type: application/octet-stream\r\n")
		}
		switch mode := c.n(3); {
		case mode == 1 || mode == 2 && http10:
			body := c.bytes(c.n(40))
			cl := []string{"Content-Length: %d", "content-length:%d", "CONTENT-LENGTH: \t%d \t"}[c.n(3)]
			fmt.Fprintf(&b, cl+"\r\n", len(body))
			if c.n(4) == 0 {
				fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body)) // a duplicate, equal
			}
			b.WriteString("\r\n")
			b.Write(body)
		case mode == 2:
			b.WriteString([]string{"Transfer-Encoding: chunked", "Transfer-Encoding: Chunked", "transfer-encoding:  chunked \t"}[c.n(3)] + "\r\n\r\n")
			for range c.n(4) {
				data := c.bytes(1 + c.n(20))
				size := []string{"%x", "%X", "000%x"}[c.n(3)]
				ext := []string{"", ";a=b", ";q=\"x y\"", ";e"}[c.n(4)]
				fmt.Fprintf(&b, size+ext+"\r\n", len(data))
				b.Write(data)
				b.WriteString("\r\n")
			}
			b.WriteString([]string{"0", "000", "0;last"}[c.n(3)] + "\r\n")
			for range c.n(3) {
				b.WriteString([]string{"X-Checksum: abc", "Server-Timing: x;dur=1", "Content-Type: text/plain"}[c.n(3)] + "\r\n")
			}
			b.WriteString("\r\n")
		default:
			b.WriteString("\r\n")
		}
	}
	return b.Bytes(), count
}
