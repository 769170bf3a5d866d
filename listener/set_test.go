package listener

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cloudflare/tableflip"
	"golang.org/x/sys/unix"
)

// The master passes upg.Fds to Open.
var _ Opener = (*tableflip.Fds)(nil)

var (
	upgOnce sync.Once
	upg     *tableflip.Upgrader
	upgErr  error
)

// testFds returns the Fds of the test binary's Upgrader. tableflip.New
// succeeds once per process, so every test shares it; none calls Stop,
// which would close the sockets the others registered.
func testFds(t *testing.T) *tableflip.Fds {
	t.Helper()
	upgOnce.Do(func() { upg, upgErr = tableflip.New(tableflip.Options{}) })
	if upgErr != nil {
		t.Fatalf("tableflip.New: %v", upgErr)
	}
	if upg.HasParent() {
		t.Fatal("the test binary has a tableflip parent")
	}
	return upg.Fds
}

// inheritedFD returns the number of a fresh duplicate of a listening tcp
// socket, as a parent would pass it, and the socket's address.
func inheritedFD(t *testing.T) (int, string) {
	t.Helper()
	orig, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	f, err := orig.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	// Detach the number from f: Listen takes ownership and closes it, and
	// f's finalizer must not close it a second time.
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return fd, orig.Addr().String()
}

func TestOpenThroughTableflip(t *testing.T) {
	fds := testFds(t)
	tests := []struct {
		name  string
		spec  func(t *testing.T) Spec
		opts  Options
		check func(t *testing.T, s *Set)
	}{
		{
			name: "tcp keeps backlog and reuse_port",
			spec: func(*testing.T) Spec { return Spec{TCP, "127.0.0.1:0"} },
			opts: Options{Backlog: 9, ReusePort: true},
			check: func(t *testing.T, s *Set) {
				ln := s.Listeners()[0]
				if v := sockoptInt(t, ln, unix.SOL_SOCKET, unix.SO_REUSEPORT); v != 1 {
					t.Errorf("SO_REUSEPORT = %d, want 1", v)
				}
				rc, _ := ln.(syscall.Conn).SyscallConn()
				var info *unix.TCPInfo
				rc.Control(func(fd uintptr) { info, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
				if info != nil && info.Sacked != 9 {
					t.Errorf("backlog = %d, want 9", info.Sacked)
				}
			},
		},
		{
			name: "unix keeps mode, keeps file on Close, Unlink removes it",
			spec: func(t *testing.T) Spec { return Spec{Unix, filepath.Join(shortTempDir(t), "tf.sock")} },
			opts: Options{Mode: 0o600},
			check: func(t *testing.T, s *Set) {
				path := s.Specs()[0].Addr
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
				}
				// tableflip turned unlink-on-close off: an upgrade
				// hands the path to the next master.
				s.Close()
				if _, err := os.Stat(path); err != nil {
					t.Fatalf("socket file gone after Close through tableflip: %v", err)
				}
				if err := s.Unlink(); err != nil {
					t.Fatalf("Unlink: %v", err)
				}
				if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("socket file still there after Unlink: %v", err)
				}
				if err := s.Unlink(); err != nil {
					t.Errorf("second Unlink: %v", err)
				}
			},
		},
		{
			name: "fd",
			spec: func(t *testing.T) Spec {
				fd, _ := inheritedFD(t)
				return Spec{FD, strconv.Itoa(fd)}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), []Spec{tc.spec(t)}, tc.opts, fds)
			if err != nil {
				t.Fatalf("Open through tableflip: %v", err)
			}
			defer s.Close()
			assertAccepts(t, s.Listeners()[0])
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// A second Open of a spec that is still open, through the same Fds, is a
// second bind of that address: tableflip only hands out a socket a parent
// passed. The error must still be the precise one, the first Set must keep
// serving, and tableflip's entry for the key must survive.
func TestOpenThroughTableflipTwice(t *testing.T) {
	fds := testFds(t)
	tests := []struct {
		name    string
		spec    func(t *testing.T) Spec
		opts    Options
		wantErr error // nil: the second Open succeeds
	}{
		{
			name:    "tcp",
			spec:    func(*testing.T) Spec { return Spec{TCP, "127.0.0.1:0"} },
			wantErr: syscall.EADDRINUSE,
		},
		{
			name:    "unix",
			spec:    func(t *testing.T) Spec { return Spec{Unix, filepath.Join(shortTempDir(t), "twice.sock")} },
			wantErr: ErrInUse,
		},
		{
			name: "tcp reuse_port",
			spec: func(*testing.T) Spec { return Spec{TCP, "127.0.0.1:0"} },
			opts: Options{ReusePort: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			first, err := Open(t.Context(), []Spec{tc.spec(t)}, tc.opts, fds)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			spec := first.Specs()[0]
			if spec.Network == TCP {
				// Port 0 picked one; the second Open asks for it.
				spec.Addr = first.Listeners()[0].Addr().String()
			}
			second, err := Open(t.Context(), []Spec{spec}, tc.opts, fds)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("second Open: %v", err)
				}
				second.Close()
			} else {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("second Open: %v, want errors.Is %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), spec.String()) {
					t.Errorf("error %q does not name %s", err, spec)
				}
			}
			if tc.wantErr != nil {
				// (With reuse_port the kernel may route the dial to
				// the second socket, which tableflip still holds open.)
				assertAccepts(t, first.Listeners()[0])
			}
			if spec.Network == Unix {
				if _, err := os.Stat(spec.Addr); err != nil {
					t.Errorf("the failed Open removed the live socket file: %v", err)
				}
			}
		})
	}
}

// fakeFds stands in for the Fds of an upgraded master: it returns the
// listeners its parent "passed" by key and records every key asked for.
type fakeFds struct {
	inherited map[[2]string]net.Listener
	keys      [][2]string
	created   int
}

func (f *fakeFds) ListenWithCallback(network, addr string, cb func(string, string) (net.Listener, error)) (net.Listener, error) {
	key := [2]string{network, addr}
	f.keys = append(f.keys, key)
	if ln, ok := f.inherited[key]; ok {
		delete(f.inherited, key)
		return ln, nil
	}
	f.created++
	return cb(network, addr)
}

func TestOpenInherits(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "inh.sock")
	unixLn, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The parent's unix socket is live at path, as during a real upgrade:
	// Listen would refuse it (ErrInUse), so success proves the callback
	// was not called and the file was not touched (docs/pitfalls.md D7). fd://99
	// and systemd:web name nothing in this process; inheriting them by
	// key must not touch descriptor 99 or need socket activation.
	fds := &fakeFds{inherited: map[[2]string]net.Listener{
		{Unix, path}:      unixLn,
		{FD, "99"}:        tcpLn,
		{Systemd, "web"}:  tcpLn,
		{TCP, "[::1]:80"}: tcpLn,
	}}
	tests := []struct {
		bind    string
		wantKey [2]string
	}{
		{"unix:///" + strings.TrimPrefix(path, "/"), [2]string{Unix, path}},
		{"fd://99", [2]string{FD, "99"}},
		{"systemd:web", [2]string{Systemd, "web"}},
		// Keys are normalised specs, so a respelled bind still matches.
		{"[0:0:0:0:0:0:0:1]:80", [2]string{TCP, "[::1]:80"}},
	}
	for _, tc := range tests {
		t.Run(tc.bind, func(t *testing.T) {
			spec, err := Parse(tc.bind)
			if err != nil {
				t.Fatal(err)
			}
			created := fds.created
			s, err := Open(t.Context(), []Spec{spec}, Options{}, fds)
			if err != nil {
				t.Fatalf("Open(%s) with an inherited socket: %v", spec, err)
			}
			if fds.created != created {
				t.Errorf("Open(%s) created a socket instead of inheriting", spec)
			}
			if got := fds.keys[len(fds.keys)-1]; got != tc.wantKey {
				t.Errorf("key = %v, want %v", got, tc.wantKey)
			}
			assertAccepts(t, s.Listeners()[0])
		})
	}
	unixLn.Close()
	tcpLn.Close()
}

func TestUnlinkLeavesReplacedFile(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "r.sock")
	s, err := Open(t.Context(), []Spec{{Unix, path}}, Options{}, &fakeFds{})
	if err != nil {
		t.Fatal(err)
	}
	s.Listeners()[0].(*net.UnixListener).SetUnlinkOnClose(false)
	s.Close()
	// Another process takes the path over before we get to Unlink. The
	// link keeps the old inode allocated, so the new socket cannot reuse
	// its number and the test checks SameFile, not the clock.
	if err := os.Link(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := s.Unlink(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Unlink removed a socket file it did not create: %v", err)
	}
}
