package listener

import (
	"errors"
	"net"
	"os/exec"
	"testing"
	"time"
)

// docs/pitfalls.md D8: starting a process with a listener's descriptor in
// ExtraFiles makes the open file description blocking, and the master's own
// listener shares it. The first half of this test documents the pitfall
// (it is what a master without RestoreNonblock runs into); the second half
// shows RestoreNonblock repairs it.
func TestRestoreNonblockAfterExtraFiles(t *testing.T) {
	s, err := Open(t.Context(), []Spec{{TCP, "127.0.0.1:0"}}, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln := s.Listeners()[0]
	addr := ln.Addr().String()
	defer func() {
		// If an assertion failed while the listener was blocking, an
		// Accept may sit in the kernel and Close would wait for it
		// forever: a connection gets it out, so the test fails instead
		// of hanging.
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
		}
		s.Close()
	}()
	if !nonblocking(t, ln) {
		t.Fatal("a fresh listener is blocking")
	}

	files, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	// Files alone does not change the mode (net's File dups through
	// SyscallConn); it is os.StartProcess calling Fd on ExtraFiles.
	if !nonblocking(t, ln) {
		t.Fatal("Files made the listener blocking")
	}
	cmd := exec.Command("/bin/true")
	cmd.ExtraFiles = files
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	closeFiles(files)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}

	// The pitfall: the master's listener is now blocking.
	if nonblocking(t, ln) {
		t.Fatal("listener still non-blocking after a child started with its fd: D8 no longer happens; revisit RestoreNonblock")
	}
	// And that breaks the runtime's assumptions: Accept sits in accept(2)
	// in the kernel, where a deadline cannot reach it (and Close would
	// wait for it forever). Only a connection gets it out.
	// The deadline is generous so that a slow start of the goroutine
	// cannot make Accept time out before it reaches the kernel.
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	select {
	case err := <-accepted:
		t.Fatalf("Accept on the blocking listener returned before any connection: %v", err)
	case <-time.After(600 * time.Millisecond):
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatalf("Accept: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after a connection arrived")
	}
	ln.(*net.TCPListener).SetDeadline(time.Time{})

	// The fix.
	if err := s.RestoreNonblock(); err != nil {
		t.Fatal(err)
	}
	if !nonblocking(t, ln) {
		t.Fatal("RestoreNonblock left the listener blocking")
	}
	assertAccepts(t, ln)

	// Close must interrupt a goroutine blocked in Accept promptly: that
	// is how the master stops.
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Accept park in the poller
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung with a goroutine in Accept (docs/pitfalls.md D8)")
	}
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}
