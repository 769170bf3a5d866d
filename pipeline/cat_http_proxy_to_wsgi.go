package pipeline

import (
	"net/http"
	"net/netip"
	"strings"

	"paddock/forwarded"
)

// httpProxyToWSGIFactory applies the client-facing scheme, host and mount
// prefix reported by a trusted reverse proxy, like
// oslo_middleware.http_proxy_to_wsgi.HTTPProxyToWSGI.
func httpProxyToWSGIFactory() Factory {
	return Filter("honours Forwarded / X-Forwarded-* from trusted proxies (oslo.middleware http_proxy_to_wsgi)", newHTTPProxyToWSGI)
}

type proxyHeaders struct {
	trusted  []netip.Prefix
	trustAll bool
}

func newHTTPProxyToWSGI(c *Config) (Middleware, error) {
	catAcceptOptions(c, "oslo_config_project", "oslo_config_file", "oslo_config_program")
	enabled, err := c.Bool("enable_proxy_headers_parsing", false)
	if err != nil {
		return nil, err
	}
	allow := []string{"127.0.0.1", "::1"}
	if _, ok := c.Lookup("forwarded_allow_ips"); ok {
		allow = c.List("forwarded_allow_ips")
	}
	f := &proxyHeaders{}
	if f.trusted, f.trustAll, err = catParsePrefixes(c, "forwarded_allow_ips", allow); err != nil {
		return nil, err
	}
	if !enabled {
		// oslo's default: the headers are not looked at at all.
		return func(next http.Handler) http.Handler { return next }, nil
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !f.trusts(r) {
				next.ServeHTTP(w, r)
				return
			}
			proto, host, prefix := forwardedValues(r.Header)
			if proto == "" && host == "" && prefix == "" {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, applyForwarded(r, proto, host, prefix))
		})
	}, nil
}

// trusts reports whether the peer may set forwarding headers. Like
// gunicorn, a peer that is not an IP socket (a unix socket) is trusted: only
// a local front end can reach it. The peer is the connection's, not the
// client address the server took from X-Forwarded-For
// (forwarded_allow_ips in [server:main]; forwarded.Peer).
func (f *proxyHeaders) trusts(r *http.Request) bool {
	if f.trustAll {
		return true
	}
	ip, ok := catRemoteIP(&http.Request{RemoteAddr: forwarded.Peer(r)})
	if !ok {
		return true
	}
	return catPrefixesContain(f.trusted, ip)
}

// forwardedValues extracts and validates what oslo honours: from Forwarded
// (first element, RFC 7239) or else X-Forwarded-Proto/-Host, plus
// X-Forwarded-Prefix in either case. Invalid values are dropped.
func forwardedValues(h http.Header) (proto, host, prefix string) {
	if fwd := headerFirst(h, "Forwarded"); fwd != "" {
		first, _, _ := strings.Cut(fwd, ",")
		for pair := range strings.SplitSeq(first, ";") {
			k, v, ok := strings.Cut(pair, "=")
			if !ok {
				continue
			}
			k = strings.TrimSpace(k)
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch {
			case strings.EqualFold(k, "proto"):
				proto = v
			case strings.EqualFold(k, "host"):
				host = v
			}
		}
	} else {
		proto = firstListItem(headerFirst(h, "X-Forwarded-Proto"))
		host = firstListItem(headerFirst(h, "X-Forwarded-Host"))
	}
	prefix = strings.TrimSpace(headerFirst(h, "X-Forwarded-Prefix"))

	switch {
	case strings.EqualFold(proto, "https"):
		proto = "https"
	case strings.EqualFold(proto, "http"):
		proto = "http"
	default:
		proto = ""
	}
	if !validForwardedHost(host) {
		host = ""
	}
	prefix = strings.TrimRight(prefix, "/")
	if !validForwardedPrefix(prefix) {
		prefix = ""
	}
	return proto, host, prefix
}

// headerFirst is h.Get for a key already in canonical form: it skips
// re-canonicalising, which matters on a path every request takes.
func headerFirst(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func firstListItem(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

// validForwardedHost accepts host[:port] made of hostname / IP literal
// characters only, so a forged value cannot inject paths or headers.
func validForwardedHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']':
		default:
			return false
		}
	}
	_, _, ok := catSplitHostPort(h)
	return ok
}

// validForwardedPrefix accepts an absolute path without query, fragment,
// control characters or ".." segments.
func validForwardedPrefix(p string) bool {
	if p == "" || p[0] != '/' || len(p) > 1024 || strings.HasPrefix(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '?' || c == '#' || c == '\\' {
			return false
		}
	}
	return !catHasDotDot(p)
}

// applyForwarded returns a shallow copy of r with the forwarded values
// applied: Host and URL.Host for host, URL.Scheme for proto (read by the
// catalog through catRequestScheme) and the prefix prepended to the script
// name.
func applyForwarded(r *http.Request, proto, host, prefix string) *http.Request {
	meta := requestMeta(r)
	if prefix != "" {
		meta.scriptName = prefix + meta.scriptName
	}
	// Request, URL and context in one allocation.
	ur := new(urlRequest)
	r2 := ur.init(r, meta)
	u := &ur.url
	if host != "" {
		r2.Host = host
	}
	if proto != "" {
		u.Scheme = proto
		// An absolute URL needs its host; keep r.URL self-consistent.
		u.Host = r2.Host
	} else if host != "" && u.Host != "" {
		u.Host = host
	}
	return r2
}
