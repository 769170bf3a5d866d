package pipeline

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// urlmapFactory dispatches on path prefix (and optionally host), like
// Paste's paste.urlmap:urlmap_factory.
func urlmapFactory() Factory {
	return Composite("dispatches by path prefix and host to named apps (Paste's urlmap)", newURLMap)
}

type urlmapEntry struct {
	domain  string // lower case host or host:port; "" matches any host
	prefix  string // normalised: no trailing slash, "" for the root
	app     http.Handler
	keyText string // the key as written, for messages
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
		}
	}
	// Keys come in file order; like Paste, a later key mapping the same
	// location replaces the earlier one.
	seen := map[[2]string]int{}
	for _, key := range keys {
		expr, err := parsePathExpression(key)
		if err != nil {
			return nil, &Error{Pos: c.PosOf(key), Section: c.Section, Class: "ValueError", Msg: err.Error(), Err: err}
		}
		domain, prefix, err := normalizeURLMapKey(expr)
		if err != nil {
			return nil, &Error{Pos: c.PosOf(key), Section: c.Section, Class: "AssertionError", Msg: err.Error(), Err: err}
		}
		name, _ := c.Lookup(key)
		h, err := urlmapLoadApp(c, apps, key, strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		entry := urlmapEntry{domain: domain, prefix: prefix, app: h, keyText: key}
		if i, dup := seen[[2]string{domain, prefix}]; dup {
			m.entries[i] = entry
			continue
		}
		seen[[2]string{domain, prefix}] = len(m.entries)
		m.entries = append(m.entries, entry)
	}
	// Paste's sort_apps: entries with a domain first (by domain), then the
	// longest prefix first, so the most specific match wins.
	sort.SliceStable(m.entries, func(i, j int) bool {
		a, b := m.entries[i], m.entries[j]
		if (a.domain == "") != (b.domain == "") {
			return a.domain != ""
		}
		if a.domain != b.domain {
			return a.domain < b.domain
		}
		if len(a.prefix) != len(b.prefix) {
			return len(a.prefix) > len(b.prefix)
		}
		return a.prefix < b.prefix
	})
	return m, nil
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
	var host, port string
	hostChecked := false
	for i := range m.entries {
		e := &m.entries[i]
		if e.domain != "" {
			if !hostChecked {
				host, port = requestHostPort(r)
				hostChecked = true
			}
			if e.domain != host && e.domain != host+":"+port {
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

// requestHostPort returns the lower-cased host of the request and its port,
// defaulting by scheme like Paste (80 for http, 443 for https).
func requestHostPort(r *http.Request) (host, port string) {
	h, port, ok := catSplitHostPort(r.Host)
	if !ok {
		return strings.ToLower(r.Host), ""
	}
	def := "80"
	if catRequestScheme(r) == "https" {
		def = "443"
	}
	if port == "" {
		port = def
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return strings.ToLower(h), port
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
