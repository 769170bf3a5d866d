package pipeline

import (
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Helpers shared by the built-in catalog (cat_*.go).

// catCloserFunc adapts a function to io.Closer for Config.AddCloser.
type catCloserFunc func() error

func (f catCloserFunc) Close() error { return f() }

// catErr returns a configuration error located at key that wraps err, so
// callers keep both the file:line and errors.Is/As on the cause.
func catErr(c *Config, key, class string, err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if err != nil {
		msg += ": " + err.Error()
	}
	return &Error{Pos: c.PosOf(key), Section: c.Section, Class: class, Msg: msg, Err: err}
}

// catLogger returns the factory's logger, never nil: Config values built by
// hand in tests or programs may leave Logger unset.
func catLogger(c *Config) hclog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return hclog.NewNullLogger()
}

// catAcceptOptions marks options a factory deliberately ignores (oslo.config
// plumbing such as oslo_config_project) as used, so the loader does not
// warn about them.
func catAcceptOptions(c *Config, keys ...string) {
	for _, k := range keys {
		c.Lookup(k)
	}
}

// catResolvePath makes p absolute: relative paths are relative to the
// directory of the config file (%(here)s), as PasteDeploy configs expect,
// falling back to the working directory when here is unknown.
func catResolvePath(c *Config, p string) (string, error) {
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	if here := c.Global["here"]; here != "" {
		return filepath.Join(here, p), nil
	}
	return filepath.Abs(p)
}

// catRequestScheme is the scheme the client used: the one http_proxy_to_wsgi
// recorded in r.URL.Scheme from trusted proxy headers, else from the TLS
// state of the connection.
func catRequestScheme(r *http.Request) string {
	if r.URL != nil && r.URL.Scheme != "" {
		return r.URL.Scheme
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// catRemoteIP parses the IP of r.RemoteAddr without allocating. ok is false
// for peers that are not IP sockets (unix sockets report "@" or "").
func catRemoteIP(r *http.Request) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(r.RemoteAddr); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// catParsePrefixes parses a list of IPs and CIDRs; "*" yields all=true.
func catParsePrefixes(c *Config, key string, items []string) (prefixes []netip.Prefix, all bool, err error) {
	for _, it := range items {
		if it == "*" {
			all = true
			continue
		}
		if strings.Contains(it, "/") {
			p, perr := netip.ParsePrefix(it)
			if perr != nil {
				return nil, false, catErr(c, key, "ValueError", perr, "%s: bad network %q", key, it)
			}
			prefixes = append(prefixes, netip.PrefixFrom(p.Addr().Unmap(), catUnmappedBits(p)).Masked())
			continue
		}
		a, perr := netip.ParseAddr(it)
		if perr != nil {
			return nil, false, catErr(c, key, "ValueError", perr, "%s: bad address %q", key, it)
		}
		a = a.Unmap()
		prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	return prefixes, all, nil
}

// catUnmappedBits converts the prefix length of an IPv4-mapped IPv6 network
// (::ffff:10.0.0.0/104) to its IPv4 length, so it matches unmapped peers.
func catUnmappedBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}
	return p.Bits()
}

func catPrefixesContain(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// catWriteText answers with a short plain-text body. It drops a
// Content-Length an inner handler may have set for a body it never wrote.
func catWriteText(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Del("Content-Encoding")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// catServerPort is the local port that accepted the request (WSGI's
// SERVER_PORT), falling back to the Host header and then the scheme's
// default port.
func catServerPort(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(interface{ String() string }); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return strconv.Itoa(int(ap.Port()))
		}
	}
	if _, port, ok := catSplitHostPort(r.Host); ok && port != "" {
		return port
	}
	if catRequestScheme(r) == "https" {
		return "443"
	}
	return "80"
}

// catSplitHostPort splits "host", "host:port", "[v6]" and "[v6]:port"
// without allocating. ok is false for malformed brackets.
func catSplitHostPort(hostport string) (host, port string, ok bool) {
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", "", false
		}
		host, rest := hostport[1:end], hostport[end+1:]
		if rest == "" {
			return host, "", true
		}
		if rest[0] != ':' {
			return "", "", false
		}
		return host, rest[1:], true
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		if strings.IndexByte(hostport[:i], ':') >= 0 {
			// A bare IPv6 address without brackets has no port.
			return hostport, "", true
		}
		return hostport[:i], hostport[i+1:], true
	}
	return hostport, "", true
}
