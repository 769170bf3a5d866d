package listener

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"
)

// ProxyMode is the proxy_protocol setting: whether connections start with
// a PROXY protocol header (HAProxy's, v1 text or v2 binary) carrying the
// client's address, as load balancers in TCP mode send it.
type ProxyMode string

// The PROXY protocol modes.
const (
	// ProxyOff reads no header: the bytes are the client's request.
	ProxyOff ProxyMode = "off"
	// ProxyV1 and ProxyV2: every connection from an allowed peer must
	// start with a header of that version; one without, or with the other
	// version, is closed.
	ProxyV1 ProxyMode = "v1"
	ProxyV2 ProxyMode = "v2"
	// ProxyAuto: a header of either version is read when an allowed peer
	// sends one; connections without one are served as they are.
	ProxyAuto ProxyMode = "auto"
)

// ParseProxyMode reads off, v1, v2 or auto; a boolean (gunicorn's older
// proxy_protocol = true, which detected the header) is auto when true
// and off when false.
func ParseProxyMode(v string) (ProxyMode, error) {
	switch m := strings.ToLower(strings.TrimSpace(v)); m {
	case "off", "v1", "v2", "auto":
		return ProxyMode(m), nil
	case "", "false", "no", "n", "f", "0":
		return ProxyOff, nil
	case "on", "true", "yes", "y", "t", "1":
		return ProxyAuto, nil
	}
	return "", fmt.Errorf("%q is not a PROXY protocol mode (off, v1, v2 or auto)", v)
}

// ProxyOptions configure WrapProxy.
type ProxyOptions struct {
	Mode ProxyMode
	// Allowed reports whether a peer may send a PROXY header
	// (proxy_allow_ips); nil allows none. It gets the socket's own peer
	// address: a *net.TCPAddr, or a *net.UnixAddr for a unix socket.
	Allowed func(net.Addr) bool
	// Timeout bounds the wait for the header's first bytes and the header
	// (the worker's timeout setting); 0 waits without a limit.
	Timeout time.Duration
}

// WrapProxy returns ln reading PROXY protocol headers as o says (ln itself
// when the mode is off); wrap it before TLS, since the header comes before
// the TLS handshake. Accept does not read: the header is read by the
// connection's first Read or RemoteAddr, in the goroutine that serves it,
// so a slow peer never holds the accept loop.
//
//   - From an allowed peer a header is used: the connection's RemoteAddr
//     (and LocalAddr) become the addresses it carries, so the access log,
//     forwarded_allow_ips and the pipeline see the client. A LOCAL header
//     (a load balancer's health check) keeps the socket's addresses. With
//     v1 or v2 the header is required and must be of that version; with
//     auto it is optional.
//   - From any other peer a header is read and dropped (the PROXY
//     library's IGNORE): the connection is served with its own peer
//     address, so nobody outside the list can choose the address paddock
//     believes, and a proxy left out of the list by mistake still gets
//     answers (with its own address logged) instead of failing.
//   - A malformed header, or a missing or wrong-version one where it is
//     required, makes the connection's reads fail: net/http closes it
//     without an answer (over TLS it logs the handshake error).
func WrapProxy(ln net.Listener, o ProxyOptions) net.Listener {
	if o.Mode == "" || o.Mode == ProxyOff {
		return ln
	}
	allowed := proxyproto.USE
	var validate proxyproto.Validator
	switch o.Mode {
	case ProxyV1:
		allowed, validate = proxyproto.REQUIRE, proxyVersion(1)
	case ProxyV2:
		allowed, validate = proxyproto.REQUIRE, proxyVersion(2)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = -1 // the library's 0 means its 10 s default
	}
	return &proxyproto.Listener{
		Listener: ln,
		ConnPolicy: func(c proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if o.Allowed != nil && o.Allowed(c.Upstream) {
				return allowed, nil
			}
			return proxyproto.IGNORE, nil
		},
		ValidateHeader:    validate,
		ReadHeaderTimeout: timeout,
	}
}

func proxyVersion(v byte) proxyproto.Validator {
	return func(h *proxyproto.Header) error {
		if h.Version != v {
			return fmt.Errorf("listener: PROXY protocol v%d header where proxy_protocol = v%d", h.Version, v)
		}
		return nil
	}
}
