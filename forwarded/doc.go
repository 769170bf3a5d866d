// Package forwarded decides whose forwarding headers a server believes:
// the client address and scheme a reverse proxy or load balancer reports
// in Forwarded (RFC 7239) or X-Forwarded-For / X-Forwarded-Proto and
// gunicorn's secure scheme headers.
//
// Only peers in a trusted list (gunicorn's forwarded_allow_ips, default
// 127.0.0.1 and ::1) are believed; unix-socket peers always are, as in
// gunicorn, since only a local process can connect to one. From a trusted
// peer the client is the right-most hop that is not trusted (nginx's
// realip with real_ip_recursive on, Caddy's trusted_proxies_strict): each
// proxy appends the address it saw, so everything right of the first
// untrusted hop was written by trusted proxies, and everything left of
// it may be the client's invention. One header lists the hops
// (X-Forwarded-For by default): reading two would let a client behind a
// proxy that sets only one of them forge the other.
//
// From an untrusted peer the forwarding headers are removed before the
// application sees the request, so a client cannot make the pipeline, an
// application or an upstream believe a forged X-Forwarded-For or
// X-Forwarded-Proto.
//
// The package imports nothing of paddock's; Networks is also the type of
// the PROXY protocol's allow list.
package forwarded
