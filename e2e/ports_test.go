package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The ports the tests' servers bind. A port asked of the kernel (:0) and
// closed again is one of its ephemeral ports: any client connection made
// before the server binds it may take it as its own source port, and the
// server then fails with "address already in use". These come from below
// the ephemeral range instead, and are never handed out twice in this
// process, so tests running side by side cannot collide either.
var ports struct {
	mu     sync.Mutex
	next   int
	lo, hi int
	given  map[int]bool
}

// portRange is [10000, start of the ephemeral range).
func portRange() (lo, hi int) {
	lo, hi = 10000, 32767
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		if n, err := strconv.Atoi(f[0]); err == nil && n-1 > lo+1000 {
			hi = n - 1
		}
	}
	return lo, hi
}

// allocPort returns a loopback TCP port nobody listens on now, from below
// the ephemeral range, not given before in this process.
func allocPort() (int, error) {
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.given == nil {
		ports.lo, ports.hi = portRange()
		ports.next = ports.lo + rand.IntN(ports.hi-ports.lo)
		ports.given = make(map[int]bool)
	}
	for range ports.hi - ports.lo {
		p := ports.next
		ports.next++
		if ports.next > ports.hi {
			ports.next = ports.lo
		}
		if ports.given[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue // somebody else's
		}
		ln.Close()
		ports.given[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free port in [%d, %d]", ports.lo, ports.hi)
}

// freePort is allocPort for a test.
func freePort(t *testing.T) int {
	t.Helper()
	p, err := allocPort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Ports are outside the ephemeral range, free, and never given twice.
func TestFreePort(t *testing.T) {
	lo, hi := portRange()
	seen := make(map[int]bool)
	for range 50 {
		p := freePort(t)
		if p < lo || p > hi || seen[p] {
			t.Fatalf("port %d: want a new one in [%d, %d]", p, lo, hi)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		ln.Close()
	}
}
