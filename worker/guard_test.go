package worker

import (
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// smuggle is a CL.TE request: net/http alone takes Transfer-Encoding and
// ignores Content-Length; a proxy in front may do the opposite.
const smuggle = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"

// strict_http on (the default) refuses it before the handler; off, the
// handler gets it, as from plain net/http.
func TestStrictHTTP(t *testing.T) {
	for _, strict := range []string{"true", "false"} {
		var hits atomic.Int32
		s := testSettings(t, map[string]string{"strict_http": strict})
		addr := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			io.WriteString(w, "hi\n")
		}))
		status, closed := rawRequest(t, addr, smuggle)
		want, wantHits := 400, int32(0)
		if strict == "false" {
			want, wantHits = 200, 1
		}
		if status != want || hits.Load() != wantHits || (strict == "true" && !closed) {
			t.Errorf("strict_http = %s: status %d (close %v), %d requests reached the handler; want %d and %d", strict, status, closed, hits.Load(), want, wantHits)
		}
		// Ordinary requests are served either way.
		if status, _ := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); status != 200 {
			t.Errorf("strict_http = %s: a plain GET got %d", strict, status)
		}
	}
}

// Over TLS (wrapListeners, then the guard outermost): HTTP/1.1 is checked
// and the pipeline still sees https; HTTP/2 is served.
func TestStrictHTTPOverTLS(t *testing.T) {
	dir := t.TempDir()
	certfile, keyfile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeCert(t, certfile, keyfile, 7)
	s := testSettings(t, map[string]string{"certfile": certfile, "keyfile": keyfile})
	addr, _ := startWrapped(t, s, echo())

	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		proto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
		if resp.StatusCode != 200 || resp.Proto != proto || !strings.Contains(string(b), "https") {
			t.Errorf("h2 %v: %d %s %q", h2, resp.StatusCode, resp.Proto, b)
		}
	}

	tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(tc, smuggle)
	b, _ := io.ReadAll(tc)
	if !strings.HasPrefix(string(b), "HTTP/1.1 400 ") || !strings.Contains(string(b), "both Content-Length and Transfer-Encoding") {
		t.Fatalf("CL.TE over TLS: %q", b)
	}
}
