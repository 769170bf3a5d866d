package listener

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func freeTCPSpec(t *testing.T) Spec {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return Spec{TCP, addr}
}

func refused(t *testing.T, network, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 2*time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist)
}

func backlogOf(t *testing.T, ln net.Listener) uint32 {
	t.Helper()
	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var gerr error
	rc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return info.Sacked // a listening socket's accept queue limit
}

// A reload that adds a bind keeps the listener of the bind that stays
// (however it is respelled) and opens the new one; one that removes a bind
// retires it so that nobody accepts there any more, even though tableflip
// keeps a duplicate of every socket for the next master.
func TestReconcileAddsKeepsAndRetires(t *testing.T) {
	fds := testFds(t)
	a := freeTCPSpec(t)
	first, err := Open(t.Context(), []Spec{a}, Options{}, fds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	b := freeTCPSpec(t)
	respelled, err := Parse("localhost:" + a.Addr[len("127.0.0.1:"):])
	if err != nil {
		t.Fatal(err)
	}
	next, retired, err := first.Reconcile(t.Context(), []Spec{b, respelled}, Options{Backlog: 9}, fds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close() })
	if len(retired.Listeners()) != 0 {
		t.Errorf("retired %v, want nothing", retired.Specs())
	}
	if got := next.Specs(); len(got) != 2 || got[0] != b || got[1] != a {
		t.Fatalf("next specs %v, want [%v %v] in bind order", got, b, a)
	}
	if next.Listeners()[1] != first.Listeners()[0] {
		t.Error("the kept bind got a new socket")
	}
	assertAccepts(t, next.Listeners()[0])
	assertAccepts(t, next.Listeners()[1])
	if got := backlogOf(t, next.Listeners()[1]); got != 9 {
		t.Errorf("kept listener backlog %d, want the new 9", got)
	}

	last, retired, err := next.Reconcile(t.Context(), []Spec{b}, Options{}, fds)
	if err != nil {
		t.Fatal(err)
	}
	if got := retired.Specs(); len(got) != 1 || got[0] != a {
		t.Fatalf("retired %v, want [%v]", got, a)
	}
	if err := retired.Retire(); err != nil {
		t.Fatal(err)
	}
	if !refused(t, "tcp", a.Addr) {
		t.Errorf("%s still accepts after Retire", a.Addr)
	}
	assertAccepts(t, last.Listeners()[0])
	// The address is free for a later bind (tableflip's duplicate is a
	// socket that no longer listens).
	again, _, err := last.Reconcile(t.Context(), []Spec{b, a}, Options{}, fds)
	if err != nil {
		t.Fatalf("bind %s again after Retire: %v", a, err)
	}
	t.Cleanup(func() { again.Close() })
	assertAccepts(t, again.Listeners()[1])
}

// A removed unix bind is refused and its socket file removed.
func TestRetireUnix(t *testing.T) {
	fds := testFds(t)
	path := filepath.Join(shortTempDir(t), "r.sock")
	tcp := freeTCPSpec(t)
	s, err := Open(t.Context(), []Spec{{Unix, path}, tcp}, Options{}, fds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	next, retired, err := s.Reconcile(t.Context(), []Spec{tcp}, Options{}, fds)
	if err != nil {
		t.Fatal(err)
	}
	if err := retired.Retire(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Retire: %v", err)
	}
	assertAccepts(t, next.Listeners()[0])
}

// A bind that cannot be opened fails the whole change: the sockets opened
// for it are closed and the running Set is untouched.
func TestReconcileFailureChangesNothing(t *testing.T) {
	a := freeTCPSpec(t)
	s, err := Open(t.Context(), []Spec{a}, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	fresh := freeTCPSpec(t)
	_, _, err = s.Reconcile(t.Context(), []Spec{a, fresh, {TCP, busy.Addr().String()}}, Options{}, nil)
	if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, ErrInUse) {
		t.Fatalf("Reconcile onto a busy port: %v, want address in use", err)
	}
	if !refused(t, "tcp", fresh.Addr) {
		t.Errorf("%s opened by the failed Reconcile still accepts", fresh.Addr)
	}
	if len(s.Listeners()) != 1 {
		t.Fatalf("running set changed: %v", s.Specs())
	}
	assertAccepts(t, s.Listeners()[0])
}

// A bind that one reload removed and the next names again, while the
// removed socket is still held (its workers drain), gets that very socket
// back: binding the address anew fails, as it is still in use, and the
// address never stops accepting. Without the held set the same change
// fails, which is how a save once took a site off its address.
func TestReconcileTakesBackAHeldListener(t *testing.T) {
	fds := testFds(t)
	a, b := freeTCPSpec(t), freeTCPSpec(t)
	first, err := Open(t.Context(), []Spec{a, b}, Options{}, fds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	held := first.Listeners()[0]
	next, retiring, err := first.Reconcile(t.Context(), []Spec{b}, Options{}, fds)
	if err != nil {
		t.Fatal(err)
	}
	if got := retiring.Specs(); len(got) != 1 || got[0] != a {
		t.Fatalf("retiring %v, want [%v]", got, a)
	}
	assertAccepts(t, held) // held, not retired yet

	if _, _, err := next.Reconcile(t.Context(), []Spec{a, b}, Options{}, fds); !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, ErrInUse) {
		t.Fatalf("Reconcile naming a held address without the held set: %v, want address in use", err)
	}

	respelled, err := Parse("localhost:" + a.Addr[len("127.0.0.1:"):])
	if err != nil {
		t.Fatal(err)
	}
	again, retired, err := next.Reconcile(t.Context(), []Spec{respelled, b}, Options{}, fds, retiring)
	if err != nil {
		t.Fatalf("Reconcile naming a held address: %v", err)
	}
	if len(retired.Listeners()) != 0 {
		t.Errorf("retired %v, want nothing", retired.Specs())
	}
	if got := again.Listeners(); len(got) != 2 || got[0] != held || got[1] != next.Listeners()[0] {
		t.Fatalf("listeners %v, want the held socket back, then the kept one", again.Specs())
	}
	if rest := retiring.Without(again); len(rest.Listeners()) != 0 {
		t.Errorf("still retiring %v after it was taken back", rest.Specs())
	}
	if rest := retiring.Without(next); len(rest.Listeners()) != 1 {
		t.Errorf("Without dropped a socket the other set does not hold: %v", rest.Specs())
	}
	assertAccepts(t, again.Listeners()[0])
	assertAccepts(t, again.Listeners()[1])
}

// A socket Retire shut down is still open in whoever holds a duplicate
// (tableflip, for the next master) but no longer takes connections:
// Listening tells the next master to bind the address anew instead of
// accepting on it, for tcp and unix binds.
func TestListeningAfterRetire(t *testing.T) {
	for _, spec := range []Spec{freeTCPSpec(t), {Unix, filepath.Join(shortTempDir(t), "l.sock")}} {
		t.Run(spec.Network, func(t *testing.T) {
			s, err := Open(t.Context(), []Spec{spec}, Options{}, testFds(t))
			if err != nil {
				t.Fatal(err)
			}
			f, err := s.Listeners()[0].(interface{ File() (*os.File, error) }).File()
			if err != nil {
				t.Fatal(err)
			}
			dup, err := net.FileListener(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			defer dup.Close()
			if !Listening(dup) {
				t.Fatal("a listening socket's duplicate does not listen")
			}
			if err := s.Retire(); err != nil {
				t.Fatal(err)
			}
			if Listening(dup) {
				t.Error("the duplicate of a retired socket still listens")
			}
		})
	}
}
