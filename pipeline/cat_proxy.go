package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/forwarded"
)

// proxyFactory forwards requests to one or more upstream HTTP servers, like
// Paste's paste.proxy:make_proxy, with load balancing, passive and active
// health checks and retries over several upstreams.
//
// The pieces: this file reads the options and runs a request (Rewrite for
// the forwarding headers, RoundTrip for balancing and retries, the error
// answers); cat_proxy_upstream.go is an upstream's health and counters;
// cat_proxy_h1.go the fast HTTP/1.1 connection pool bodyless requests to
// plain-http upstreams use; cat_proxy_health.go the goroutine of active
// health checks and idle connection reaping.
func proxyFactory() Factory {
	return App("reverse proxy to one or more upstreams (Paste's paste.proxy)", newProxyApp)
}

// Defaults; see docs/catalog.md.
const (
	proxyDefaultConnectTimeout  = 10 * time.Second
	proxyDefaultIdleConnTimeout = 90 * time.Second
	proxyDefaultMaxIdle         = 64
	proxyDefaultFailThreshold   = 3
	proxyDefaultFailTimeout     = 10 * time.Second
	proxyDefaultHealthInterval  = 5 * time.Second
	proxyDefaultHealthTimeout   = 2 * time.Second
	proxyDefaultHealthFails     = 2
	proxyDefaultHealthPasses    = 2
	// proxyCopyBufferSize is the size of the buffers that copy response
	// bodies (ReverseProxy's own default, but pooled).
	proxyCopyBufferSize = 32 << 10
)

// Balancing policies (the balance option).
const (
	balanceRoundRobin = "round_robin"
	balanceLeastConn  = "least_conn"
)

// proxyOptions are the options of a proxy section, resolved.
type proxyOptions struct {
	targets         []*url.URL
	balance         string
	retries         int
	failThreshold   int
	failTimeout     time.Duration
	connectTimeout  time.Duration
	headerTimeout   time.Duration
	idleTimeout     time.Duration
	maxConns        int
	maxIdle         int
	healthPath      string
	healthInterval  time.Duration
	healthTimeout   time.Duration
	healthFails     int
	healthPasses    int
	allowedMethods  []string
	suppressHeaders []string
	tls             *tls.Config // nil: Go's defaults for https:// upstreams
}

// proxyAliases are the older names of options (the first releases' and
// nginx's): either name may be given, not both.
var proxyAliases = map[string]string{
	"connect_timeout": "dial_timeout",
	"fail_threshold":  "max_fails",
	"max_idle_conns":  "max_idle_conns_per_host",
}

// proxyKey returns which of key and its alias the section sets (key when
// neither), or an error when both are.
func proxyKey(c *Config, key string) (string, error) {
	alias := proxyAliases[key]
	_, hasKey := c.Lookup(key)
	_, hasAlias := c.Lookup(alias)
	switch {
	case hasKey && hasAlias:
		return "", c.Errorf(alias, "%s: give %s or %s, not both", alias, key, alias)
	case hasAlias:
		return alias, nil
	}
	return key, nil
}

func proxyNonNegative(c *Config, key string, def int) (int, error) {
	n, err := c.Int(key, def)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, c.Errorf(key, "%s: must not be negative, got %d", key, n)
	}
	return n, nil
}

func parseProxyOptions(c *Config) (*proxyOptions, error) {
	o := &proxyOptions{}
	var err error
	if o.targets, err = parseProxyTargets(c); err != nil {
		return nil, err
	}
	if err := parseProxyBalancing(c, o); err != nil {
		return nil, err
	}
	if err := parseProxyHealth(c, o); err != nil {
		return nil, err
	}
	o.allowedMethods = c.List("allowed_request_methods")
	for _, h := range c.List("suppress_http_headers") {
		o.suppressHeaders = append(o.suppressHeaders, textproto.CanonicalMIMEHeaderKey(h))
	}
	if o.tls, err = parseProxyTLS(c); err != nil {
		return nil, err
	}
	return o, nil
}

// parseProxyTargets reads address or upstreams: absolute http(s) URLs,
// each once, without user info (errors never show a password).
func parseProxyTargets(c *Config) ([]*url.URL, error) {
	var targets []*url.URL
	var raw []string
	addrKey := ""
	if v, ok := c.Lookup("address"); ok && strings.TrimSpace(v) != "" {
		raw = append(raw, strings.TrimSpace(v))
		addrKey = "address"
	}
	if ups := c.List("upstreams"); len(ups) > 0 {
		if addrKey != "" {
			return nil, c.Errorf("upstreams", "upstreams: give either address or upstreams, not both")
		}
		raw = ups
		addrKey = "upstreams"
	}
	if len(raw) == 0 {
		return nil, c.Errorf("address", "address: required option is missing (or give upstreams)")
	}
	seen := make(map[string]bool, len(raw))
	for _, t := range raw {
		u, err := url.Parse(t)
		if err != nil {
			// Messages are logged and shown by ctl: no password in them.
			// *url.Error repeats the URL, and its cause may quote a part.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			if strings.Contains(t, "@") {
				err = nil
			}
			return nil, catErr(c, addrKey, "ValueError", err, "%s: bad upstream URL %q", addrKey, redactURL(t))
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, c.Errorf(addrKey, "%s: upstream %q must be an absolute http:// or https:// URL", addrKey, u.Redacted())
		}
		if u.User != nil || u.Fragment != "" {
			return nil, c.Errorf(addrKey, "%s: upstream %q must not carry user info or a fragment", addrKey, u.Redacted())
		}
		if seen[u.String()] {
			return nil, c.Errorf(addrKey, "%s: upstream %q is listed twice", addrKey, t)
		}
		seen[u.String()] = true
		targets = append(targets, u)
	}

	return targets, nil
}

// parseProxyBalancing reads the balancing, retry, passive health and
// connection options into o.
func parseProxyBalancing(c *Config, o *proxyOptions) error {
	var err error
	o.balance = strings.ToLower(strings.TrimSpace(c.String("balance", balanceRoundRobin)))
	if o.balance != balanceRoundRobin && o.balance != balanceLeastConn {
		return c.Errorf("balance", "balance: want %s or %s, got %q", balanceRoundRobin, balanceLeastConn, o.balance)
	}
	if o.retries, err = proxyNonNegative(c, "retries", len(o.targets)-1); err != nil {
		return err
	}
	key, err := proxyKey(c, "fail_threshold")
	if err != nil {
		return err
	}
	if o.failThreshold, err = proxyNonNegative(c, key, proxyDefaultFailThreshold); err != nil {
		return err
	}
	if o.failTimeout, err = c.Duration("fail_timeout", proxyDefaultFailTimeout); err != nil {
		return err
	}
	if key, err = proxyKey(c, "connect_timeout"); err != nil {
		return err
	}
	if o.connectTimeout, err = c.Duration(key, proxyDefaultConnectTimeout); err != nil {
		return err
	}
	if o.headerTimeout, err = c.Duration("response_header_timeout", 0); err != nil {
		return err
	}
	if o.idleTimeout, err = c.Duration("idle_conn_timeout", proxyDefaultIdleConnTimeout); err != nil {
		return err
	}
	if o.maxConns, err = proxyNonNegative(c, "max_conns_per_upstream", 0); err != nil {
		return err
	}
	if key, err = proxyKey(c, "max_idle_conns"); err != nil {
		return err
	}
	if o.maxIdle, err = proxyNonNegative(c, key, proxyDefaultMaxIdle); err != nil {
		return err
	}

	return nil
}

// parseProxyHealth reads the active health check options into o; with
// health_path set they must be usable.
func parseProxyHealth(c *Config, o *proxyOptions) error {
	var err error
	if v, ok := c.Lookup("health_path"); ok && strings.TrimSpace(v) != "" {
		o.healthPath = strings.TrimSpace(v)
		hp, err := url.Parse(o.healthPath)
		if err != nil || !strings.HasPrefix(o.healthPath, "/") || hp.Scheme != "" || hp.Host != "" || hp.Fragment != "" {
			return c.Errorf("health_path", "health_path: want an absolute path such as /healthz, got %q", o.healthPath)
		}
	}
	if o.healthInterval, err = c.Duration("health_interval", proxyDefaultHealthInterval); err != nil {
		return err
	}
	if o.healthTimeout, err = c.Duration("health_timeout", proxyDefaultHealthTimeout); err != nil {
		return err
	}
	if o.healthFails, err = c.Int("health_fails", proxyDefaultHealthFails); err != nil {
		return err
	}
	if o.healthPasses, err = c.Int("health_passes", proxyDefaultHealthPasses); err != nil {
		return err
	}
	if o.healthPath != "" {
		switch {
		case o.healthInterval <= 0:
			return c.Errorf("health_interval", "health_interval: must be positive")
		case o.healthTimeout <= 0:
			return c.Errorf("health_timeout", "health_timeout: must be positive")
		case o.healthFails < 1:
			return c.Errorf("health_fails", "health_fails: must be at least 1, got %d", o.healthFails)
		case o.healthPasses < 1:
			return c.Errorf("health_passes", "health_passes: must be at least 1, got %d", o.healthPasses)
		}
	}
	return nil
}

func newProxyApp(c *Config) (http.Handler, error) {
	o, err := parseProxyOptions(c)
	if err != nil {
		return nil, err
	}
	p := &proxyApp{
		opts:    o,
		now:     time.Now,
		log:     catLogger(c),
		section: c.Section,
	}
	if p.section == "" {
		p.section = c.Spec
	}
	if len(o.allowedMethods) > 0 {
		p.allowed = make(map[string]bool, len(o.allowedMethods))
		for _, m := range o.allowedMethods {
			p.allowed[strings.ToUpper(m)] = true
		}
		p.allowHeader = strings.ToUpper(strings.Join(o.allowedMethods, ", "))
	}

	dialer := &net.Dialer{Timeout: o.connectTimeout, KeepAlive: 30 * time.Second}
	// The standard transport carries what the HTTP/1.1 pool does not:
	// https upstreams, requests with a body and protocol upgrades. Its
	// pools are per host, so shared by every upstream of this proxy.
	p.std = &http.Transport{
		// Paste's proxy connects directly; environment proxies would
		// silently reroute backend traffic.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(100, o.maxIdle*len(o.targets)),
		MaxIdleConnsPerHost:   o.maxIdle,
		DisableKeepAlives:     o.maxIdle == 0,
		MaxConnsPerHost:       o.maxConns,
		IdleConnTimeout:       o.idleTimeout,
		TLSClientConfig:       o.tls,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: o.headerTimeout,
		ExpectContinueTimeout: 1 * time.Second,
	}
	for i, t := range o.targets {
		up := newUpstream(i, t, o, dialer.DialContext)
		p.ups = append(p.ups, up)
	}
	p.passive = o.failThreshold > 0 && len(p.ups) > 1

	errLog := p.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	p.rp = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    p,
		ErrorLog:     errLog,
		ErrorHandler: p.errorHandler,
		BufferPool:   proxyBufferPool{},
	}

	// maintain (idle reaping, health probes) runs once the pipeline
	// serves, never while it is only built: a reload's validation and
	// paddock check send nothing to the upstreams. Exactly one of start
	// and the closer's startOnce.Do runs, so done is closed either way.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var startOnce sync.Once
	c.OnStart(func() {
		startOnce.Do(func() {
			go func() { // owned by the closer below
				defer close(done)
				p.maintain(ctx)
			}()
		})
	})
	c.AddCloser(catCloserFunc(func() error {
		cancel()
		startOnce.Do(func() { close(done) })
		<-done
		for _, up := range p.ups {
			if up.h1 != nil {
				up.h1.closeIdle()
			}
		}
		p.std.CloseIdleConnections()
		return nil
	}))
	c.AddStatus(StatusUpstreams, func() any { return p.status() })
	return p, nil
}

// proxyApp is one proxy section: its upstreams, the ReverseProxy in front
// of them and the transports behind.
type proxyApp struct {
	opts        *proxyOptions
	ups         []*upstream
	next        atomic.Uint64 // round robin position
	passive     bool          // passive health checks on (fail_threshold > 0 and several upstreams)
	rp          *httputil.ReverseProxy
	std         *http.Transport
	allowed     map[string]bool // nil: every method
	allowHeader string
	section     string
	now         func() time.Time
	log         hclog.Logger
}

func (p *proxyApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.allowed != nil && !p.allowed[r.Method] {
		w.Header().Set("Allow", p.allowHeader)
		catWriteText(w, http.StatusMethodNotAllowed, "405 Method Not Allowed\n")
		return
	}
	p.rp.ServeHTTP(w, r)
}

// rewrite sets the forwarding headers; the upstream (and so the URL and
// Host) is chosen per attempt in RoundTrip.
//
// Trust is the server's (forwarded_allow_ips, package forwarded): it
// strips every forwarding header of a peer it does not trust before the
// pipeline sees the request, and for a trusted one keeps them and makes
// the request's address and scheme the client's. So an X-Forwarded-For
// that reaches the proxy is a trusted chain, and the connection's peer
// (forwarded.Peer) is appended to it, as nginx's
// $proxy_add_x_forwarded_for; without one X-Forwarded-For is the peer.
// X-Forwarded-Proto is the scheme the client used (TLS on this hop, or
// what a trusted proxy reported), X-Forwarded-Host the Host it asked for,
// X-Forwarded-Prefix the script name (the urlmap mount, plus a prefix
// http_proxy_to_wsgi took from a trusted proxy). Forwarded and a
// client's own X-Forwarded-Host, -Proto and -Prefix are never passed on.
func (p *proxyApp) rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out.Header
	// The scheme: TLS on this hop, or what the server (a trusted proxy's
	// secure scheme headers) or http_proxy_to_wsgi established.
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	if pr.In.URL.Scheme != "" {
		proto = pr.In.URL.Scheme
	}
	out.Set("X-Forwarded-Proto", proto)
	out.Set("X-Forwarded-Host", pr.In.Host)
	peer := ""
	if host, _, err := net.SplitHostPort(forwarded.Peer(pr.In)); err == nil {
		peer = host
	}
	switch chain := pr.In.Header["X-Forwarded-For"]; {
	case len(chain) > 0 && peer != "":
		out.Set("X-Forwarded-For", strings.Join(chain, ", ")+", "+peer)
	case len(chain) > 0:
		out.Set("X-Forwarded-For", strings.Join(chain, ", "))
	case peer != "":
		out.Set("X-Forwarded-For", peer)
	default: // a unix socket peer and no chain
		out.Del("X-Forwarded-For")
	}
	// A client's own prefix is never passed on: the script name already
	// includes a trusted one.
	if sn := ScriptName(pr.In); sn != "" {
		out.Set("X-Forwarded-Prefix", sn)
	} else {
		out.Del("X-Forwarded-Prefix")
	}
	for _, h := range p.opts.suppressHeaders {
		out.Del(h)
	}
	if _, ok := out["Upgrade"]; ok {
		pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), upgradeKey{}, &upgradeHolder{}))
	}
}

// Errors RoundTrip returns besides the transports' own.
var (
	// errUpstreamsDown: every upstream is marked down (passive or active
	// health checks); nothing was tried. 503 with Retry-After.
	errUpstreamsDown = errors.New("every upstream is marked down")
	// errUpstreamBusy: the upstream has max_conns_per_upstream requests
	// in flight and none finished within connect_timeout. Not a health
	// failure; 503.
	errUpstreamBusy = errors.New("upstream is at max_conns_per_upstream")
)

// downError is errUpstreamsDown with the time until an upstream may take
// requests again.
type downError struct{ retryAfter time.Duration }

func (e *downError) Error() string { return errUpstreamsDown.Error() }
func (e *downError) Unwrap() error { return errUpstreamsDown }

// attemptError is a failed attempt on one upstream.
type attemptError struct {
	up  *upstream
	err error
}

func (e *attemptError) Error() string {
	return fmt.Sprintf("upstream %s: %v", e.up.name, e.err)
}
func (e *attemptError) Unwrap() error { return e.err }

// RoundTrip is the ReverseProxy's transport: it picks an upstream, sends
// the request there and, when that fails before a response came, tries
// another one as long as the request can be repeated safely:
//
//   - never when the client went away, or retries attempts were made;
//   - a request that was never sent (the connection could not be made,
//     or the upstream was at max_conns_per_upstream) may go elsewhere
//     whatever its method, as long as no byte of its body was read;
//   - a request that was sent is repeated only when its method is
//     idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or it carries
//     Idempotency-Key) and it has no body.
//
// Nothing of the response has reached the client at that point: the
// ReverseProxy writes only after RoundTrip returns one.
func (p *proxyApp) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var body *countingBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &countingBody{rc: req.Body}
		req.Body = body
	}
	orig := *req.URL
	var tried upstreamSet
	if len(p.ups) > 64 {
		tried.more = make([]bool, len(p.ups))
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		up, retryAfter := p.pick(&tried)
		if up == nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, &downError{retryAfter: retryAfter}
		}
		tried.add(up.idx)
		r := req
		if attempt > 0 {
			// A failed attempt's request may still be read by the
			// standard transport's writer: never change it.
			r = req.WithContext(ctx)
			u := orig
			r.URL = &u
		}
		up.target(r)
		sent := p.now().UnixNano()
		resp, err := up.roundTrip(r, p)
		if err == nil {
			p.succeeded(up, sent)
			return resp, nil
		}
		if cerr := body.readErr(); cerr != nil {
			// The client's body failed (too slow for
			// client_body_timeout, too large for sizelimit, cut off):
			// the upstream is not at fault, and nothing can be retried.
			return nil, &clientBodyError{err: cerr}
		}
		failed := ctx.Err() == nil && !errors.Is(err, errUpstreamBusy)
		if failed {
			p.failed(up, err)
		}
		lastErr = &attemptError{up: up, err: err}
		retry := ctx.Err() == nil && attempt < p.opts.retries && (body == nil || body.n.Load() == 0) &&
			(notSent(err) || (body == nil && idempotent(req)))
		if failed {
			p.log.Warn("upstream request failed", "upstream", up.name, "method", req.Method, "path", orig.Path,
				"request_id", RequestID(req), "error", err, "retry", retry)
		}
		if !retry {
			return nil, lastErr
		}
	}
}

// notSent reports whether err means the request never left for the
// upstream: the connection could not be made, or no slot freed up.
func notSent(err error) bool {
	if errors.Is(err, errUpstreamBusy) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// idempotent reports whether repeating req has the effect of sending it
// once (RFC 9110 §9.2.2), as net/http's Transport decides it.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	// The Transport's convention: a key makes a request replayable.
	if _, ok := req.Header["Idempotency-Key"]; ok {
		return true
	}
	_, ok := req.Header["X-Idempotency-Key"]
	return ok
}

// countingBody counts the bytes the transports read from a request body,
// so a body that was not touched can be sent again, and keeps the error
// reading it from the client, if any, so that failure is not taken for
// the upstream's. The standard transport reads it from its own goroutine.
type countingBody struct {
	rc  io.ReadCloser
	n   atomic.Int64
	err atomic.Pointer[error]
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.n.Add(int64(n))
	}
	if err != nil && err != io.EOF {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// readErr is the error reading the client's body; nil for no body.
func (b *countingBody) readErr() error {
	if b == nil {
		return nil
	}
	if e := b.err.Load(); e != nil {
		return *e
	}
	return nil
}

// clientBodyError is a request that failed because its body could not be
// read from the client.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// Close does nothing: the ReverseProxy closes the request body (and
// passes one whose Close is a no-op already).
func (b *countingBody) Close() error { return nil }

// errorHandler answers a request no upstream answered:
//   - the client's body could not be read: 413 past a size limit
//     (sizelimit), 408 when it stalled (client_body_timeout), else 400 —
//     with Connection: close, as nginx does;
//   - every upstream marked down: 503 with Retry-After;
//   - an upstream at max_conns_per_upstream: 503;
//   - a timeout (connect_timeout, response_header_timeout): 504;
//   - anything else (refused, reset, a malformed response): 502.
func (p *proxyApp) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if h, ok := r.Context().Value(upgradeKey{}).(*upgradeHolder); ok {
		if c := h.conn.Load(); c != nil {
			c.Close() // an upgrade the ReverseProxy gave up on
		}
	}
	var (
		de *downError
		ce *clientBodyError
		me *http.MaxBytesError
	)
	switch {
	case errors.As(err, &ce):
		w.Header().Set("Connection", "close")
		switch {
		case errors.As(err, &me):
			catWriteText(w, http.StatusRequestEntityTooLarge, "413 Request Entity Too Large\n")
		case isTimeout(err):
			catWriteText(w, http.StatusRequestTimeout, "408 Request Timeout: the request body stalled\n")
		default:
			catWriteText(w, http.StatusBadRequest, "400 Bad Request: the request body could not be read\n")
		}
	case errors.As(err, &de):
		if r.Context().Err() == nil {
			p.log.Warn("no upstream to send the request to: every upstream is down", "method", r.Method, "path", r.URL.Path, "request_id", RequestID(r))
		}
		secs := int((de.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
		catWriteText(w, http.StatusServiceUnavailable, "503 Service Unavailable: no upstream is available\n")
	case errors.Is(err, errUpstreamBusy):
		w.Header().Set("Retry-After", "1")
		catWriteText(w, http.StatusServiceUnavailable, "503 Service Unavailable: upstreams are busy\n")
	case isTimeout(err):
		catWriteText(w, http.StatusGatewayTimeout, "504 Gateway Timeout\n")
	default:
		var ae *attemptError
		if !errors.As(err, &ae) && r.Context().Err() == nil {
			// Not from RoundTrip (already logged there): ReverseProxy's
			// own checks, such as a bad Upgrade from the upstream.
			p.log.Warn("proxy error", "method", r.Method, "path", r.URL.Path, "request_id", RequestID(r), "error", err)
		}
		catWriteText(w, http.StatusBadGateway, "502 Bad Gateway\n")
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// proxyBufferPool recycles the buffers response bodies are copied
// through: a fresh 32 KiB buffer per request costs more than the rest of
// the proxying.
type proxyBufferPool struct{}

var proxyBuffers = sync.Pool{New: func() any {
	b := make([]byte, proxyCopyBufferSize)
	return &b
}}

func (proxyBufferPool) Get() []byte { return *proxyBuffers.Get().(*[]byte) }

func (proxyBufferPool) Put(b []byte) {
	if cap(b) == proxyCopyBufferSize {
		b = b[:proxyCopyBufferSize]
		proxyBuffers.Put(&b)
	}
}

// redactURL is raw with the password of its user info hidden, for
// messages, even when url.Parse refuses raw.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			return scheme + "://xxxxx@" + rest[at+1:]
		}
	}
	return raw
}
