package listener

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// assertAccepts dials ln's address and checks ln accepts the connection,
// within a deadline so a broken listener fails the test instead of hanging.
func assertAccepts(t *testing.T, ln net.Listener) {
	t.Helper()
	type deadliner interface{ SetDeadline(time.Time) error }
	if d, ok := ln.(deadliner); ok {
		d.SetDeadline(time.Now().Add(5 * time.Second))
		defer d.SetDeadline(time.Time{})
	}
	addr := ln.Addr()
	dialed := make(chan error, 1)
	go func() {
		c, err := net.DialTimeout(addr.Network(), addr.String(), 5*time.Second)
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on %s: %v", addr, err)
	}
	c.Close()
	if err := <-dialed; err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
}

// fdFlags returns the listener's F_GETFL (O_NONBLOCK lives there) and
// F_GETFD (FD_CLOEXEC) flags.
func fdFlags(t *testing.T, ln net.Listener) (fl, fd int) {
	t.Helper()
	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ferr error
	if err := rc.Control(func(d uintptr) {
		fl, ferr = unix.FcntlInt(d, unix.F_GETFL, 0)
		if ferr == nil {
			fd, ferr = unix.FcntlInt(d, unix.F_GETFD, 0)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
	return fl, fd
}

func nonblocking(t *testing.T, ln net.Listener) bool {
	t.Helper()
	fl, _ := fdFlags(t, ln)
	return fl&unix.O_NONBLOCK != 0
}
