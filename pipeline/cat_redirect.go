package pipeline

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// redirectFactory answers every request with a redirect to a location
// built from a small template.
func redirectFactory() Factory {
	return App("answers with a redirect to a location template", newRedirectApp)
}

// redirectPlaceholder is one {name} of a location template.
type redirectPlaceholder int

const (
	rpLiteral redirectPlaceholder = iota
	rpScheme
	rpHost
	rpPath
	rpQuery
	rpRequestURI
	rpScriptName
)

var redirectPlaceholders = map[string]redirectPlaceholder{
	"scheme":      rpScheme,
	"host":        rpHost,
	"path":        rpPath,
	"query":       rpQuery,
	"request_uri": rpRequestURI,
	"script_name": rpScriptName,
}

const redirectPlaceholderList = "{scheme} {host} {path} {query} {request_uri} {script_name}"

type redirectPart struct {
	ph  redirectPlaceholder
	lit string // for rpLiteral
}

type redirectApp struct {
	status int
	parts  []redirectPart
	// absolute: the template starts with a scheme. parts[:authEnd] are
	// the scheme, "://" and the host (literals and {host} only). When
	// the host is not closed by a literal '/', '?' or '#' (authOpen), the
	// expansion is checked so that nothing after it extends the host.
	absolute     bool
	authStart    int // index in parts of the "://"
	authEnd      int
	authOpen     bool
	preservePath bool
	body         string
	log          hclog.Logger
}

func newRedirectApp(c *Config) (http.Handler, error) {
	status, err := c.Int("status", http.StatusFound)
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil, c.Errorf("status", "status: %d is not a redirect status (301, 302, 303, 307 or 308)", status)
	}
	tmpl := strings.TrimSpace(c.String("location", ""))
	if tmpl == "" {
		return nil, c.Errorf("location", "location: required option is missing")
	}
	a := &redirectApp{status: status, body: strconv.Itoa(status) + " " + http.StatusText(status) + "\n", log: catLogger(c)}
	if a.parts, err = parseRedirectTemplate(tmpl); err != nil {
		return nil, catErr(c, "location", "ValueError", err, "location: %q", tmpl)
	}
	if err := a.checkShape(); err != nil {
		return nil, catErr(c, "location", "ValueError", err, "location: %q", tmpl)
	}
	if a.preservePath, err = c.Bool("preserve_path", false); err != nil {
		return nil, err
	}
	if a.preservePath {
		for _, p := range a.parts {
			if p.ph == rpPath || p.ph == rpQuery || p.ph == rpRequestURI || strings.ContainsAny(p.lit, "?#") {
				return nil, c.Errorf("preserve_path", "preserve_path: the location already has a query, a fragment, {path}, {query} or {request_uri}; use the placeholders instead")
			}
		}
	}
	return a, nil
}

// parseRedirectTemplate splits a template into literals and placeholders.
// "{{" and "}}" are literal braces.
func parseRedirectTemplate(t string) ([]redirectPart, error) {
	var parts []redirectPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, redirectPart{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(t); i++ {
		b := t[i]
		switch {
		case b == '{' && i+1 < len(t) && t[i+1] == '{':
			lit.WriteByte('{')
			i++
		case b == '}' && i+1 < len(t) && t[i+1] == '}':
			lit.WriteByte('}')
			i++
		case b == '{':
			end := strings.IndexByte(t[i:], '}')
			if end < 0 {
				return nil, errString("unclosed '{' (write {{ for a literal brace)")
			}
			name := t[i+1 : i+end]
			ph, ok := redirectPlaceholders[name]
			if !ok {
				return nil, errString("unknown placeholder {" + name + "} (known: " + redirectPlaceholderList + ")")
			}
			flush()
			parts = append(parts, redirectPart{ph: ph})
			i += end
		case b == '}':
			return nil, errString("unmatched '}' (write }} for a literal brace)")
		case b <= ' ' || b >= 0x7f:
			return nil, errString("character " + strconv.QuoteRune(rune(b)) + " must be percent-encoded")
		default:
			lit.WriteByte(b)
		}
	}
	flush()
	return parts, nil
}

type errString string

func (e errString) Error() string { return string(e) }

// checkShape enforces where request data may go: the location is
// absolute (http://, https:// or {scheme}:// followed by a host made of
// literal text and {host} only) or a path on the same host (starting with
// "/", {path}, {request_uri} or {script_name}). So no request data but
// {host} can choose where the client is sent.
func (a *redirectApp) checkShape() error {
	first := a.parts[0]
	switch {
	case first.ph == rpScheme:
		if len(a.parts) < 2 || a.parts[1].ph != rpLiteral || !strings.HasPrefix(a.parts[1].lit, "://") {
			return errString("{scheme} must be followed by ://")
		}
		a.absolute = true
		a.authStart = 1
	case first.ph == rpLiteral:
		lower := strings.ToLower(first.lit)
		switch {
		case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
			a.absolute = true
		case strings.HasPrefix(first.lit, "//"), strings.HasPrefix(first.lit, "/\\"):
			return errString("a location starting with // names another host: write the scheme (https://host/...)")
		case strings.HasPrefix(first.lit, "/"):
		default:
			return errString("must start with http://, https://, {scheme}://, / or one of {path} {request_uri} {script_name}")
		}
	case first.ph == rpPath || first.ph == rpRequestURI || first.ph == rpScriptName:
	case first.ph == rpHost:
		return errString("{host} needs a scheme before it: {scheme}://{host}")
	default:
		return errString("must start with http://, https://, {scheme}://, / or one of {path} {request_uri} {script_name}")
	}
	if !a.absolute {
		return nil
	}
	// Find the end of the authority: the first '/', '?' or '#' after
	// "://", or the first placeholder other than {host}.
	hostSeen := false
	a.authOpen = true
	a.authEnd = len(a.parts)
	for i := a.authStart; i < len(a.parts); i++ {
		p := a.parts[i]
		if p.ph == rpHost {
			hostSeen = true
			continue
		}
		if p.ph != rpLiteral {
			if p.ph == rpScheme {
				return errString("{scheme} cannot be part of the host")
			}
			a.authEnd = i
			break
		}
		lit := p.lit
		if i == a.authStart {
			_, lit, _ = strings.Cut(lit, "://")
		}
		if j := strings.IndexAny(lit, "/?#"); j >= 0 {
			if j > 0 {
				hostSeen = true
			}
			a.authEnd = i + 1
			a.authOpen = false
			break
		}
		if lit != "" {
			hostSeen = true
		}
	}
	if !hostSeen {
		return errString("no host after ://")
	}
	return nil
}

func (a *redirectApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	loc, status := a.expand(r)
	switch status {
	case http.StatusBadRequest:
		catWriteText(w, http.StatusBadRequest, "400 Bad Request\n")
		return
	case http.StatusInternalServerError:
		a.log.Error("redirect: the location template put request data into the host; answering 500", "location", loc)
		catWriteText(w, http.StatusInternalServerError, "500 Internal Server Error\n")
		return
	}
	w.Header().Set("Location", loc)
	catWriteText(w, a.status, a.body)
}

// expand builds the location for r. The status is 0, or 400 when the
// request's Host is needed ({host}) and is missing or not a host name, or
// 500 when the expansion would extend the template's host.
func (a *redirectApp) expand(r *http.Request) (string, int) {
	var b strings.Builder
	authLen := -1
	for i, p := range a.parts {
		if a.authOpen && i == a.authEnd {
			authLen = b.Len()
		}
		switch p.ph {
		case rpLiteral:
			b.WriteString(p.lit)
		case rpScheme:
			b.WriteString(catRequestScheme(r))
		case rpHost:
			h, ok := redirectHost(r.Host)
			if !ok {
				return "", http.StatusBadRequest
			}
			b.WriteString(h)
		case rpPath:
			b.WriteString(redirectPath(r))
		case rpQuery:
			b.WriteString(redirectQuery(r.URL.RawQuery))
		case rpScriptName:
			b.WriteString(redirectScriptName(r))
		case rpRequestURI:
			b.WriteString(redirectScriptName(r))
			b.WriteString(redirectPath(r))
			b.WriteString(redirectQuery(r.URL.RawQuery))
		}
	}
	if a.authOpen && a.authEnd == len(a.parts) {
		authLen = b.Len()
	}
	if a.preservePath {
		p := redirectPath(r)
		s := b.String()
		if strings.HasSuffix(s, "/") {
			p = p[1:]
		}
		b.WriteString(p)
		b.WriteString(redirectQuery(r.URL.RawQuery))
	}
	loc := b.String()
	if a.absolute {
		// The host is the template's literal text and {host}: nothing
		// expanded after it may extend it ("https://example.com{query}x"
		// without a query).
		if authLen >= 0 && authLen < len(loc) && strings.IndexByte("/?#", loc[authLen]) < 0 {
			return loc, http.StatusInternalServerError
		}
		return loc, 0
	}
	// A path on the same host: never let it become "//host" or "/\host",
	// which clients read as another host.
	if len(loc) > 1 && (loc[1] == '/' || loc[1] == '\\') {
		loc = "/" + strings.TrimLeft(loc, "/\\")
	}
	if loc == "" {
		loc = "/"
	}
	return loc, 0
}

// redirectPath is the request path below the mount, escaped, starting
// with "/".
func redirectPath(r *http.Request) string {
	p := r.URL.EscapedPath()
	if p == "" || p[0] != '/' {
		return "/" + p
	}
	return p
}

func redirectScriptName(r *http.Request) string {
	sn := ScriptName(r)
	if sn == "" {
		return ""
	}
	return (&url.URL{Path: sn}).EscapedPath()
}

// redirectQuery is "?query" or "", with bytes that have no place in a
// Location header (controls, space, '#', non-ASCII, ...) percent-encoded.
func redirectQuery(q string) string {
	if q == "" {
		return ""
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(q) + 1)
	b.WriteByte('?')
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("#\"<>\\^`{|}", c) >= 0 {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// redirectHost returns the request's Host if it is a host name or an IP
// literal with an optional numeric port, so {host} cannot carry a path,
// user info or another host.
func redirectHost(hostport string) (string, bool) {
	h, port, ok := catSplitHostPort(hostport)
	if !ok || h == "" {
		return "", false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return "", false
		}
	}
	if strings.HasPrefix(hostport, "[") {
		ip, err := netip.ParseAddr(h)
		return hostport, err == nil && ip.Is6()
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", false
		}
	}
	return hostport, true
}
