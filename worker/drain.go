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
// once, racing clients that are about to reuse them (the drain contract: "close a
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

// connInfo is one connection's drain state, updated with atomics on the
// request path (no lock per request).
type connInfo struct {
	served    atomic.Bool  // a request of this connection reached a handler
	idleSince atomic.Int64 // unix nanoseconds since it is idle; 0 while active
}

// connTracker knows, per connection, whether a request of it has reached a
// handler and since when it is idle. Connections are added and removed
// once each (ConnContext, StateClosed); requests touch only their
// connInfo.
type connTracker struct {
	draining atomic.Bool
	conns    sync.Map // net.Conn -> *connInfo
}

func newConnTracker() *connTracker { return &connTracker{} }

// connContext registers the connection and puts its connInfo in the
// context for wrap. net/http calls it before the StateNew hook.
func (t *connTracker) connContext(ctx context.Context, c net.Conn) context.Context {
	info := &connInfo{}
	t.conns.Store(c, info)
	return context.WithValue(ctx, connKey{}, info)
}

// connState is the http.Server.ConnState hook.
func (t *connTracker) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateActive, http.StateIdle:
		v, ok := t.conns.Load(c)
		if !ok {
			return
		}
		info := v.(*connInfo)
		if st == http.StateIdle {
			info.idleSince.Store(time.Now().UnixNano())
		} else {
			info.idleSince.Store(0)
		}
	case http.StateClosed, http.StateHijacked:
		t.conns.Delete(c)
	}
}

// wrap marks the request's connection as served and, while draining, asks
// the client to close it after this response.
func (t *connTracker) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info, ok := r.Context().Value(connKey{}).(*connInfo); ok && !info.served.Load() {
			info.served.Store(true)
		}
		if t.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// settled reports whether Shutdown can run without dropping anything: no
// accepted connection is still waiting for its first request to reach a
// handler, and every idle keep-alive connection has had its grace.
func (t *connTracker) settled(now time.Time) bool {
	ok := true
	t.conns.Range(func(_, v any) bool {
		info := v.(*connInfo)
		if !info.served.Load() {
			ok = false
		} else if since := info.idleSince.Load(); since != 0 && now.UnixNano()-since < int64(idleGrace) {
			ok = false
		}
		return ok
	})
	return ok
}

// settle waits, bounded by settleMax and ctx, until settled; it reports
// whether it was.
func (t *connTracker) settle(ctx context.Context) bool {
	deadline := time.Now().Add(settleMax)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !t.settled(time.Now()) {
		if !time.Now().Before(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}
