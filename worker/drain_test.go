package worker

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// A connection accepted before a drain whose request arrives after the
// drain began gets its answer (net/http's Shutdown alone drops it: EOF).
func TestDrainAnswersRequestsOfAcceptedConnections(t *testing.T) {
	s := testSettings(t, map[string]string{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("answered")) })
	srv := newServer(t.Context(), h, s, hclog.NewNullLogger())
	srv.start([]net.Listener{ln})

	// Connect (the server accepts) but send nothing yet.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Wait until the server has accepted it.
	deadline := time.Now().Add(2 * time.Second)
	for {
		n := 0
		srv.conns.conns.Range(func(_, _ any) bool { n++; return true })
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection was not accepted")
		}
		time.Sleep(time.Millisecond)
	}

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		srv.drain(context.Background(), nil, 5*time.Second)
	}()
	// The drain has begun: new connections are refused...
	waitRefused := time.Now().Add(2 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", ln.Addr().String(), 200*time.Millisecond)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(waitRefused) {
			t.Fatal("the listener still accepts during the drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// ...and the accepted connection's request is still answered.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request after the drain began: %v (dropped)", err)
	}
	defer resp.Body.Close()
	buf := new(strings.Builder)
	bufio.NewReader(resp.Body).WriteTo(buf)
	if resp.StatusCode != 200 || buf.String() != "answered" || !resp.Close {
		t.Errorf("got %d %q close=%v, want 200 \"answered\" with Connection: close", resp.StatusCode, buf.String(), resp.Close)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not finish")
	}
	srv.wait()
}
