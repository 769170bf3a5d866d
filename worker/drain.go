package worker

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// net/http's Server.Shutdown drops a request it reads after the shutdown
// began: conn.serve returns without answering when shuttingDown() is true
// right after readRequest. A connection the kernel had queued (or a worker
// had just accepted) before a drain, whose request arrives a moment later,
// would then see EOF — a failed request on a reload, a max_requests
// recycle or an upgrade. And Shutdown closes idle keep-alive connections at
// once, racing clients that are about to reuse them (SPEC §4: "close a
// keep-alive connection only once it is idle past a short grace").
//
// So a drain is done in two steps. First stop accepting (close the
// listeners), answer every further request with Connection: close, and
// wait until every accepted connection has had its request taken in by a
// handler and every idle keep-alive connection has been idle for
// idleGrace. Only then call Shutdown, which now finds nothing it could
// drop. The wait is bounded by settleMax (a client that connects and never
// sends is not waited for longer).
const (
	idleGrace = 250 * time.Millisecond
	settleMax = 2 * time.Second
)

type connKey struct{}

// connTracker knows, per connection, whether its first request has reached
// a handler and since when it is idle.
type connTracker struct {
	draining atomic.Bool

	mu      sync.Mutex
	pending map[net.Conn]struct{}  // accepted; no request in a handler yet
	idle    map[net.Conn]time.Time // keep-alive connections waiting
}

func newConnTracker() *connTracker {
	return &connTracker{pending: make(map[net.Conn]struct{}), idle: make(map[net.Conn]time.Time)}
}

// connContext remembers the connection in its context for wrap.
func (t *connTracker) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// connState is the http.Server.ConnState hook.
func (t *connTracker) connState(c net.Conn, st http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch st {
	case http.StateNew:
		t.pending[c] = struct{}{}
	case http.StateActive:
		delete(t.idle, c)
	case http.StateIdle:
		t.idle[c] = time.Now()
	case http.StateClosed, http.StateHijacked:
		delete(t.pending, c)
		delete(t.idle, c)
	}
}

// wrap marks the request's connection as served and, while draining, asks
// the client to close it after this response.
func (t *connTracker) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			t.mu.Lock()
			delete(t.pending, c)
			t.mu.Unlock()
		}
		if t.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// settled reports whether Shutdown can run without dropping anything.
func (t *connTracker) settled(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) > 0 {
		return false
	}
	for _, since := range t.idle {
		if now.Sub(since) < idleGrace {
			return false
		}
	}
	return true
}

// settle waits, bounded by settleMax and ctx, until settled.
func (t *connTracker) settle(ctx context.Context) {
	deadline := time.Now().Add(settleMax)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !t.settled(time.Now()) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
