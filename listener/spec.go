package listener

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// The networks a Spec can name.
const (
	TCP  = "tcp"
	Unix = "unix"
	FD   = "fd"
	// Systemd names a socket systemd passed through socket activation, by
	// its FileDescriptorName= (LISTEN_FDNAMES); see Activated.
	Systemd = "systemd"
)

// DefaultPort is the port of a bind that names only a host (bind =
// example.org), as in gunicorn.
const DefaultPort = 8000

// The Paste defaults for a [server:main] with host and port instead of bind
// (paste.httpserver: host 127.0.0.1, port 8080).
const (
	PasteHost = "127.0.0.1"
	PastePort = 8080
)

// ErrBadSpec is wrapped by every parse error, so callers can tell a typo in
// a bind from a failure to create the socket.
var ErrBadSpec = errors.New("bad bind address")

// Spec is one normalised bind address. Two binds that name the same socket
// have equal Specs (and Keys), however they were spelled.
type Spec struct {
	// Network is TCP, Unix, FD or Systemd.
	Network string
	// Addr is the normalised address: host:port for TCP ("127.0.0.1:8080",
	// "[::1]:8080", ":8080" for every interface), the cleaned socket path
	// for Unix ("@name" for a Linux abstract socket), the descriptor number
	// for FD, the FileDescriptorName= for Systemd.
	Addr string
}

// Key identifies the socket: network "/" address, as tableflip and Caddy key
// their listeners.
func (s Spec) Key() string { return s.Network + "/" + s.Addr }

// String returns the spec the way a bind setting writes it.
func (s Spec) String() string {
	switch s.Network {
	case Unix:
		return "unix:" + s.Addr
	case FD:
		return "fd://" + s.Addr
	case Systemd:
		return "systemd:" + s.Addr
	}
	// A host named unix or systemd would read back as that network.
	if strings.HasPrefix(s.Addr, "unix:") || strings.HasPrefix(s.Addr, "systemd:") {
		return "tcp://" + s.Addr
	}
	return s.Addr
}

// Parse parses one bind spec: host:port, [v6]:port, :port (every
// interface), a bare host (port DefaultPort), tcp://host:port,
// unix:/path (also unix:///path and unix:@abstract), fd://N, or
// systemd:NAME (the socket-activated descriptor systemd named NAME in
// LISTEN_FDNAMES, i.e. the socket unit's FileDescriptorName=).
// localhost means 127.0.0.1, the one address Go's net.Listen would pick for
// it, so the two spellings cannot open the same port twice.
func Parse(bind string) (Spec, error) {
	bind = strings.TrimSpace(bind)
	switch {
	case bind == "":
		return Spec{}, badSpec(bind, "empty address")
	case strings.ContainsFunc(bind, isControl):
		// Binds are logged and passed to workers: no line breaks.
		return Spec{}, badSpec(bind, "contains a control character")
	case strings.HasPrefix(bind, "unix:"):
		return parseUnix(bind)
	case strings.HasPrefix(bind, "fd://"):
		return parseFD(bind)
	case strings.HasPrefix(bind, "systemd:"):
		return parseSystemd(bind)
	}
	return parseTCP(bind, strings.TrimPrefix(bind, "tcp://"))
}

// FromHostPort builds a TCP spec from Paste's host and port settings; an
// empty host is PasteHost and an empty port PastePort.
func FromHostPort(host, port string) (Spec, error) {
	host = strings.TrimSpace(host)
	port = strings.TrimSpace(port)
	if host == "" {
		host = PasteHost
	}
	if port == "" {
		port = strconv.Itoa(PastePort)
	}
	// An IPv6 host comes without brackets in Paste configs (host = ::1).
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	bind := net.JoinHostPort(host, port)
	s, err := tcpSpec(bind, host, port)
	if err != nil {
		return Spec{}, err
	}
	return s, nil
}

// ParseList parses every bind and drops the ones that name a socket already
// in the list, keeping the first spelling and the order.
func ParseList(binds []string) ([]Spec, error) {
	var (
		out  []Spec
		seen = make(map[string]bool, len(binds))
		errs []error
	)
	for _, b := range binds {
		s, err := Parse(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[s.Key()] {
			continue
		}
		seen[s.Key()] = true
		out = append(out, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func badSpec(bind, format string, args ...any) error {
	return fmt.Errorf("listener: bind %q: %w: %s", bind, ErrBadSpec, fmt.Sprintf(format, args...))
}

func parseUnix(bind string) (Spec, error) {
	path := strings.TrimPrefix(bind, "unix:")
	// unix:///run/x.sock is the URL spelling of unix:/run/x.sock.
	if strings.HasPrefix(path, "//") {
		path = strings.TrimPrefix(path, "//")
	}
	if path == "" {
		return Spec{}, badSpec(bind, "empty socket path")
	}
	if strings.HasPrefix(path, "@") {
		// A Linux abstract socket: no file, so nothing to clean.
		if len(path) == 1 {
			return Spec{}, badSpec(bind, "empty abstract socket name")
		}
		return Spec{Network: Unix, Addr: path}, nil
	}
	path = filepath.Clean(path)
	// "/a /." cleans to "/a ", which Parse would trim when read back.
	if strings.TrimRightFunc(path, unicode.IsSpace) != path {
		return Spec{}, badSpec(bind, "socket path ends with white space")
	}
	return Spec{Network: Unix, Addr: path}, nil
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

func parseFD(bind string) (Spec, error) {
	num := strings.TrimPrefix(bind, "fd://")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return Spec{}, badSpec(bind, "%q is not a file descriptor number", num)
	}
	return Spec{Network: FD, Addr: strconv.Itoa(n)}, nil
}

// parseSystemd accepts the names systemd accepts for FileDescriptorName=
// (fdname_is_valid: at most 255 printable ASCII characters, no colon, since
// LISTEN_FDNAMES is colon-separated), so a typo is reported at parse time
// rather than as "no such socket" at start.
func parseSystemd(bind string) (Spec, error) {
	name := strings.TrimPrefix(bind, "systemd:")
	if name == "" {
		return Spec{}, badSpec(bind, "empty socket name (write systemd:NAME, NAME being the socket unit's FileDescriptorName=)")
	}
	if !validFDName(name) {
		return Spec{}, badSpec(bind, "%q is not a systemd FileDescriptorName= (at most 255 printable ASCII characters, no colon or space)", name)
	}
	return Spec{Network: Systemd, Addr: name}, nil
}

func validFDName(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		// systemd also rejects space; it would split a bind list anyway.
		if c := name[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

func parseTCP(bind, addr string) (Spec, error) {
	if addr == "" {
		return Spec{}, badSpec(bind, "empty address")
	}
	// A bare host, gunicorn style: bind = example.org means port 8000.
	if !strings.Contains(addr, ":") {
		if _, err := strconv.Atoi(addr); err == nil {
			return Spec{}, badSpec(bind, "no host (write 127.0.0.1:%s for this machine or :%s for every interface)", addr, addr)
		}
		return tcpSpec(bind, addr, strconv.Itoa(DefaultPort))
	}
	// [::1] without a port.
	if strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
		return tcpSpec(bind, addr[1:len(addr)-1], strconv.Itoa(DefaultPort))
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if strings.Count(addr, ":") > 1 && !strings.HasPrefix(addr, "[") {
			return Spec{}, badSpec(bind, "an IPv6 address needs brackets: [%s]:PORT", addr)
		}
		return Spec{}, badSpec(bind, "%v", err)
	}
	return tcpSpec(bind, host, port)
}

func tcpSpec(bind, host, port string) (Spec, error) {
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return Spec{}, badSpec(bind, "port %q is not a number from 0 to 65535", port)
	}
	h, err := normaliseHost(host)
	if err != nil {
		return Spec{}, badSpec(bind, "%v", err)
	}
	return Spec{Network: TCP, Addr: net.JoinHostPort(h, strconv.Itoa(p))}, nil
}

func normaliseHost(host string) (string, error) {
	switch strings.ToLower(host) {
	case "", "*":
		return "", nil // every interface
	case "localhost":
		return "127.0.0.1", nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		// netip takes any zone text: "fe80::1%eth0]:1" would be an IP.
		if strings.ContainsAny(ip.Zone(), " /[]@\t%") || strings.ContainsFunc(ip.Zone(), isControl) {
			return "", fmt.Errorf("%q: bad IPv6 zone %q", host, ip.Zone())
		}
		return ip.String(), nil
	}
	if strings.ContainsAny(host, " /[]@\t") || strings.ContainsFunc(host, isControl) {
		return "", fmt.Errorf("%q is not a host name or IP address", host)
	}
	return strings.ToLower(host), nil
}
