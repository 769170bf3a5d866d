package listener

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fdBlock returns the first of n consecutive unused descriptor numbers, to
// stand in for SD_LISTEN_FDS_START: 3, 4, ... belong to the Go runtime and
// the test framework. The number after the block is unused too, for the
// "LISTEN_FDS counts one too many" case.
func fdBlock(t *testing.T, n int) int {
	t.Helper()
start:
	for start := 200; start < 1000; start += n + 1 {
		for fd := start; fd <= start+n; fd++ {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
				continue start
			}
		}
		return start
	}
	t.Fatal("no free descriptor block")
	return 0
}

// activate puts one listening tcp socket per name at consecutive
// descriptors from a free block, without close-on-exec as systemd passes
// them, and makes a fresh activator with that block as its fd start and
// pid as its process id the package's. It returns the block start and the
// sockets' addresses.
func activate(t *testing.T, n, pid int) (int, []string) {
	t.Helper()
	start := fdBlock(t, n)
	var addrs []string
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Dup3(int(f.Fd()), start+i, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
		ln.Close()
	}
	env := stdActivationEnv
	env.fdStart = start
	env.getpid = func() int { return pid }
	a := &activator{env: env}
	old := activation
	activation = a
	t.Cleanup(func() {
		activation = old
		a.close()
		// Descriptors the activator did not wrap (a failing case) are
		// still ours; closing a wrapped one twice could hit a reused
		// number.
		for fd := start + len(a.fds); fd < start+n; fd++ {
			unix.Close(fd)
		}
	})
	return start, addrs
}

func TestActivated(t *testing.T) {
	const pid = 4242
	tests := []struct {
		name              string
		fds               int
		listenPID         string
		listenFDs         string // "" with fds > 0: strconv.Itoa(fds)
		names             string
		wantNames         []string
		wantSpecs         []string // "%d" is replaced by the fd
		wantErr           string
		wantNotActivation bool
	}{
		{name: "not activated", wantNotActivation: true},
		{name: "named", fds: 2, listenPID: "4242", names: "http:https",
			wantNames: []string{"http", "https"}, wantSpecs: []string{"systemd:http", "systemd:https"}},
		{name: "unnamed", fds: 2, listenPID: "4242",
			wantNames: []string{"unknown", "unknown"}, wantSpecs: []string{"fd://%d", "fd://%d"}},
		{name: "shared name", fds: 3, listenPID: "4242", names: "web:web:admin",
			wantNames: []string{"web", "web", "admin"}, wantSpecs: []string{"fd://%d", "fd://%d", "systemd:admin"}},
		{name: "another process's", fds: 1, listenPID: "1", wantNotActivation: true},
		{name: "LISTEN_FDS=0", fds: 0, listenPID: "4242", listenFDs: "0", wantNotActivation: true},
		{name: "bad LISTEN_PID", fds: 1, listenPID: "x", wantErr: "LISTEN_PID"},
		{name: "bad LISTEN_FDS", fds: 1, listenPID: "4242", listenFDs: "-2", wantErr: "not a descriptor count"},
		{name: "names do not match", fds: 2, listenPID: "4242", names: "a:b:c", wantErr: "3 names for LISTEN_FDS=2"},
		{name: "descriptor not open", fds: 1, listenPID: "4242", listenFDs: "2", wantErr: "bad file descriptor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start, addrs := activate(t, tc.fds, pid)
			if tc.listenPID != "" {
				t.Setenv(envListenPID, tc.listenPID)
				n := tc.listenFDs
				if n == "" {
					n = strconv.Itoa(tc.fds)
				}
				t.Setenv(envListenFDs, n)
				t.Setenv(envListenFDNames, tc.names)
			}
			got, err := Activated()
			for _, k := range []string{envListenPID, envListenFDs, envListenFDNames} {
				if v, ok := os.LookupEnv(k); ok {
					t.Errorf("%s=%q still set: workers would see it", k, v)
				}
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Activated() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNotActivation {
				if len(got) != 0 {
					t.Fatalf("Activated() = %v, want none", got)
				}
				// A systemd:NAME bind then has nothing to select.
				_, err := Listen(t.Context(), Spec{Systemd, "http"}, Options{})
				if !errors.Is(err, ErrNotActivated) {
					t.Errorf("Listen(systemd:http) = %v, want ErrNotActivated", err)
				}
				return
			}
			if len(got) != tc.fds {
				t.Fatalf("Activated() = %v, want %d sockets", got, tc.fds)
			}
			specs, err := ActivatedSpecs()
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range got {
				if a.FD != start+i || a.Name != tc.wantNames[i] {
					t.Errorf("[%d] = fd %d %q, want fd %d %q", i, a.FD, a.Name, start+i, tc.wantNames[i])
				}
				want := strings.ReplaceAll(tc.wantSpecs[i], "%d", strconv.Itoa(a.FD))
				if a.Spec.String() != want || specs[i] != a.Spec {
					t.Errorf("[%d] spec = %v (ActivatedSpecs %v), want %s", i, a.Spec, specs[i], want)
				}
				// The spec parses back to itself, so it can be written
				// as a bind.
				if p, err := Parse(want); err != nil || p != a.Spec {
					t.Errorf("Parse(%q) = %v, %v", want, p, err)
				}
				fd, err := unix.FcntlInt(uintptr(a.FD), unix.F_GETFD, 0)
				if err != nil || fd&unix.FD_CLOEXEC == 0 {
					t.Errorf("fd %d: F_GETFD = %#x, %v; want FD_CLOEXEC", a.FD, fd, err)
				}
				// The spec opens that very socket, twice: the package
				// keeps the descriptor, so a second Set gets the same
				// socket instead of a closed or reused number.
				for range 2 {
					s, err := Open(t.Context(), []Spec{a.Spec}, Options{}, nil)
					if err != nil {
						t.Fatalf("Open(%s): %v", a.Spec, err)
					}
					if s.Listeners()[0].Addr().String() != addrs[i] {
						t.Errorf("Open(%s) addr = %s, want %s", a.Spec, s.Listeners()[0].Addr(), addrs[i])
					}
					assertAccepts(t, s.Listeners()[0])
					s.Close()
				}
			}
		})
	}
}

func TestActivatedReadsOnce(t *testing.T) {
	start, _ := activate(t, 1, 77)
	t.Setenv(envListenPID, "77")
	t.Setenv(envListenFDs, "1")
	t.Setenv(envListenFDNames, "http")
	first, err := Activated()
	if err != nil || len(first) != 1 {
		t.Fatalf("Activated() = %v, %v", first, err)
	}
	// A later environment (say, set by a library) changes nothing: the
	// descriptors were claimed at the first call.
	t.Setenv(envListenPID, "77")
	t.Setenv(envListenFDs, "5")
	again, err := Activated()
	if err != nil || len(again) != 1 || again[0].FD != start || again[0].Name != "http" {
		t.Errorf("second Activated() = %v, %v; want the first answer %v", again, err, first)
	}
}

func TestActivatedSharedName(t *testing.T) {
	activate(t, 2, 5)
	t.Setenv(envListenPID, "5")
	t.Setenv(envListenFDs, "2")
	t.Setenv(envListenFDNames, "web:web")
	_, err := Open(t.Context(), []Spec{{Systemd, "web"}}, Options{}, nil)
	if err == nil || !strings.Contains(err.Error(), `2 sockets named "web"`) {
		t.Fatalf("Open(systemd:web) = %v, want an error about 2 sockets", err)
	}
}
