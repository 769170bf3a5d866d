package pipeline

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// proxyFactory forwards requests to one or more upstream HTTP servers, like
// Paste's paste.proxy:make_proxy, with round robin and passive health
// checks over several upstreams.
func proxyFactory() Factory {
	return App("reverse proxy to one or more upstreams (Paste's paste.proxy)", newProxyApp)
}

// Defaults for the transport; see docs/catalog.md.
const (
	proxyDefaultDialTimeout     = 10 * time.Second
	proxyDefaultIdleConnTimeout = 90 * time.Second
	proxyDefaultMaxIdlePerHost  = 64
	proxyDefaultMaxFails        = 3
	proxyDefaultFailTimeout     = 10 * time.Second
)

func newProxyApp(c *Config) (http.Handler, error) {
	var targets []string
	addrKey := ""
	if v, ok := c.Lookup("address"); ok && strings.TrimSpace(v) != "" {
		targets = append(targets, strings.TrimSpace(v))
		addrKey = "address"
	}
	if ups := c.List("upstreams"); len(ups) > 0 {
		if addrKey != "" {
			return nil, c.Errorf("upstreams", "upstreams: give either address or upstreams, not both")
		}
		targets = ups
		addrKey = "upstreams"
	}
	if len(targets) == 0 {
		return nil, c.Errorf("address", "address: required option is missing (or give upstreams)")
	}

	dialTimeout, err := c.Duration("dial_timeout", proxyDefaultDialTimeout)
	if err != nil {
		return nil, err
	}
	headerTimeout, err := c.Duration("response_header_timeout", 0)
	if err != nil {
		return nil, err
	}
	idleTimeout, err := c.Duration("idle_conn_timeout", proxyDefaultIdleConnTimeout)
	if err != nil {
		return nil, err
	}
	maxIdle, err := c.Int("max_idle_conns_per_host", proxyDefaultMaxIdlePerHost)
	if err != nil {
		return nil, err
	}
	if maxIdle < 0 {
		return nil, c.Errorf("max_idle_conns_per_host", "max_idle_conns_per_host: must not be negative, got %d", maxIdle)
	}
	maxFails, err := c.Int("max_fails", proxyDefaultMaxFails)
	if err != nil {
		return nil, err
	}
	if maxFails < 0 {
		return nil, c.Errorf("max_fails", "max_fails: must not be negative, got %d", maxFails)
	}
	failTimeout, err := c.Duration("fail_timeout", proxyDefaultFailTimeout)
	if err != nil {
		return nil, err
	}

	p := &proxyApp{maxFails: int64(maxFails), failTimeout: failTimeout, now: time.Now, log: catLogger(c)}
	if methods := c.List("allowed_request_methods"); len(methods) > 0 {
		p.allowed = make(map[string]bool, len(methods))
		for _, m := range methods {
			p.allowed[strings.ToUpper(m)] = true
		}
		p.allowHeader = strings.ToUpper(strings.Join(methods, ", "))
	}
	for _, h := range c.List("suppress_http_headers") {
		p.suppress = append(p.suppress, textproto.CanonicalMIMEHeaderKey(h))
	}

	// One transport per factory instance: its connection pool is shared by
	// every upstream of this proxy and closed with the pipeline.
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	p.transport = &http.Transport{
		// Paste's proxy connects directly; environment proxies would
		// silently reroute backend traffic.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(100, maxIdle*len(targets)),
		MaxIdleConnsPerHost:   maxIdle,
		IdleConnTimeout:       idleTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: 1 * time.Second,
	}
	c.AddCloser(catCloserFunc(func() error {
		p.transport.CloseIdleConnections()
		return nil
	}))

	errLog := p.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil {
			return nil, catErr(c, addrKey, "ValueError", err, "%s: bad upstream URL %q", addrKey, t)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, c.Errorf(addrKey, "%s: upstream %q must be an absolute http:// or https:// URL", addrKey, t)
		}
		if u.User != nil || u.Fragment != "" {
			return nil, c.Errorf(addrKey, "%s: upstream %q must not carry user info or a fragment", addrKey, t)
		}
		up := &upstream{target: u}
		up.proxy = &httputil.ReverseProxy{
			Rewrite:        p.rewriter(up),
			Transport:      p.transport,
			ErrorLog:       errLog,
			ErrorHandler:   p.errorHandler(up),
			ModifyResponse: up.modifyResponse,
		}
		p.ups = append(p.ups, up)
	}
	return p, nil
}

type proxyApp struct {
	ups         []*upstream
	next        atomic.Uint64
	maxFails    int64
	failTimeout time.Duration
	transport   *http.Transport
	allowed     map[string]bool // nil: every method
	allowHeader string
	suppress    []string
	now         func() time.Time
	log         hclog.Logger
}

// upstream is one backend with its passive health state.
type upstream struct {
	target    *url.URL
	proxy     *httputil.ReverseProxy
	fails     atomic.Int64 // consecutive failures
	downUntil atomic.Int64 // unix nanoseconds; skipped until then
}

func (p *proxyApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.allowed != nil && !p.allowed[r.Method] {
		w.Header().Set("Allow", p.allowHeader)
		catWriteText(w, http.StatusMethodNotAllowed, "405 Method Not Allowed\n")
		return
	}
	p.pick().proxy.ServeHTTP(w, r)
}

// pick returns the next upstream in round robin order that is not marked
// down. When all are down it returns the round robin choice anyway: failing
// open lets a recovered backend be noticed, and a 502 from a dead backend is
// no worse than one invented here.
func (p *proxyApp) pick() *upstream {
	n := uint64(len(p.ups))
	if n == 1 {
		return p.ups[0]
	}
	start := p.next.Add(1) - 1
	now := p.now().UnixNano()
	for i := range n {
		u := p.ups[(start+i)%n]
		if u.downUntil.Load() <= now {
			return u
		}
	}
	return p.ups[start%n]
}

func (p *proxyApp) rewriter(up *upstream) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		pr.SetURL(up.target)
		pr.SetXForwarded()
		// SetXForwarded only knows about TLS on this hop; a scheme
		// established by http_proxy_to_wsgi from a trusted proxy wins.
		if pr.In.URL.Scheme != "" {
			pr.Out.Header.Set("X-Forwarded-Proto", pr.In.URL.Scheme)
		}
		// Like the other X-Forwarded-* headers, a client's own prefix is
		// never passed on: the script name already includes a trusted one.
		if sn := ScriptName(pr.In); sn != "" {
			pr.Out.Header.Set("X-Forwarded-Prefix", sn)
		} else {
			pr.Out.Header.Del("X-Forwarded-Prefix")
		}
		for _, h := range p.suppress {
			pr.Out.Header.Del(h)
		}
	}
}

func (p *proxyApp) errorHandler(up *upstream) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		// A client that went away is not the upstream's fault.
		if r.Context().Err() == nil {
			p.markFailure(up)
			p.log.Warn("upstream request failed", "upstream", up.target.Redacted(), "method", r.Method, "path", r.URL.Path, "request_id", RequestID(r), "error", err)
		}
		catWriteText(w, http.StatusBadGateway, "502 Bad Gateway\n")
	}
}

func (p *proxyApp) markFailure(up *upstream) {
	if p.maxFails == 0 || len(p.ups) == 1 {
		return
	}
	// fails is not reset when the upstream is marked down: after
	// fail_timeout it gets one trial request, and a single further failure
	// takes it out again; only a response resets the count.
	if up.fails.Add(1) >= p.maxFails {
		up.downUntil.Store(p.now().Add(p.failTimeout).UnixNano())
	}
}

func (up *upstream) modifyResponse(*http.Response) error {
	// Load first: avoids a write to a shared cache line on every response.
	if up.fails.Load() != 0 {
		up.fails.Store(0)
		up.downUntil.Store(0)
	}
	return nil
}
