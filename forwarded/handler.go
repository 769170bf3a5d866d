package forwarded

import (
	"context"
	"net/http"
	"net/textproto"
	"strings"
)

// DefaultHeader is the header that lists the hops unless Config says
// otherwise: the one nginx, HAProxy, Envoy, Traefik, Caddy and the cloud
// load balancers all set.
const DefaultHeader = "X-Forwarded-For"

// DefaultSecureSchemeHeaders are gunicorn's secure_scheme_headers: a
// trusted peer sending one of them with this value says the client spoke
// https; any other value of them says http.
var DefaultSecureSchemeHeaders = map[string]string{
	"X-Forwarded-Protocol": "ssl",
	"X-Forwarded-Proto":    "https",
	"X-Forwarded-Ssl":      "on",
}

// Stripped are the forwarding headers removed from the requests of
// untrusted peers (with Config.Header and the SecureSchemeHeaders names),
// so neither the pipeline nor an application behind it can be fooled by a
// client that sets them itself.
var Stripped = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Protocol", "X-Forwarded-Ssl",
	"X-Forwarded-Scheme", "X-Real-Ip", "X-Url-Scheme",
}

// Config is a server's forwarding policy.
type Config struct {
	// Trusted are the peers whose forwarding headers are believed
	// (forwarded_allow_ips). Peers that are not IP sockets (unix sockets)
	// are always trusted.
	Trusted Networks
	// Header lists the hops, left (the client's side) to right (the
	// nearest proxy): "X-Forwarded-For" when empty, "Forwarded" for RFC
	// 7239, or any header in the X-Forwarded-For syntax (X-Real-IP,
	// CF-Connecting-IP: comma-separated addresses).
	Header string
	// SecureSchemeHeaders maps a header name to the value that means the
	// client spoke https (gunicorn's secure_scheme_headers); nil or empty:
	// none.
	SecureSchemeHeaders map[string]string
}

type secureHeader struct{ name, value string }

// Handler applies a Config in front of an http.Handler.
type Handler struct {
	next    http.Handler
	trusted Networks
	header  string
	rfc     bool // header is Forwarded
	secure  []secureHeader
	strip   []string
}

// New wraps next. For a request from a trusted peer it
//   - takes the client address from the hop list in Config.Header: the
//     right-most hop that is not trusted (nginx's real_ip_recursive), the
//     left-most when all are; a hop that is not an IP address (unknown,
//     an obfuscated _name, garbage) ends the walk and the nearest trusted
//     hop stays the client. It becomes r.RemoteAddr ("ip:port", port 0
//     when the hop has none); Peer(r) keeps the connection's peer.
//   - decides the scheme from the secure scheme headers (and, with
//     Header = Forwarded, the proto= of the client's element): https makes
//     a request without TLS count as https (r.URL.Scheme, which the
//     pipeline reads); contradicting values are answered 400.
//   - leaves every header in place for the pipeline.
//
// From an untrusted peer the forwarding headers (Stripped, Header, the
// secure scheme headers) are removed and the request is otherwise as the
// client sent it. In both cases an absolute-form request target's scheme
// ("GET https://host/ HTTP/1.1" in clear) is replaced by the real one.
// Requests that need none of this pass through unchanged, without an
// allocation.
func New(next http.Handler, c Config) *Handler {
	h := &Handler{next: next, trusted: c.Trusted, header: textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(c.Header))}
	if h.header == "" {
		h.header = DefaultHeader
	}
	h.rfc = h.header == "Forwarded"
	seen := make(map[string]bool)
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			h.strip = append(h.strip, name)
		}
	}
	for _, k := range Stripped {
		add(k)
	}
	add(h.header)
	for name, value := range c.SecureSchemeHeaders {
		name = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		h.secure = append(h.secure, secureHeader{name: name, value: strings.TrimSpace(value)})
		add(name)
	}
	return h
}

type peerKey struct{}

// Peer is the address of the connection's peer (the proxy in front) when
// New replaced r.RemoteAddr with the client's, else r.RemoteAddr.
func Peer(r *http.Request) string {
	if p, ok := r.Context().Value(peerKey{}).(string); ok {
		return p
	}
	return r.RemoteAddr
}

// ContradictoryScheme is the body of the 400 answered when secure scheme
// headers disagree (gunicorn's InvalidSchemeHeaders).
const ContradictoryScheme = "Contradictory scheme headers\n"

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ip, ok := remoteIP(r.RemoteAddr); ok && !h.trusted.Contains(ip) {
		h.next.ServeHTTP(w, h.untrusted(r))
		return
	}
	r2, ok := h.trustedRequest(r)
	if !ok {
		http.Error(w, strings.TrimSuffix(ContradictoryScheme, "\n"), http.StatusBadRequest)
		return
	}
	h.next.ServeHTTP(w, r2)
}

func connScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// untrusted strips the forwarding headers and a client-chosen scheme.
func (h *Handler) untrusted(r *http.Request) *http.Request {
	strip := false
	for _, k := range h.strip {
		if _, ok := r.Header[k]; ok {
			strip = true
			break
		}
	}
	fixScheme := r.URL != nil && r.URL.Scheme != "" && r.URL.Scheme != connScheme(r)
	if !strip && !fixScheme {
		return r
	}
	r2 := new(http.Request)
	*r2 = *r
	if strip {
		r2.Header = r.Header.Clone()
		for _, k := range h.strip {
			delete(r2.Header, k)
		}
	}
	if fixScheme {
		u := *r.URL
		u.Scheme = connScheme(r)
		r2.URL = &u
	}
	return r2
}

// trustedRequest applies the hop list and the scheme; ok is false when
// the scheme headers contradict each other.
func (h *Handler) trustedRequest(r *http.Request) (*http.Request, bool) {
	scheme := ""
	vote := func(v string) bool {
		if scheme != "" && scheme != v {
			return false
		}
		scheme = v
		return true
	}
	for _, sh := range h.secure {
		for _, v := range r.Header[sh.name] {
			s := "http"
			if strings.EqualFold(strings.TrimSpace(v), sh.value) {
				s = "https"
			}
			if !vote(s) {
				return nil, false
			}
		}
	}

	var client Node
	if h.rfc {
		if vs := r.Header["Forwarded"]; len(vs) > 0 {
			// A header that does not parse is not believed at all.
			if els, err := ParseForwarded(vs); err == nil && len(els) > 0 {
				i, node := h.walk(len(els), func(i int) Node { return ParseNode(els[i].For) })
				client = node
				switch p := strings.ToLower(strings.TrimSpace(els[i].Proto)); p {
				case "http", "https":
					if !vote(p) {
						return nil, false
					}
				}
			}
		}
	} else if vs := r.Header[h.header]; len(vs) > 0 {
		client = h.walkList(vs)
	}

	remote := r.RemoteAddr
	if client.IsIP() {
		remote = client.RemoteAddr()
	}
	target := connScheme(r)
	if r.TLS == nil && scheme != "" {
		target = scheme
	}
	// An absolute-form target's scheme is replaced by the real one; a
	// request in clear that a trusted proxy says was https records it.
	setScheme := r.URL != nil && ((r.URL.Scheme != "" && r.URL.Scheme != target) ||
		(r.URL.Scheme == "" && r.TLS == nil && target == "https"))
	if remote == r.RemoteAddr && !setScheme {
		return r, true
	}
	var r2 *http.Request
	if remote != r.RemoteAddr {
		r2 = r.WithContext(context.WithValue(r.Context(), peerKey{}, r.RemoteAddr))
		r2.RemoteAddr = remote
	} else {
		r2 = new(http.Request)
		*r2 = *r
	}
	if setScheme {
		u := *r.URL
		u.Scheme = target
		if u.Host == "" {
			u.Host = r.Host // an absolute URL needs its host
		}
		r2.URL = &u
	}
	return r2, true
}

// walk finds the client among n hops (left to right, nodeAt(i) the i-th)
// sent by a trusted peer: the right-most hop that is not trusted, or the
// left-most when all are. It returns the client's index and its address;
// a hop that is not an IP ends the walk at its index with the nearest
// trusted hop's address (invalid when that is the peer itself).
func (h *Handler) walk(n int, nodeAt func(int) Node) (int, Node) {
	var last Node
	for i := n - 1; i >= 0; i-- {
		node := nodeAt(i)
		if !node.IsIP() {
			return i, last
		}
		if !h.trusted.Contains(node.Addr) {
			return i, node
		}
		last = node
	}
	return 0, last
}

// walkList is walk over an X-Forwarded-For style list (comma-separated
// items, over one or more field lines), from the right, without
// splitting it first.
func (h *Handler) walkList(vs []string) Node {
	var last Node
	for j := len(vs) - 1; j >= 0; j-- {
		v := vs[j]
		for end := len(v); end >= 0; {
			start := strings.LastIndexByte(v[:end], ',') + 1
			item := strings.TrimSpace(v[start:end])
			end = start - 1
			if item == "" {
				continue
			}
			node := ParseNode(item)
			if !node.IsIP() {
				return last
			}
			if !h.trusted.Contains(node.Addr) {
				return node
			}
			last = node
		}
	}
	return last
}
