package pipeline

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// urlmapFactory dispatches on path prefix (and optionally host), like
// Paste's paste.urlmap:urlmap_factory.
func urlmapFactory() Factory {
	return Composite("dispatches by path prefix and host to named apps (Paste's urlmap)", newURLMap)
}

type urlmapEntry struct {
	domain  string // canonical host or host:port ([v6] bracketed); "" matches any host
	host    urlmapHost
	prefix  string // normalised: no trailing slash, "" for the root
	app     http.Handler
	keyText string // the key as written, for messages
}

// urlmapHost is the host part of a key, ready for comparison with a
// request's Host without allocating.
type urlmapHost struct {
	name string     // lower case, no trailing dot; "" for an IP literal
	ip   netip.Addr // valid for an IP literal (IPv4, or IPv6 from [v6])
	port int        // 0: any port
}

type urlMap struct {
	entries  []urlmapEntry
	notFound http.Handler // nil: plain 404
}

func newURLMap(c *Config, apps AppLoader) (http.Handler, error) {
	m := &urlMap{}
	if name, ok := c.Lookup("not_found_app"); ok && strings.TrimSpace(name) != "" {
		h, err := urlmapLoadApp(c, apps, "not_found_app", strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		m.notFound = h
	} else if name := strings.TrimSpace(c.Global["not_found_app"]); name != "" {
		// Paste falls back to the global not_found_app too.
		h, err := urlmapLoadApp(c, apps, "not_found_app", name)
		if err != nil {
			return nil, err
		}
		m.notFound = h
	}

	// Only URL-like keys name apps (the loader's IsURLKey, shared with the
	// graph output); anything else is left unused so the loader reports it.
	var keys []string
	for _, k := range c.Keys() {
		if IsURLKey(k) {
			keys = append(keys, k)
			continue
		}
		// "http://host/p = app" in an INI file is the option "http" with
		// the value "//host/p = app": the name ends at the first ':'.
		// Paste fails on it (the key is not a URL); say why.
		if v := c.Local[k]; (k == "http" || k == "https") && strings.HasPrefix(strings.TrimSpace(v), "//") {
			c.Lookup(k)
			msg := fmt.Sprintf("%s:%s: an option name ends at the first ':' or '=', so this is the option %q; write \"domain HOST [port N] /path = app\"", k, strings.TrimSpace(v), k)
			return nil, &Error{Pos: c.PosOf(k), Section: c.Section, Class: "AssertionError", Msg: msg}
		}
	}
	// Keys come in file order; like Paste, a later key mapping the same
	// location replaces the earlier one.
	seen := map[[2]string]int{}
	for _, key := range keys {
		expr, err := parsePathExpression(key)
		if err != nil {
			msg := err.Error()
			if v := c.Local[key]; strings.HasPrefix(v, ":") {
				msg += " (an option name ends at the first ':' or '=': an IPv6 address cannot be written in a key)"
			}
			return nil, &Error{Pos: c.PosOf(key), Section: c.Section, Class: "ValueError", Msg: msg, Err: err}
		}
		domain, prefix, err := normalizeURLMapKey(expr)
		if err != nil {
			return nil, &Error{Pos: c.PosOf(key), Section: c.Section, Class: "AssertionError", Msg: err.Error(), Err: err}
		}
		var host urlmapHost
		if domain != "" {
			if host, domain, err = parseURLMapDomain(domain); err != nil {
				return nil, &Error{Pos: c.PosOf(key), Section: c.Section, Class: "ValueError", Msg: key + ": " + err.Error(), Err: err}
			}
		}
		name, _ := c.Lookup(key)
		h, err := urlmapLoadApp(c, apps, key, strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		entry := urlmapEntry{domain: domain, host: host, prefix: prefix, app: h, keyText: key}
		if i, dup := seen[[2]string{domain, prefix}]; dup {
			m.entries[i] = entry
			continue
		}
		seen[[2]string{domain, prefix}] = len(m.entries)
		m.entries = append(m.entries, entry)
	}
	// Paste's sort_apps: entries with a domain first, then the longest
	// prefix first, so the most specific match wins. Unlike Paste, which
	// orders by the domain string (so every "example.com" entry precedes
	// every "example.com:8080" one and can leave the port's entries
	// unreachable), entries for one host are ordered by prefix length and
	// a key with a port wins over one without for the same prefix. Entries
	// for different hosts never match the same request, so their relative
	// order does not matter (it is by host for determinism).
	sort.SliceStable(m.entries, func(i, j int) bool {
		a, b := m.entries[i], m.entries[j]
		if (a.domain == "") != (b.domain == "") {
			return a.domain != ""
		}
		if ka, kb := a.host.key(), b.host.key(); ka != kb {
			return ka < kb
		}
		if len(a.prefix) != len(b.prefix) {
			return len(a.prefix) > len(b.prefix)
		}
		if (a.host.port == 0) != (b.host.port == 0) {
			return a.host.port != 0
		}
		if a.host.port != b.host.port {
			return a.host.port < b.host.port
		}
		return a.prefix < b.prefix
	})
	return m, nil
}

// key is the host without its port, for sorting.
func (h urlmapHost) key() string {
	if h.ip.IsValid() {
		return h.ip.String()
	}
	return h.name
}

// parseURLMapDomain parses the host[:port] of a key (already lower case):
// "example.com", "example.com:8080", "[::1]:8080", "127.0.0.1", and a bare
// IPv6 address ("domain ::1"), which cannot have a port. A trailing dot
// (fully qualified name) is dropped. It returns the parsed host and its
// canonical text (IP literals in their shortest form, the port without
// leading zeros).
func parseURLMapDomain(d string) (urlmapHost, string, error) {
	var h urlmapHost
	var name, port string
	switch {
	case strings.HasPrefix(d, "["):
		end := strings.IndexByte(d, ']')
		if end < 0 {
			return h, "", fmt.Errorf("host %q: missing ']'", d)
		}
		ip, err := netip.ParseAddr(d[1:end])
		if err != nil || !ip.Is6() {
			return h, "", fmt.Errorf("host %q: not an IPv6 address in brackets", d)
		}
		h.ip = ip
		rest := d[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return h, "", fmt.Errorf("host %q: unexpected %q after ']'", d, rest)
			}
			port = rest[1:]
		}
	case strings.Count(d, ":") > 1:
		ip, err := netip.ParseAddr(d)
		if err != nil {
			return h, "", fmt.Errorf("host %q: an IPv6 address with a port must be in brackets ([::1]:8080)", d)
		}
		h.ip = ip
	default:
		var hasPort bool
		name, port, hasPort = strings.Cut(d, ":")
		if hasPort && port == "" {
			return h, "", fmt.Errorf("host %q: empty port", d)
		}
		name = strings.TrimSuffix(name, ".")
		if name == "" {
			return h, "", fmt.Errorf("host %q: no host name", d)
		}
		if ip, err := netip.ParseAddr(name); err == nil {
			h.ip = ip
			name = ""
		}
		h.name = name
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return h, "", fmt.Errorf("host %q: bad port %q", d, port)
		}
		h.port = n
	}
	text := h.name
	if h.ip.Is6() {
		text = "[" + h.ip.String() + "]"
	} else if h.ip.IsValid() {
		text = h.ip.String()
	}
	if h.port != 0 {
		text += ":" + strconv.Itoa(h.port)
	}
	return h, text, nil
}

func urlmapLoadApp(c *Config, apps AppLoader, key, name string) (http.Handler, error) {
	if name == "" {
		return nil, c.Errorf(key, "%s: no application named", key)
	}
	if apps == nil {
		return nil, c.Errorf(key, "%s: cannot load %q: no application loader", key, name)
	}
	h, err := apps.LoadApp(name)
	if err != nil {
		// Loader errors already carry their own location.
		var located *Error
		var list ErrorList
		if errors.As(err, &located) || errors.As(err, &list) {
			return nil, err
		}
		return nil, catErr(c, key, "LookupError", err, "%s: loading %q", key, name)
	}
	if h == nil {
		return nil, c.Errorf(key, "%s: application %q is nil", key, name)
	}
	return h, nil
}

// parsePathExpression is Paste's urlmap.parse_path_expression: "domain
// HOST", "port PORT" and a path, in any order, become one URL string.
func parsePathExpression(expr string) (string, error) {
	parts := strings.Fields(expr)
	var domain, port, p string
	for len(parts) > 0 {
		switch parts[0] {
		case "domain":
			if len(parts) < 2 {
				return "", errors.New("'domain' must be followed with a domain name")
			}
			if domain != "" {
				return "", errors.New("'domain' given twice")
			}
			domain, parts = parts[1], parts[2:]
		case "port":
			if len(parts) < 2 {
				return "", errors.New("'port' must be followed with a port number")
			}
			if port != "" {
				return "", errors.New("'port' given twice")
			}
			port, parts = parts[1], parts[2:]
		default:
			if p != "" {
				return "", errors.New("more than one path given (have '" + p + "', got '" + parts[0] + "')")
			}
			p, parts = parts[0], parts[1:]
		}
	}
	var s string
	if domain != "" {
		// A bare IPv6 address gets its brackets, so a port can follow.
		if strings.Count(domain, ":") > 1 && !strings.HasPrefix(domain, "[") {
			domain = "[" + domain + "]"
		}
		s = "http://" + domain
	}
	if port != "" {
		if domain == "" {
			return "", errors.New("If you give a port, you must also give a domain")
		}
		s += ":" + port
	}
	if p != "" {
		if s != "" {
			s += "/"
		}
		s += p
	}
	return s, nil
}

var (
	urlmapDomainRE = regexp.MustCompile(`^(http|https)://`)
	urlmapSlashes  = regexp.MustCompile(`//+`)
)

// normalizeURLMapKey is Paste's URLMap.normalize_url with trim=True.
func normalizeURLMapKey(u string) (domain, prefix string, err error) {
	loc := urlmapDomainRE.FindStringIndex(u)
	if u != "" && !strings.HasPrefix(u, "/") && loc == nil {
		return "", "", errors.New("URL fragments must start with / or http:// (you gave '" + u + "')")
	}
	if loc != nil {
		// As in Paste the scheme only marks the key as a URL: it is not
		// matched. A port in the key is matched against the request's
		// port, which defaults by the request's scheme.
		var ok bool
		domain, prefix, ok = strings.Cut(u[loc[1]:], "/")
		if ok {
			prefix = "/" + prefix
		}
		domain = strings.ToLower(domain)
		if domain == "" {
			return "", "", errors.New("no host in '" + u + "'")
		}
	} else {
		prefix = u
	}
	prefix = urlmapSlashes.ReplaceAllString(prefix, "/")
	prefix = strings.TrimRight(prefix, "/")
	return domain, prefix, nil
}

func (m *urlMap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	collapsed := false
	if strings.Contains(p, "//") {
		p = urlmapSlashes.ReplaceAllString(p, "/")
		collapsed = true
	}
	var rh requestHost
	hostChecked := false
	for i := range m.entries {
		e := &m.entries[i]
		if e.domain != "" {
			if !hostChecked {
				rh = parseRequestHost(r)
				hostChecked = true
			}
			if !rh.matches(&e.host) {
				continue
			}
		}
		if p == e.prefix || (strings.HasPrefix(p, e.prefix) && p[len(e.prefix)] == '/') {
			e.app.ServeHTTP(w, m.mount(r, e.prefix, p, collapsed))
			return
		}
	}
	if meta := requestMeta(r); meta.route != nil {
		*meta.route = ""
	}
	if m.notFound != nil {
		m.notFound.ServeHTTP(w, r)
		return
	}
	catWriteText(w, http.StatusNotFound, "404 Not Found\n")
}

// requestHost is the Host of a request, split for matching urlmap keys.
type requestHost struct {
	name   string // without port, brackets and trailing dot; "" when missing or malformed
	port   int    // the port given, else 80 (http) or 443 (https); -1 if not a number
	ip     netip.Addr
	ipDone bool
}

// parseRequestHost splits r.Host without allocating. A missing port is
// the scheme's default, like Paste. A missing Host header (HTTP/1.0) or a
// malformed one leaves name empty: only keys without a domain match.
func parseRequestHost(r *http.Request) requestHost {
	h, port, ok := catSplitHostPort(r.Host)
	if !ok {
		return requestHost{}
	}
	rh := requestHost{name: strings.TrimSuffix(h, ".")}
	switch {
	case port != "":
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			n = -1
		}
		rh.port = n
	case catRequestScheme(r) == "https":
		rh.port = 443
	default:
		rh.port = 80
	}
	return rh
}

// matches reports whether the request's host is k's host (names compared
// case-insensitively, IP literals by address) and, if k has a port, its
// port.
func (rh *requestHost) matches(k *urlmapHost) bool {
	if rh.name == "" {
		return false
	}
	if k.ip.IsValid() {
		if !rh.ipDone {
			// Only what can be an address is parsed: a failed
			// ParseAddr allocates its error.
			if urlmapMaybeIP(rh.name) {
				rh.ip, _ = netip.ParseAddr(rh.name)
			}
			rh.ipDone = true
		}
		if rh.ip != k.ip {
			return false
		}
	} else if !strings.EqualFold(rh.name, k.name) {
		return false
	}
	return k.port == 0 || k.port == rh.port
}

// urlmapMaybeIP reports whether s can be an IP literal: it has a colon
// (IPv6) or only digits and dots (IPv4).
func urlmapMaybeIP(s string) bool {
	if strings.IndexByte(s, ':') >= 0 {
		return true
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

// mount returns a shallow copy of r whose path lost prefix and whose script
// name gained it. An empty remainder becomes "/": Paste leaves PATH_INFO
// empty, but Go handlers (and ServeMux, which would redirect) expect a path.
func (m *urlMap) mount(r *http.Request, prefix, p string, collapsed bool) *http.Request {
	meta := requestMeta(r)
	meta.scriptName += prefix
	if meta.route != nil {
		*meta.route = meta.scriptName
		if *meta.route == "" {
			*meta.route = "/"
		}
	}
	// Request, URL and context in one allocation: this runs on every
	// request that reaches a mounted app.
	ur := new(urlRequest)
	r2 := ur.init(r, meta)
	u := &ur.url
	rest := p[len(prefix):]
	if rest == "" {
		rest = "/"
	}
	u.Path = rest
	if u.RawPath != "" {
		raw := u.RawPath
		if collapsed {
			raw = urlmapSlashes.ReplaceAllString(raw, "/")
		}
		u.RawPath = stripEscapedPrefix(raw, prefix)
		if u.RawPath == "/" {
			u.RawPath = ""
		}
	}
	return r2
}

// stripEscapedPrefix removes from the escaped path raw the segments whose
// decoded form is prefix. It returns "" when the two do not line up (an
// escaped slash inside the prefix), leaving URL.Path authoritative.
func stripEscapedPrefix(raw, prefix string) string {
	consumed := 0
	i := 0
	for consumed < len(prefix) {
		if i >= len(raw) || raw[i] != '/' {
			return ""
		}
		j := strings.IndexByte(raw[i+1:], '/')
		end := len(raw)
		if j >= 0 {
			end = i + 1 + j
		}
		seg, err := url.PathUnescape(raw[i+1 : end])
		if err != nil {
			return ""
		}
		want := "/" + seg
		if !strings.HasPrefix(prefix[consumed:], want) {
			return ""
		}
		consumed += len(want)
		i = end
	}
	if consumed != len(prefix) {
		return ""
	}
	if i >= len(raw) {
		return "/"
	}
	return raw[i:]
}
