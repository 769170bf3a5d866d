package forwarded

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Networks is a list of trusted peers: addresses and CIDR networks, or
// every peer ("*"). The zero value trusts no IP peer. It marshals as the
// normalised list text ("127.0.0.1/32,::1/128", "*"), so it can travel in
// JSON.
type Networks struct {
	all      bool
	prefixes []netip.Prefix
}

// ErrBadNetwork is wrapped by every ParseNetworks error.
var ErrBadNetwork = errors.New("bad address or network")

// ParseNetworks parses a list of IPv4/IPv6 addresses ("127.0.0.1", "::1"),
// CIDR networks ("10.0.0.0/8", "fd00::/8") and "*" (every peer). Items are
// split further on commas and white space, so one string "a, b c" is three
// items. IPv4-mapped IPv6 forms (::ffff:10.0.0.1, ::ffff:10.0.0.0/104)
// match the plain IPv4 peers they stand for. Every bad item is named in the
// error.
func ParseNetworks(items ...string) (Networks, error) {
	var (
		n    Networks
		errs []error
	)
	for _, it := range SplitList(strings.Join(items, ",")) {
		if it == "*" {
			n.all = true
			continue
		}
		if strings.Contains(it, "/") {
			p, err := netip.ParsePrefix(it)
			if err != nil {
				errs = append(errs, fmt.Errorf("%w %q: not a CIDR network (10.0.0.0/8, fd00::/8)", ErrBadNetwork, it))
				continue
			}
			bits := p.Bits()
			if p.Addr().Is4In6() {
				bits = max(bits-96, 0)
			}
			n.prefixes = append(n.prefixes, netip.PrefixFrom(p.Addr().Unmap().WithZone(""), bits).Masked())
			continue
		}
		a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(it, "["), "]"))
		if err != nil {
			errs = append(errs, fmt.Errorf("%w %q: not an IP address, a CIDR network or *", ErrBadNetwork, it))
			continue
		}
		a = a.Unmap().WithZone("")
		n.prefixes = append(n.prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	if len(errs) > 0 {
		return Networks{}, errors.Join(errs...)
	}
	return n, nil
}

// MustNetworks is ParseNetworks for constant lists; it panics on a bad one.
func MustNetworks(items ...string) Networks {
	n, err := ParseNetworks(items...)
	if err != nil {
		panic(err)
	}
	return n
}

// SplitList splits a list on commas and white space, dropping empty items.
func SplitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
}

// All reports whether every peer is trusted ("*").
func (n Networks) All() bool { return n.all }

// Contains reports whether the IP a is trusted.
func (n Networks) Contains(a netip.Addr) bool {
	if n.all {
		return true
	}
	a = a.Unmap().WithZone("")
	for _, p := range n.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// TrustsAddr reports whether the peer at addr is trusted: an IP peer when
// Contains says so, and every peer that is not an IP socket (a unix socket:
// only a local process can connect to it), as gunicorn does.
func (n Networks) TrustsAddr(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ok && n.Contains(ip)
	case *net.UnixAddr:
		return true
	case nil:
		return false
	}
	return n.TrustsRemote(addr.String())
}

// TrustsRemote is TrustsAddr for an http.Request's RemoteAddr: "ip:port"
// is looked up; anything that is not an IP address (a unix socket's "@" or
// "") is trusted.
func (n Networks) TrustsRemote(remote string) bool {
	ip, ok := remoteIP(remote)
	if !ok {
		return true
	}
	return n.Contains(ip)
}

// remoteIP parses the IP of a RemoteAddr ("ip:port", "[v6]:port", or a
// bare IP); ok is false for what is not an IP socket address.
func remoteIP(remote string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// String is the normalised list: "*" first when set, then every network,
// comma-separated; "" for none.
func (n Networks) String() string {
	var parts []string
	if n.all {
		parts = append(parts, "*")
	}
	for _, p := range n.prefixes {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, ",")
}

// MarshalText implements encoding.TextMarshaler.
func (n Networks) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (n *Networks) UnmarshalText(b []byte) error {
	v, err := ParseNetworks(string(b))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// Equal reports whether n and o trust the same list, as written.
func (n Networks) Equal(o Networks) bool { return n.String() == o.String() }
