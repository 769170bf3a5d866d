package worker

import (
	"net"
	"net/http"

	"github.com/hashicorp/go-hclog"

	"paddock/httpguard"
)

// guardListeners puts the request checks of strict_http (package
// httpguard) in front of net/http on every listener, outermost: over the
// TLS listeners (the guard must see plaintext, and the *tls.Conn net/http
// serves HTTP/2 on) and so over the PROXY protocol reader too. Off, it
// returns lns.
func guardListeners(lns []net.Listener, s *Settings, log hclog.Logger) []net.Listener {
	if !s.StrictHTTP {
		return lns
	}
	o := httpguard.Options{
		// What net/http bounds a handshake with (its tlsHandshakeTimeout).
		HandshakeTimeout: s.Timeout,
		OnReject: func(remote net.Addr, reason string) {
			log.Debug("request refused (strict_http)", "reason", reason, "remote_addr", remote.String())
		},
		OnHandshakeError: func(remote net.Addr, err error) {
			// What net/http logs (through ErrorLog, at error level).
			log.Error("TLS handshake error", "remote_addr", remote.String(), "error", err)
		},
	}
	tls := s.CertFile != "" || s.KeyFile != "" // wrapListeners wrapped them all in TLS
	out := make([]net.Listener, len(lns))
	for i, ln := range lns {
		if tls {
			out[i] = httpguard.NewTLSListener(ln, o)
		} else {
			out[i] = httpguard.NewListener(ln, o)
		}
	}
	return out
}

// releaseOnHijack is http.Server.ConnState: next, and a hijacked
// connection (an Upgrade or CONNECT handler took it) is no longer checked.
func releaseOnHijack(next func(net.Conn, http.ConnState)) func(net.Conn, http.ConnState) {
	return func(c net.Conn, st http.ConnState) {
		if st == http.StateHijacked {
			httpguard.Release(c)
		}
		next(c, st)
	}
}
