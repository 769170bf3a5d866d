package forwarded

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Element is one forwarded-element of a Forwarded header (RFC 7239 §4):
// what one proxy saw of the hop before it. Values are unquoted; a
// parameter that is absent is "".
type Element struct {
	// For is the node that made the request to the proxy (the client, or
	// the previous proxy): an IP, "[v6]", either with ":port", "unknown",
	// or an obfuscated identifier ("_hidden").
	For string
	// By is the proxy's own interface that received the request.
	By string
	// Host is the Host the request to the proxy carried.
	Host string
	// Proto is the scheme of the request to the proxy ("http", "https").
	Proto string
}

// ErrSyntax is wrapped by every Forwarded syntax error.
var ErrSyntax = errors.New("malformed Forwarded header")

// ParseForwarded parses the Forwarded header fields in values (each field
// line is a comma-separated list; lines are joined in order, RFC 9110
// §5.3) into elements, left (the client's side) to right (the nearest
// proxy). Parameter names are case-insensitive; values are tokens or
// quoted strings (with \-escapes); empty list items are skipped; unknown
// parameters (extensions) are ignored. A syntax error, or a parameter
// given twice in one element (§4: MUST NOT), fails the whole header: a
// header that is not understood is not believed in part.
func ParseForwarded(values []string) ([]Element, error) {
	var out []Element
	for _, v := range values {
		p := parser{s: v}
		for {
			p.skipOWS()
			if p.done() {
				break
			}
			if p.peek() == ',' { // an empty list item
				p.i++
				continue
			}
			el, err := p.element()
			if err != nil {
				return nil, err
			}
			out = append(out, el)
			p.skipOWS()
			if p.done() {
				break
			}
			if p.peek() != ',' {
				return nil, p.errorf("want , or the end after an element")
			}
			p.i++
		}
	}
	return out, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) done() bool { return p.i >= len(p.s) }
func (p *parser) peek() byte { return p.s[p.i] }

func (p *parser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s (at byte %d of %q)", ErrSyntax, fmt.Sprintf(format, args...), p.i, truncate(p.s))
}

// element reads forwarded-pair *( ";" forwarded-pair ), up to a comma or
// the end.
func (p *parser) element() (Element, error) {
	var (
		el   Element
		seen [4]bool
	)
	for {
		p.skipOWS()
		if !p.done() && p.peek() == ';' { // an empty pair: "a=b;;c=d"
			p.i++
			continue
		}
		if p.done() || p.peek() == ',' {
			return el, nil
		}
		name := p.token()
		if name == "" {
			return el, p.errorf("want a parameter name")
		}
		p.skipOWS()
		if p.done() || p.peek() != '=' {
			return el, p.errorf("want = after %q", name)
		}
		p.i++
		p.skipOWS()
		value, err := p.value()
		if err != nil {
			return el, err
		}
		var (
			dst *string
			idx int
		)
		switch strings.ToLower(name) {
		case "for":
			dst, idx = &el.For, 0
		case "by":
			dst, idx = &el.By, 1
		case "host":
			dst, idx = &el.Host, 2
		case "proto":
			dst, idx = &el.Proto, 3
		}
		if dst != nil {
			if seen[idx] {
				return el, p.errorf("parameter %q given twice in one element", strings.ToLower(name))
			}
			seen[idx] = true
			*dst = value
		}
		p.skipOWS()
		if p.done() || p.peek() == ',' {
			return el, nil
		}
		if p.peek() != ';' {
			return el, p.errorf("want ; or , after a parameter")
		}
		p.i++
	}
}

// token reads RFC 9110 tchars.
func (p *parser) token() string {
	start := p.i
	for p.i < len(p.s) && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// value reads a token or a quoted-string.
func (p *parser) value() (string, error) {
	if p.done() {
		return "", p.errorf("want a value")
	}
	if p.peek() != '"' {
		v := p.token()
		if v == "" {
			return "", p.errorf("want a token or a quoted string")
		}
		return v, nil
	}
	p.i++ // opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) || !isQuotedPairChar(p.s[p.i+1]) {
				return "", p.errorf("bad escape in a quoted string")
			}
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case isQdtext(c):
			b.WriteByte(c)
			p.i++
		default:
			return "", p.errorf("byte %#02x in a quoted string", c)
		}
	}
	return "", p.errorf("unterminated quoted string")
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isQdtext: HTAB, SP, %x21, %x23-5B, %x5D-7E, obs-text.
func isQdtext(c byte) bool {
	return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || c >= 0x80
}

// isQuotedPairChar: HTAB, SP, VCHAR, obs-text.
func isQuotedPairChar(c byte) bool {
	return c == '\t' || c == ' ' || (c >= 0x21 && c <= 0x7e) || c >= 0x80
}

func truncate(s string) string {
	const n = 120
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Node is a parsed hop address: from a Forwarded for= or by= value (RFC
// 7239 §6) or an X-Forwarded-For item.
type Node struct {
	// Addr is the IP; invalid for "unknown", an obfuscated identifier
	// ("_hidden") or anything that is not an address.
	Addr netip.Addr
	// Port is the port when one was given as a number ("" otherwise, and
	// for an obfuscated port such as "_8080").
	Port string
}

// IsIP reports whether the node names an IP address.
func (n Node) IsIP() bool { return n.Addr.IsValid() }

// RemoteAddr is the node as http.Request.RemoteAddr writes an address:
// "ip:port", "[v6]:port"; port 0 when the hop did not say.
func (n Node) RemoteAddr() string {
	port := n.Port
	if port == "" {
		port = "0"
	}
	if n.Addr.Is6() {
		return "[" + n.Addr.String() + "]:" + port
	}
	return n.Addr.String() + ":" + port
}

// ParseNode parses one hop: "192.0.2.43", "192.0.2.43:47011",
// "[2001:db8::17]", "[2001:db8::17]:4711", a bare IPv6 address (as
// X-Forwarded-For writes it), "unknown" or an obfuscated identifier
// ("_hidden", "_SEVKISEK"), the last two giving a Node that is not an IP.
// White space around the value is ignored; IPv4-mapped IPv6 addresses are
// unmapped and zones dropped.
func ParseNode(s string) Node {
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '_' || strings.EqualFold(s, "unknown") {
		return Node{}
	}
	if a, err := netip.ParseAddr(s); err == nil { // v4, or v6 without brackets
		return Node{Addr: a.Unmap().WithZone("")}
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Node{}
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return Node{}
			}
			port = port[1:]
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return Node{}
		}
		return Node{Addr: a.Unmap().WithZone(""), Port: nodePort(port)}
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Node{}
	}
	host, port = s[:i], s[i+1:]
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() { // a v6 address with a port needs brackets
		return Node{}
	}
	return Node{Addr: a, Port: nodePort(port)}
}

// nodePort keeps a numeric port (1-65535); an obfuscated or bad one is
// dropped.
func nodePort(p string) string {
	if p == "" || p[0] == '_' || len(p) > 5 {
		return ""
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || p[0] == '+' || p[0] == '-' {
		return ""
	}
	return strconv.Itoa(n)
}
