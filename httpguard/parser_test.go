package httpguard

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// outcome is what the parser made of a stream.
type outcome struct {
	delivered int    // bytes that went on
	messages  int    // complete requests among them
	ends      []int  // offsets where each of them ended (byte-at-a-time run)
	reason    string // "" unless refused
	inBody    bool
	passed    bool // stopped checking (HTTP/2 preface)
}

func (o outcome) String() string {
	return fmt.Sprintf("delivered %d, %d requests ending at %v, reason %q (in body %v), passed %v", o.delivered, o.messages, o.ends, o.reason, o.inBody, o.passed)
}

func (o outcome) equal(x outcome) bool {
	return o.delivered == x.delivered && o.messages == x.messages && o.reason == x.reason && o.inBody == x.inBody && o.passed == x.passed
}

// follow feeds stream to a parser in the pieces cuts makes (offsets where
// a new read starts), as a Conn would, resuming after Upgrade and CONNECT
// requests as if the handler had not switched protocols.
func follow(stream []byte, cuts []int) outcome {
	var p parser
	var o outcome
	prev := 0
	var pieces [][]byte
	for _, c := range cuts {
		if c > prev && c < len(stream) {
			pieces = append(pieces, stream[prev:c])
			prev = c
		}
	}
	pieces = append(pieces, stream[prev:])
	defer func() { o.messages = p.messages }()
	for _, piece := range pieces {
		for len(piece) > 0 {
			p.resume()
			k := p.feed(piece)
			o.delivered += k
			piece = piece[k:]
			switch p.state {
			case stBad:
				o.reason, o.inBody = p.reason, p.inBody
				o.messages, o.ends = p.messages, endsOf(stream, o.delivered)
				return o
			case stPass:
				o.delivered, o.passed = len(stream), true
				o.messages, o.ends = p.messages, endsOf(stream, len(stream))
				return o
			}
		}
	}
	o.messages, o.ends = p.messages, endsOf(stream, len(stream))
	return o
}

// endsOf feeds stream[:limit] one byte at a time and returns the offsets
// where requests end.
func endsOf(stream []byte, limit int) []int {
	var p parser
	var ends []int
	for i := 0; i < limit; i++ {
		p.resume()
		before := p.messages
		if p.feed(stream[i:i+1]) == 0 {
			break
		}
		if p.messages != before {
			ends = append(ends, i+1)
		}
	}
	return ends
}

// goEnds is where net/http's request parser ends each request it can read
// whole (head and body) from b.
func goEnds(b []byte) []int {
	br := bytes.NewReader(b)
	r := bufio.NewReader(br)
	var ends []int
	for {
		req, err := http.ReadRequest(r)
		if err != nil {
			return ends
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return ends
		}
		ends = append(ends, len(b)-br.Len()-r.Buffered())
	}
}

// checkAgainstGo fails when net/http, reading only what the guard
// delivered, sees a request the guard did not, or ends one elsewhere: the
// framing difference a smuggled request needs.
func checkAgainstGo(t testing.TB, stream []byte, o outcome) {
	t.Helper()
	limit := o.delivered
	if o.passed {
		// After the HTTP/2 preface nothing is HTTP/1; compare up to it.
		limit = bytes.Index(stream, []byte("PRI * HTTP/2.0"))
	}
	g := goEnds(stream[:limit])
	if len(g) > len(o.ends) {
		t.Fatalf("net/http reads %d requests (ends %v) from the %d bytes delivered, the guard %d (%v)\nstream %q", len(g), g, limit, len(o.ends), o, stream)
	}
	for i, e := range g {
		if o.ends[i] != e {
			t.Fatalf("request %d ends at %d for net/http, at %d for the guard\nstream %q", i+1, e, o.ends[i], stream)
		}
	}
}

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "|", "\r\n")) }

// Streams the guard lets through whole; n is the number of requests.
var accepted = []struct {
	name   string
	stream string // | is CRLF
	n      int
}{
	{"simple GET", "GET / HTTP/1.1|Host: x|Accept: */*||", 1},
	{"pipelined GETs", "GET /a HTTP/1.1|Host: x||GET /b HTTP/1.1|Host: x||GET /c HTTP/1.1|Host: x||", 3},
	{"CL body then GET", "POST / HTTP/1.1|Host: x|Content-Length: 5||helloGET / HTTP/1.1|Host: x||", 2},
	{"CL with OWS", "POST / HTTP/1.1|Host: x|Content-Length: \t5 ||hello", 1},
	{"equal CLs", "POST / HTTP/1.1|Host: x|Content-Length: 5|Content-Length: 5||hello", 1},
	{"CL zero", "POST / HTTP/1.1|Host: x|Content-Length: 0||GET / HTTP/1.1|Host: x||", 2},
	{"GET with a body", "GET /foo HTTP/1.1|Host: x|Content-Length: 5||hello", 1},
	{"HTTP/1.0 CL", "POST /foo HTTP/1.0|Content-Length: 5||hello", 1},
	{"chunked, extensions, trailers", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||5;a=b|hello|6 ; q=\"x\"| world|0|X-Trailer: 1|Server-Timing: a||GET / HTTP/1.1|Host: x||", 2},
	{"chunk extensions", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||5 ; a = b ;c;d=\"x \\\" ; y\"|hello|2;e=\"\"\t|hi|0;z|X: 1||", 1},
	{"chunked sizes", "POST / HTTP/1.1|Host: x|Transfer-Encoding: CHUNKED||0005|hello|A|0123456789|000||", 1},
	{"chunked list", "POST / HTTP/1.1|Host: x|Transfer-Encoding: gzip, chunked||0||", 1},
	{"chunked over two lines", "POST / HTTP/1.1|Host: x|Transfer-Encoding: gzip|Transfer-Encoding: chunked||0||", 1},
	{"OPTIONS *", "OPTIONS * HTTP/1.1|Host: x||", 1},
	{"absolute-form", "GET http://example.com/foo?q=1 HTTP/1.1|Host: example.com||GET https://[::1]:8080/ HTTP/1.1|Host: x||", 2},
	{"CONNECT", "CONNECT example.com:443 HTTP/1.1|Host: example.com:443||", 1},
	{"Upgrade", "GET /ws HTTP/1.1|Host: x|Upgrade: websocket|Connection: Upgrade||", 1},
	{"obs-text value", "GET / HTTP/1.1|Host: x|X-A: caf\xc3\xa9 \x80\xff||", 1},
	{"token name chars", "GET / HTTP/1.1|Host: x|!#$%&'*+-.^_`~09az: 1||", 1},
	{"empty value", "GET / HTTP/1.1|Host: x|X-Empty:||", 1},
	{"one Content-Type", "POST / HTTP/1.1|Host: x|Content-Type: text/plain|Content-Length: 1||x", 1},
	{"long field", "GET / HTTP/1.1|Host: x|Cookie: " + strings.Repeat("a=b; ", 2000) + "||", 1},
	{"upper-case names", "POST / HTTP/1.1|HOST: x|CONTENT-LENGTH: 2||hi", 1},
}

// Streams the guard refuses, with the reason it gives.
var refused = []struct {
	name   string
	stream string // | is CRLF
	reason string
	inBody bool
}{
	{"bare LF ends a field", "GET / HTTP/1.1|Host: x\nDummy: x|Content-Length: 23||GET / HTTP/1.1|Host: x||", "bare LF", false},
	{"bare LF ends the request line", "GET / HTTP/1.1\nHost: x||", "bare LF", false},
	{"bare LF ends the head", "GET / HTTP/1.1|Host: x|\n", "bare LF", false},
	{"bare CR", "GET / HTTP/1.1|Host: x\rDummy: y||", "bare CR", false},
	{"CR CR LF", "GET / HTTP/1.1|Host: x\r\r\n\r\n", "bare CR", false},
	{"obs-fold", "GET / HTTP/1.1|Long: one| two|Host: x||", "obsolete line folding", false},
	{"obs-fold tab", "GET / HTTP/1.1|Host: x|Foo: a|\tContent-Length: 5||hello", "obsolete line folding", false},
	{"space-prefixed CL", "GET / HTTP/1.1|Host: x|Foo: bar| Content-Length: 5||hello", "obsolete line folding", false},
	{"space before colon", "GET / HTTP/1.1|Host: x|Content-Length : 5||hello", "whitespace between", false},
	{"invalid name char", "GET / HTTP/1.1|Host: x|Fo@o: x||", "invalid character in a field name", false},
	{"non-ASCII name", "GET / HTTP/1.1|Host: x|F\xc3\xb6o: x||", "invalid character in a field name", false},
	{"empty name", "GET / HTTP/1.1|Host: x|: x||", "empty field name", false},
	{"no colon", "GET / HTTP/1.1|Host: x|Foo||", "without a colon", false},
	{"CL plus", "POST / HTTP/1.1|Host: x|Content-Length: +5||hello", "invalid Content-Length", false},
	{"CL minus", "POST / HTTP/1.1|Host: x|Content-Length: -1||", "invalid Content-Length", false},
	{"CL inner space", "POST / HTTP/1.1|Host: x|Content-Length: 1 2||", "invalid Content-Length", false},
	{"CL list", "POST / HTTP/1.1|Host: x|Content-Length: 5, 5||hello", "invalid Content-Length", false},
	{"CL hex", "POST / HTTP/1.1|Host: x|Content-Length: 0x5||hello", "invalid Content-Length", false},
	{"CL empty", "POST / HTTP/1.1|Host: x|Content-Length: ||", "empty Content-Length", false},
	{"CL overflow", "POST / HTTP/1.1|Host: x|Content-Length: 99999999999999999999||", "too large", false},
	{"CL conflict", "POST / HTTP/1.1|Host: x|Content-Length: 5|Content-Length: 6||hello!", "conflicting Content-Length", false},
	{"CL and TE", "POST / HTTP/1.1|Host: x|Content-Length: 3|Transfer-Encoding: chunked||0||", "both Content-Length and Transfer-Encoding", false},
	{"TE and CL", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked|Content-Length: 3||0||", "both Content-Length and Transfer-Encoding", false},
	{"chunked not last", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked, gzip||0||", "not the final", false},
	{"chunked twice", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked, chunked||0||", "more than once", false},
	{"chunked twice over two lines", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked|Transfer-Encoding: chunked||0||", "more than once", false},
	{"chunkedchunked", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunkedchunked||0||", "not the final", false},
	{"identity", "POST / HTTP/1.1|Host: x|Transfer-Encoding: identity||", "not the final", false},
	{"empty TE", "POST / HTTP/1.1|Host: x|Transfer-Encoding:||", "not the final", false},
	{"TE words without comma", "POST / HTTP/1.1|Host: x|Transfer-Encoding: gzip chunked||0||", "invalid Transfer-Encoding", false},
	{"TE parameter", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked;q=1||0||", "not the final", false},
	{"chunked in HTTP/1.0", "POST / HTTP/1.0|Transfer-Encoding: chunked||5|hello|0||", "HTTP/1.0", false},
	{"asterisk on GET", "GET * HTTP/1.1|Host: x||", "asterisk-form", false},
	{"authority on GET", "GET example.com:443 HTTP/1.1|Host: x||", "authority-form", false},
	{"relative target", "GET ../x HTTP/1.1|Host: x||", "authority-form", false},
	{"scheme without slashes", "GET mailto:x HTTP/1.1|Host: x||", "authority-form", false},
	{"repeated Content-Type", "GET / HTTP/1.1|Host: x|Content-Type: application/json|Content-Type: text/html||", "repeated Content-Type", false},
	{"second request bad", "GET /a HTTP/1.1|Host: x||GET /b HTTP/1.1|Host: x| Folded: y||", "obsolete line folding", false},
	{"chunk size not hex", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||x|hello|0||", "invalid chunk size", true},
	{"chunk size minus", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||-5|hello|0||", "invalid chunk size", true},
	{"chunk size junk", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||5x|hello|0||", "invalid chunk size", true},
	{"chunk size too long", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||00000000000000005|hello|0||", "too large", true},
	{"chunk size then space", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||5 |hello|0||", "whitespace after a chunk size", true},
	{"chunk size bare LF", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||5\nhello|0||", "bare LF", true},
	{"chunk size bare CR", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||5\rhello|0||", "bare CR", true},
	{"chunk data without CRLF", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||5|helloX0||", "not followed by CRLF", true},
	{"chunk data with LF only", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||5|hello\n0||", "not followed by CRLF", true},
	{"extension control character", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||5;a=\"\x01\"|hello|0||", "control character", true},
	{"extension bad name", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||5;a\x01|hello|0||", "invalid chunk extension", true},
	{"extension without name", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||2;|aa|0||", "invalid chunk extension", true},
	{"extension without value", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||2;a=|aa|0||", "invalid chunk extension", true},
	{"extension unterminated quote", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||2;a=\"b|aa|0||", "unterminated quoted string", true},
	{"trailer Content-Length", "POST /p HTTP/1.1|Host: x|Transfer-Encoding: chunked||5|hello|0|Content-Length: 99||", "not allowed in a trailer: content-length", true},
	{"trailer Host", "POST /p HTTP/1.1|Host: x|Transfer-Encoding: chunked||5|hello|0|Host: evil||", "not allowed in a trailer: host", true},
	{"trailer TE", "POST /p HTTP/1.1|Host: x|Transfer-Encoding: chunked||5|hello|0|Transfer-Encoding: chunked||", "not allowed in a trailer", true},
	{"trailer bare LF", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||0|X: y\n\r\n", "bare LF", true},
	{"trailer end bare LF", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||0\r\n\n", "bare LF", true},
	{"trailer obs-fold", "POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked||0|X: y| z||", "obsolete line folding", true},
}

func TestAccepted(t *testing.T) {
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			stream := crlf(tc.stream)
			o := follow(stream, nil)
			if o.reason != "" || o.delivered != len(stream) || len(o.ends) != tc.n {
				t.Fatalf("want all %d bytes and %d requests, got %v", len(stream), tc.n, o)
			}
			checkAgainstGo(t, stream, o)
		})
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			stream := crlf(tc.stream)
			o := follow(stream, nil)
			if !strings.Contains(o.reason, tc.reason) || o.inBody != tc.inBody {
				t.Fatalf("want refused for %q (in body %v), got %v", tc.reason, tc.inBody, o)
			}
			checkAgainstGo(t, stream, o)
		})
	}
}

// The verdict and the bytes delivered do not depend on how the stream is
// split into reads: every cut into two, and one byte at a time.
func TestSplits(t *testing.T) {
	var streams [][]byte
	for _, tc := range accepted {
		streams = append(streams, crlf(tc.stream))
	}
	for _, tc := range refused {
		streams = append(streams, crlf(tc.stream))
	}
	for _, s := range streams {
		if len(s) > 600 {
			continue
		}
		whole := follow(s, nil)
		for cut := 1; cut < len(s); cut++ {
			if got := follow(s, []int{cut}); !got.equal(whole) {
				t.Fatalf("%q cut at %d: %v, whole: %v", s, cut, got, whole)
			}
		}
		every := make([]int, len(s))
		for i := range every {
			every[i] = i
		}
		if got := follow(s, every); !got.equal(whole) {
			t.Fatalf("%q a byte at a time: %v, whole: %v", s, got, whole)
		}
	}
}

func TestHTTP2Preface(t *testing.T) {
	stream := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00 \n\r garbage")
	o := follow(stream, nil)
	if !o.passed || o.delivered != len(stream) || o.reason != "" {
		t.Fatalf("want the preface and all after it passed, got %v", o)
	}
	// Not the preface: PRI * on HTTP/1.1 is an asterisk-form GET-like.
	o = follow(crlf("PRI * HTTP/1.1|Host: x||"), nil)
	if !strings.Contains(o.reason, "asterisk-form") {
		t.Fatalf("PRI * HTTP/1.1: %v", o)
	}
}

// The parser does not allocate for requests that pass.
func TestNoAllocations(t *testing.T) {
	stream := crlf("GET /index.html?q=1 HTTP/1.1|Host: example.com|User-Agent: bench/1.0|Accept: */*|Accept-Encoding: gzip|Content-Length: 0|Connection: keep-alive||" +
		"POST /p HTTP/1.1|Host: x|Transfer-Encoding: chunked||5;e=1|hello|0|X-T: 1||")
	var p parser
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < len(stream); i += 37 {
			p.feed(stream[i:min(i+37, len(stream))])
		}
	})
	if allocs != 0 || p.state != stHead {
		t.Fatalf("%v allocations per stream, state %d (%s)", allocs, p.state, p.reason)
	}
}
