package worker

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/listener"
)

// A removed bind is shut down only once no worker of an older generation
// is alive, draining ones included: until it exits, a draining worker may
// be blocked in accept on it, and shutdown(2) fails that accept (EINVAL)
// in every process sharing the socket — the worker then took its other
// listeners' connections down with it.
func TestRetireWaitsForDrainingWorkers(t *testing.T) {
	kept, err := listener.Parse(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	removed, err := listener.Parse(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	set, err := listener.Open(t.Context(), []listener.Spec{kept, removed}, listener.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	next, retired, err := set.Reconcile(t.Context(), []listener.Spec{kept}, listener.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close(); retired.Close() })
	if len(retired.Specs()) != 1 {
		t.Fatalf("retired %v, want the removed bind", retired.Specs())
	}

	a := &Arbiter{
		log:      hclog.NewNullLogger(),
		mode:     modeRunning,
		target:   1,
		retiring: []retiringSet{{gen: 2, set: retired}},
		workers: map[int]*wproc{
			100: {id: 1, generation: 1, state: stateDraining}, // the old one, draining
			101: {id: 2, generation: 2, state: stateReady},    // its replacement
		},
	}
	removedAddr := removed.Addr
	a.retireListeners()
	if !accepts(removedAddr) {
		t.Fatal("the removed bind was shut down while a worker of the old generation still drained")
	}
	delete(a.workers, 100) // it exited
	// An upgrade runs: the new master inherits the socket and may serve
	// on it (its config can name the bind again), so it stays up until
	// the upgrade failed.
	a.upgrading = true
	a.retireListeners()
	if !accepts(removedAddr) {
		t.Fatal("the removed bind was shut down while an upgrade ran")
	}
	a.upgrading = false
	a.retireListeners()
	if accepts(removedAddr) {
		t.Fatal("the removed bind still accepts once every old worker exited")
	}
	if len(a.retiring) != 0 {
		t.Errorf("still retiring %v", a.retiring)
	}
}

func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
