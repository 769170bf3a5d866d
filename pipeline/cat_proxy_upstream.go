package pipeline

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is one backend of a proxy section: where it is, how its
// requests travel, and its health and counters (all atomics: every
// request reads them).
type upstream struct {
	idx  int
	url  *url.URL
	name string // the URL as logged and reported
	// h1 is the HTTP/1.1 pool of a plain-http upstream (cat_proxy_h1.go);
	// nil for https, which goes through the standard transport.
	h1 *h1Pool
	// slots bounds the requests in flight (max_conns_per_upstream); nil
	// means no bound. slotWait is how long a request waits for one.
	slots    chan struct{}
	slotWait time.Duration
	// healthURL is what active health checks ask ("" when off).
	healthURL string

	active    atomic.Int64  // requests in flight (holding a connection)
	fails     atomic.Int64  // consecutive failed attempts
	downUntil atomic.Int64  // unix ns; 0: not marked down by failures
	downAt    atomic.Int64  // unix ns the failures marked it down
	checkDown atomic.Bool   // marked down by active health checks
	requests  atomic.Uint64 // attempts sent
	errors    atomic.Uint64 // attempts failed

	check healthState
}

// healthState is an upstream's active health check record, written by
// the checker goroutine and read by status.
type healthState struct {
	mu            sync.Mutex
	state         string // "", "passing", "failing"
	lastErr       string
	lastAt        time.Time
	passes, fails int // consecutive
}

func newUpstream(idx int, u *url.URL, o *proxyOptions, dial func(context.Context, string, string) (net.Conn, error)) *upstream {
	up := &upstream{idx: idx, url: u, name: u.Redacted(), slotWait: o.connectTimeout}
	if o.maxConns > 0 {
		up.slots = make(chan struct{}, o.maxConns)
	}
	if u.Scheme == "http" {
		up.h1 = &h1Pool{up: up, addr: canonicalAddr(u), dial: dial, maxIdle: o.maxIdle,
			idleTimeout: o.idleTimeout, headerTimeout: o.headerTimeout}
	}
	if o.healthPath != "" {
		hu := url.URL{Scheme: u.Scheme, Host: u.Host}
		hu.Path, hu.RawQuery = splitPathQuery(o.healthPath)
		up.healthURL = hu.String()
	}
	return up
}

// canonicalAddr is host:port of u, with the scheme's default port.
func canonicalAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func splitPathQuery(s string) (path, query string) {
	u, err := url.Parse(s)
	if err != nil {
		return s, ""
	}
	return u.Path, u.RawQuery
}

// target points r at the upstream: scheme, host, the upstream's base path
// joined with the request path (as httputil's SetURL), its own Host.
func (up *upstream) target(r *http.Request) {
	pr := httputil.ProxyRequest{Out: r}
	pr.SetURL(up.url)
}

// full reports whether the upstream has max_conns_per_upstream requests
// in flight (a hint: the slot is taken for real in acquire).
func (up *upstream) full() bool {
	return up.slots != nil && len(up.slots) >= cap(up.slots)
}

// acquire takes a connection slot, waiting at most slotWait (connect
// timeout; 0 waits as long as the request).
func (up *upstream) acquire(ctx context.Context) error {
	if up.slots == nil {
		return nil
	}
	select {
	case up.slots <- struct{}{}:
		return nil
	default:
	}
	var timeout <-chan time.Time
	if up.slotWait > 0 {
		t := time.NewTimer(up.slotWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case up.slots <- struct{}{}:
		return nil
	case <-timeout:
		return errUpstreamBusy
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// release ends a request that took a slot: its response body is closed,
// or it failed.
func (up *upstream) release() {
	up.active.Add(-1)
	if up.slots != nil {
		<-up.slots
	}
}

// roundTrip sends one attempt to the upstream: bodyless requests to a
// plain-http upstream through its HTTP/1.1 pool, the rest (https, a
// body, an upgrade) through the standard transport. The slot is held
// until the response body is closed.
func (up *upstream) roundTrip(r *http.Request, p *proxyApp) (*http.Response, error) {
	if err := up.acquire(r.Context()); err != nil {
		return nil, err
	}
	up.active.Add(1)
	up.requests.Add(1)
	if up.h1 != nil && h1Eligible(r) {
		resp, err := up.h1.roundTrip(r)
		if err != nil {
			up.release()
			return nil, err
		}
		if resp.Body == http.NoBody {
			up.release()
		}
		return resp, nil // an *h1Body releases on Close
	}
	resp, err := p.std.RoundTrip(r)
	if err != nil {
		up.release()
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		asked, got := r.Header.Get("Upgrade"), resp.Header.Get("Upgrade")
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if asked == "" || !strings.EqualFold(asked, got) || !ok {
			if resp.Body != nil {
				resp.Body.Close()
			}
			up.release()
			return nil, fmt.Errorf("malformed response: switched protocols to %q when %q was asked", got, asked)
		}
		// The ReverseProxy needs the connection itself (it checks for
		// io.ReadWriteCloser) to relay the upgraded protocol.
		tc := &trackedConn{ReadWriteCloser: rwc, up: up}
		if h, ok := r.Context().Value(upgradeKey{}).(*upgradeHolder); ok {
			h.conn.Store(tc)
		}
		resp.Body = tc
		return resp, nil
	}
	switch body := resp.Body.(type) {
	case nil:
		up.release()
	default:
		if body == http.NoBody {
			up.release()
			break
		}
		resp.Body = &trackedBody{rc: body, up: up}
	}
	return resp, nil
}

// trackedBody releases the upstream's slot when the body is closed.
type trackedBody struct {
	rc     io.ReadCloser
	up     *upstream
	closed atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) { return b.rc.Read(p) }

func (b *trackedBody) Close() error {
	err := b.rc.Close()
	if b.closed.CompareAndSwap(false, true) {
		b.up.release()
	}
	return err
}

// upgradeKey finds an upgrade request's *upgradeHolder in its context.
type upgradeKey struct{}

// upgradeHolder keeps the upstream connection of an upgrade (101)
// response so the error handler can close it: when the ReverseProxy
// cannot hijack the client's connection (a ResponseWriter wrapper without
// Unwrap or Hijack), it reports the error without closing the upstream
// one.
type upgradeHolder struct {
	conn atomic.Pointer[trackedConn]
}

// trackedConn is trackedBody for an upgraded connection (WebSocket): it
// stays a ReadWriteCloser.
type trackedConn struct {
	io.ReadWriteCloser
	up     *upstream
	closed atomic.Bool
}

func (c *trackedConn) Close() error {
	err := c.ReadWriteCloser.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.up.release()
	}
	return err
}

// upstreamSet is the upstreams a request tried: a bit mask, or a slice
// past 64 upstreams.
type upstreamSet struct {
	bits uint64
	more []bool
}

func (s *upstreamSet) add(i int) {
	if s.more != nil {
		s.more[i] = true
		return
	}
	s.bits |= 1 << uint(i)
}

func (s *upstreamSet) has(i int) bool {
	if s.more != nil {
		return s.more[i]
	}
	return s.bits&(1<<uint(i)) != 0
}

// pick chooses the upstream for the next attempt among those not tried
// yet. An upstream marked down is
// skipped, except that once its fail_timeout is over exactly one request
// claims it as a trial. round_robin takes the next one in turn that is
// not at max_conns_per_upstream; least_conn the one with the fewest
// requests in flight, ties in turn. With none left it returns nil and
// how long until one may take requests again (for Retry-After).
func (p *proxyApp) pick(tried *upstreamSet) (*upstream, time.Duration) {
	n := len(p.ups)
	if n == 1 {
		up := p.ups[0]
		if tried.has(0) {
			return nil, 0
		}
		if up.checkDown.Load() {
			return nil, p.opts.healthInterval
		}
		return up, 0 // failures never mark a lone upstream down
	}
	start := int((p.next.Add(1) - 1) % uint64(n))
	now := p.now().UnixNano()
	wait := time.Duration(math.MaxInt64)
	var best *upstream
	var bestLoad int64
	for i := range n {
		up := p.ups[(start+i)%n]
		if tried.has(up.idx) {
			continue
		}
		if up.checkDown.Load() {
			wait = min(wait, p.opts.healthInterval)
			continue
		}
		if du := up.downUntil.Load(); du != 0 {
			if du > now {
				wait = min(wait, time.Duration(du-now))
				continue
			}
			if up.downUntil.CompareAndSwap(du, now+int64(p.opts.failTimeout)) {
				return up, 0 // the trial request
			}
			continue // another request claimed the trial
		}
		full := up.full()
		if p.opts.balance == balanceRoundRobin && !full {
			return up, 0
		}
		load := up.active.Load()
		if full {
			load = math.MaxInt64 // only when every other one is full too
		}
		if best == nil || load < bestLoad {
			best, bestLoad = up, load
		}
	}
	if best != nil {
		return best, 0
	}
	if wait == time.Duration(math.MaxInt64) {
		wait = 0
	}
	return nil, wait
}

// succeeded records a response from up: its failure count starts over
// and a down mark (a trial that worked) is lifted.
//
// sent is when the attempt was sent (unix ns): a request sent before the
// upstream was marked down, and answered after, says nothing of its state
// now (it died in between) and must not bring it back; the trial request,
// sent after the mark, does.
func (p *proxyApp) succeeded(up *upstream, sent int64) {
	if up.fails.Load() == 0 { // the common case reads, never writes
		return
	}
	if up.downUntil.Load() != 0 && sent < up.downAt.Load() {
		return
	}
	up.fails.Store(0)
	if up.downUntil.Swap(0) != 0 {
		p.log.Info("upstream is up again", "upstream", up.name)
	}
}

// failed records a failed attempt; fail_threshold consecutive ones mark
// the upstream down for fail_timeout.
func (p *proxyApp) failed(up *upstream, err error) {
	up.errors.Add(1)
	f := up.fails.Add(1)
	if !p.passive || f < int64(p.opts.failThreshold) {
		return
	}
	now := p.now()
	up.downAt.Store(now.UnixNano())
	if up.downUntil.Swap(now.Add(p.opts.failTimeout).UnixNano()) == 0 {
		p.log.Warn("upstream marked down", "upstream", up.name, "failures", f, "for", p.opts.failTimeout.String(), "error", err)
	}
}

// StatusUpstreams names the proxy app's report (Config.AddStatus): a
// ProxyStatus.
const StatusUpstreams = "upstreams"

// ProxyStatus is the live state of a proxy section's upstreams: the
// "upstreams" report (Config.AddStatus) of the proxy app, as the
// control socket's GET /v1/upstreams shows it per worker.
type ProxyStatus struct {
	Section   string           `json:"section"`
	Balance   string           `json:"balance"`
	Upstreams []UpstreamStatus `json:"upstreams"`
}

// UpstreamStatus is one upstream in a ProxyStatus.
type UpstreamStatus struct {
	URL string `json:"url"`
	// Healthy says whether the upstream takes requests now.
	Healthy bool `json:"healthy"`
	// State is "up" or "down"; Reason says why it is down: "failures"
	// (passive: fail_threshold consecutive failures) or "health_check".
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Failures is the count of consecutive failed requests.
	Failures int64 `json:"failures"`
	// DownForS is how long a passive down mark lasts still; 0 with
	// State "down" and Reason "failures" means the next request is its
	// trial.
	DownForS float64 `json:"down_for_s,omitempty"`
	// Active is the requests in flight (connections in use, upgraded
	// ones included).
	Active int64 `json:"active"`
	// Check is the active health check: "off", "pending" (none done
	// yet), "passing" or "failing" (the last probe), with its error.
	Check      string `json:"check"`
	CheckError string `json:"check_error,omitempty"`
	// Requests and Errors count the attempts sent to it and those that
	// failed, since the pipeline was built.
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
}

// status is the "upstreams" report.
func (p *proxyApp) status() ProxyStatus {
	st := ProxyStatus{Section: p.section, Balance: p.opts.balance, Upstreams: make([]UpstreamStatus, 0, len(p.ups))}
	now := p.now().UnixNano()
	for _, up := range p.ups {
		u := UpstreamStatus{URL: up.name, State: "up", Healthy: true, Failures: up.fails.Load(), Active: up.active.Load(),
			Requests: up.requests.Load(), Errors: up.errors.Load(), Check: "off"}
		if du := up.downUntil.Load(); du != 0 && p.passive {
			u.State, u.Reason, u.Healthy = "down", "failures", false
			if du > now {
				u.DownForS = time.Duration(du - now).Seconds()
			}
		}
		if up.checkDown.Load() {
			u.State, u.Reason, u.Healthy = "down", "health_check", false
		}
		if up.healthURL != "" {
			up.check.mu.Lock()
			u.Check, u.CheckError = up.check.state, up.check.lastErr
			up.check.mu.Unlock()
			if u.Check == "" {
				u.Check = "pending"
			}
		}
		st.Upstreams = append(st.Upstreams, u)
	}
	return st
}
