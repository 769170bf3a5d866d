package worker

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"paddock/forwarded"
	"paddock/listener"
)

// The protocols setting. It is server-wide, not per listener: TLS is
// server-wide too (certfile and keyfile apply to every bind), so the only
// per-listener difference would be between clear listeners, and a bind
// option would have to live in listener.Spec, which is the socket's
// identity (tableflip's key, the worker hand-off, reloads' reconcile).
// h2 means HTTP/2 over TLS and h2c HTTP/2 in clear; each applies to the
// listeners it can, so the default "h1 h2" serves HTTP/1.x and HTTP/2 over
// TLS and HTTP/1.x in clear.
const (
	protoH1  = "h1"
	protoH2  = "h2"
	protoH2C = "h2c"
)

func parseProtocols(s *Settings, v string) error {
	var set [3]bool
	names := []string{protoH1, protoH2, protoH2C}
	items := forwarded.SplitList(v)
	if len(items) == 0 {
		return errors.New("no protocol (want h1, h2 and/or h2c)")
	}
	for _, it := range items {
		i := slices.Index(names, strings.ToLower(it))
		if i < 0 {
			if strings.EqualFold(it, "h3") {
				return errors.New("h3 (HTTP/3 over QUIC) is not supported; want h1, h2 and/or h2c")
			}
			return fmt.Errorf("unknown protocol %q (want h1, h2 and/or h2c)", it)
		}
		set[i] = true
	}
	s.Protocols = nil
	for i, on := range set {
		if on {
			s.Protocols = append(s.Protocols, names[i])
		}
	}
	return nil
}

// checkProtocols makes sure the protocols leave something to serve on the
// listeners there are: with TLS (certfile) h1 or h2, in clear h1 or h2c.
func checkProtocols(s *Settings) error {
	if len(s.Protocols) == 0 {
		return nil
	}
	has := func(p string) bool { return slices.Contains(s.Protocols, p) }
	tls := s.CertFile != "" || s.KeyFile != ""
	switch {
	case tls && !has(protoH1) && !has(protoH2):
		return errors.New("h2c is HTTP/2 in clear, and with certfile set every listener serves TLS: add h2 (HTTP/2 over TLS) or h1")
	case !tls && !has(protoH1) && !has(protoH2C):
		return errors.New("h2 is HTTP/2 over TLS, and no certfile is set: add h2c (HTTP/2 in clear) or h1, or set certfile and keyfile")
	}
	return nil
}

// httpProtocols is http.Server.Protocols for s (nil: net/http's default).
func httpProtocols(s *Settings) *http.Protocols {
	if len(s.Protocols) == 0 {
		return nil
	}
	p := new(http.Protocols)
	p.SetHTTP1(slices.Contains(s.Protocols, protoH1))
	if s.CertFile != "" {
		p.SetHTTP2(slices.Contains(s.Protocols, protoH2))
	} else {
		p.SetUnencryptedHTTP2(slices.Contains(s.Protocols, protoH2C))
	}
	return p
}

// nextProtos is what the TLS listeners offer through ALPN: only what the
// http.Server serves, HTTP/2 first.
func nextProtos(s *Settings) []string {
	if len(s.Protocols) == 0 {
		return []string{"h2", "http/1.1"}
	}
	var out []string
	if slices.Contains(s.Protocols, protoH2) {
		out = append(out, "h2")
	}
	if slices.Contains(s.Protocols, protoH1) {
		out = append(out, "http/1.1")
	}
	return out
}

func networks(set func(*Settings, forwarded.Networks)) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		n, err := forwarded.ParseNetworks(v)
		if err != nil {
			return err
		}
		set(s, n)
		return nil
	}
}

func parseForwardedHeader(s *Settings, v string) error {
	v = strings.TrimSpace(v)
	if v == "" {
		v = forwarded.DefaultHeader
	}
	if !validHeaderName(v) {
		return fmt.Errorf("%q is not a header name", v)
	}
	s.ForwardedHeader = textproto.CanonicalMIMEHeaderKey(v)
	return nil
}

// parseSecureSchemeHeaders reads "NAME: VALUE, NAME: VALUE" (also
// NAME=VALUE, one per line, and the Python dict gunicorn's config file
// has: {'X-FORWARDED-PROTO': 'https'}); empty means none.
func parseSecureSchemeHeaders(s *Settings, v string) error {
	v = strings.TrimSpace(v)
	v = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(v, "{"), "}"))
	out := map[string]string{}
	var errs []error
	for item := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == '\n' }) {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, ok := strings.Cut(item, ":")
		if !ok {
			name, value, ok = strings.Cut(item, "=")
		}
		name, value = unquote(name), unquote(value)
		switch {
		case !ok || value == "":
			errs = append(errs, fmt.Errorf("%q: want NAME: VALUE", item))
		case !validHeaderName(name):
			errs = append(errs, fmt.Errorf("%q is not a header name", name))
		default:
			out[textproto.CanonicalMIMEHeaderKey(name)] = value
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.SecureSchemeHeaders = out
	return nil
}

func unquote(v string) string {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
		v = strings.TrimSpace(v[1 : len(v)-1])
	}
	return v
}

// validHeaderName: RFC 9110 token characters.
func validHeaderName(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// forwardedHandler applies forwarded_allow_ips, forwarded_header and
// secure_scheme_headers in front of h (package forwarded).
func forwardedHandler(h http.Handler, s *Settings) http.Handler {
	return forwarded.New(h, forwarded.Config{Trusted: s.ForwardedAllowIPs, Header: s.ForwardedHeader, SecureSchemeHeaders: s.SecureSchemeHeaders})
}

// TLSPair is the contents of certfile and keyfile as the master read and
// checked them. The master reads the files (as root, when user drops the
// workers' privileges, like nginx's master) and hands these bytes to its
// workers, at spawn and with every in-place reload; workers never open
// the files, so a root-only 0600 key is fine. The bytes are never logged:
// String hides them from %v and hclog.
type TLSPair struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// String describes the pair without its contents.
func (p *TLSPair) String() string {
	if p == nil {
		return "no TLS key pair"
	}
	return fmt.Sprintf("TLS key pair (certfile %d bytes, keyfile %d bytes)", len(p.Cert), len(p.Key))
}

// GoString keeps %#v from printing the key too.
func (p *TLSPair) GoString() string { return p.String() }

// digest names the contents ("" for no pair): a reload that sees another
// digest reports certfile as changed.
func (p *TLSPair) digest() string {
	if p == nil {
		return ""
	}
	h := sha256.New()
	for _, b := range [][]byte{p.Cert, p.Key} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// readTLS reads certfile and keyfile (regular files only:
// listener.ReadKeyPair) and checks they load as the workers will load
// them; nil without TLS. A pair that does not load fails a reload in the
// master, and the workers keep the certificate they serve. The error
// names the setting's origin, never the bytes.
func readTLS(s *Settings) (*TLSPair, error) {
	if s.CertFile == "" && s.KeyFile == "" {
		return nil, nil
	}
	if s.CertFile == "" {
		return nil, settingError(s, "keyfile", errors.New("TLS needs certfile too"))
	}
	if s.KeyFile == "" {
		return nil, settingError(s, "certfile", errors.New("TLS needs keyfile too"))
	}
	certPEM, keyPEM, err := listener.ReadKeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, tlsError(s, err)
	}
	if _, err := listener.ParseKeyPair(s.CertFile, s.KeyFile, certPEM, keyPEM); err != nil {
		return nil, tlsError(s, err)
	}
	return &TLSPair{Cert: certPEM, Key: keyPEM}, nil
}

// CheckTLS is readTLS without the bytes.
func CheckTLS(s *Settings) error {
	_, err := readTLS(s)
	return err
}

// tlsError locates a key pair error at the setting of the file that
// failed (certfile when they do not match).
func tlsError(s *Settings, err error) error {
	name := "certfile"
	var kp *listener.KeyPairError
	if errors.As(err, &kp) {
		name = kp.File
	}
	return settingError(s, name, err)
}

// wrapListeners puts every listener behind the PROXY protocol reader
// (proxy_protocol), then TLS (certfile and keyfile, read here: the
// in-process server, workers = 0, owns its files), in that order: the
// header comes before the handshake. It returns the certificate the TLS
// listeners serve (nil without TLS), for reloads to swap. On error it
// closes every listener.
func wrapListeners(lns []net.Listener, s *Settings, log hclog.Logger) ([]net.Listener, *listener.Certificate, error) {
	pair, err := readTLS(s)
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, nil, err
	}
	return wrapListenersPair(lns, s, pair, log)
}

// wrapListenersPair is wrapListeners with the TLS pair as the master read
// it (a worker's): the files are never opened, and TLS without a pair is
// an error.
func wrapListenersPair(lns []net.Listener, s *Settings, pair *TLSPair, log hclog.Logger) ([]net.Listener, *listener.Certificate, error) {
	fail := func(err error) ([]net.Listener, *listener.Certificate, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, nil, err
	}
	var cert *listener.Certificate
	if s.CertFile != "" || s.KeyFile != "" {
		if s.CertFile == "" || s.KeyFile == "" {
			return fail(CheckTLS(s))
		}
		if pair == nil {
			return fail(errors.New("certfile and keyfile are set but the master passed no TLS key pair"))
		}
		c, err := listener.NewCertificatePEM(s.CertFile, s.KeyFile, pair.Cert, pair.Key)
		if err != nil {
			return fail(tlsError(s, err))
		}
		cert = c
	}
	out := make([]net.Listener, len(lns))
	for i, ln := range lns {
		ln = limitClients(ln, s) // worker_connections, send_timeout: on the raw socket (clients.go)
		ln = listener.WrapProxy(ln, listener.ProxyOptions{Mode: s.ProxyProtocol, Allowed: s.ProxyAllowIPs.TrustsAddr, Timeout: s.Timeout})
		if cert != nil {
			ln = listener.WrapTLS(ln, cert.Config(nextProtos(s)))
		}
		out[i] = ln
	}
	if log != nil && s.ProxyProtocol != "" && s.ProxyProtocol != listener.ProxyOff {
		log.Debug("PROXY protocol on every listener", "mode", string(s.ProxyProtocol), "proxy_allow_ips", s.ProxyAllowIPs.String())
	}
	return out, cert, nil
}
