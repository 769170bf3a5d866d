package listener

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Spec
		wantErr string
	}{
		{name: "ipv4", in: "127.0.0.1:8080", want: Spec{TCP, "127.0.0.1:8080"}},
		{name: "localhost is 127.0.0.1", in: "localhost:8080", want: Spec{TCP, "127.0.0.1:8080"}},
		{name: "localhost any case", in: "LocalHost:8080", want: Spec{TCP, "127.0.0.1:8080"}},
		{name: "all interfaces", in: ":8080", want: Spec{TCP, ":8080"}},
		{name: "star is all interfaces", in: "*:8080", want: Spec{TCP, ":8080"}},
		{name: "ipv6", in: "[::1]:8080", want: Spec{TCP, "[::1]:8080"}},
		{name: "ipv6 canonical", in: "[0:0:0:0:0:0:0:1]:8080", want: Spec{TCP, "[::1]:8080"}},
		{name: "ipv6 no port", in: "[::1]", want: Spec{TCP, "[::1]:8000"}},
		{name: "bare host gets gunicorn port", in: "example.org", want: Spec{TCP, "example.org:8000"}},
		{name: "host name lowercased", in: "Example.ORG:80", want: Spec{TCP, "example.org:80"}},
		{name: "tcp scheme", in: "tcp://127.0.0.1:9000", want: Spec{TCP, "127.0.0.1:9000"}},
		{name: "port leading zero", in: "127.0.0.1:08080", want: Spec{TCP, "127.0.0.1:8080"}},
		{name: "port zero", in: "127.0.0.1:0", want: Spec{TCP, "127.0.0.1:0"}},
		{name: "spaces trimmed", in: "  127.0.0.1:80 ", want: Spec{TCP, "127.0.0.1:80"}},
		{name: "unix", in: "unix:/run/app.sock", want: Spec{Unix, "/run/app.sock"}},
		{name: "unix url", in: "unix:///run/app.sock", want: Spec{Unix, "/run/app.sock"}},
		{name: "unix cleaned", in: "unix:/run//x/../app.sock", want: Spec{Unix, "/run/app.sock"}},
		{name: "unix relative", in: "unix:app.sock", want: Spec{Unix, "app.sock"}},
		{name: "unix abstract", in: "unix:@paddock", want: Spec{Unix, "@paddock"}},
		{name: "fd", in: "fd://3", want: Spec{FD, "3"}},
		{name: "fd leading zero", in: "fd://03", want: Spec{FD, "3"}},
		{name: "systemd", in: "systemd:http", want: Spec{Systemd, "http"}},
		{name: "systemd punctuation", in: "systemd:web-1.socket", want: Spec{Systemd, "web-1.socket"}},

		{name: "empty", in: "", wantErr: "empty address"},
		{name: "bare port", in: "8080", wantErr: "no host (write 127.0.0.1:8080"},
		{name: "port not a number", in: "127.0.0.1:http", wantErr: `port "http" is not a number`},
		{name: "port too big", in: "127.0.0.1:65536", wantErr: "is not a number from 0 to 65535"},
		{name: "port negative", in: "127.0.0.1:-1", wantErr: "is not a number from 0 to 65535"},
		{name: "ipv6 without brackets", in: "::1:8080", wantErr: "needs brackets"},
		{name: "unix empty", in: "unix:", wantErr: "empty socket path"},
		{name: "unix abstract empty", in: "unix:@", wantErr: "empty abstract socket name"},
		{name: "fd not a number", in: "fd://x", wantErr: "not a file descriptor number"},
		{name: "fd negative", in: "fd://-1", wantErr: "not a file descriptor number"},
		{name: "systemd empty", in: "systemd:", wantErr: "empty socket name"},
		{name: "systemd colon", in: "systemd:a:b", wantErr: "is not a systemd FileDescriptorName="},
		{name: "systemd space", in: "systemd:a b", wantErr: "is not a systemd FileDescriptorName="},
		{name: "systemd too long", in: "systemd:" + strings.Repeat("n", 256), wantErr: "is not a systemd FileDescriptorName="},
		{name: "bad host", in: "a/b:80", wantErr: "is not a host name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				if !errors.Is(err, ErrBadSpec) {
					t.Errorf("Parse(%q) error %v does not wrap ErrBadSpec", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("Parse(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
		})
	}
}

func TestSpecString(t *testing.T) {
	tests := []struct {
		in, str, key string
	}{
		{"localhost:80", "127.0.0.1:80", "tcp/127.0.0.1:80"},
		{"unix:///tmp/a.sock", "unix:/tmp/a.sock", "unix//tmp/a.sock"},
		{"fd://4", "fd://4", "fd/4"},
		{"systemd:http", "systemd:http", "systemd/http"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			s, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if s.String() != tc.str || s.Key() != tc.key {
				t.Errorf("got String %q Key %q, want %q %q", s.String(), s.Key(), tc.str, tc.key)
			}
			// String round-trips through Parse.
			again, err := Parse(s.String())
			if err != nil || again != s {
				t.Errorf("Parse(%q) = %v, %v; want %v", s.String(), again, err, s)
			}
		})
	}
}

func TestParseListDedupes(t *testing.T) {
	got, err := ParseList([]string{"localhost:8080", "unix:/tmp/a.sock", "127.0.0.1:8080", "unix:///tmp/a.sock", "[::1]:8080"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{{TCP, "127.0.0.1:8080"}, {Unix, "/tmp/a.sock"}, {TCP, "[::1]:8080"}}
	if len(got) != len(want) {
		t.Fatalf("ParseList = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ParseList[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestParseListReportsEveryError(t *testing.T) {
	_, err := ParseList([]string{"8080", "127.0.0.1:80", "fd://x"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`"8080"`, `"fd://x"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestFromHostPort(t *testing.T) {
	tests := []struct {
		host, port string
		want       string
		wantErr    string
	}{
		{"", "", "127.0.0.1:8080", ""},
		{"0.0.0.0", "9000", "0.0.0.0:9000", ""},
		{"localhost", "", "127.0.0.1:8080", ""},
		{"::1", "80", "[::1]:80", ""},
		{"[::1]", "80", "[::1]:80", ""},
		{"", "abc", "", "is not a number"},
	}
	for _, tc := range tests {
		t.Run(tc.host+"_"+tc.port, func(t *testing.T) {
			got, err := FromHostPort(tc.host, tc.port)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != (Spec{TCP, tc.want}) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func sockoptInt(t *testing.T, ln net.Listener, level, opt int) int {
	t.Helper()
	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var (
		v    int
		gerr error
	)
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

func TestListenTCPReusePort(t *testing.T) {
	opts := Options{ReusePort: true, Backlog: 16}
	ln, err := Listen(t.Context(), Spec{TCP, "127.0.0.1:0"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if v := sockoptInt(t, ln, unix.SOL_SOCKET, unix.SO_REUSEPORT); v != 1 {
		t.Errorf("SO_REUSEPORT = %d, want 1", v)
	}
	// With SO_REUSEPORT a second socket binds the same port.
	ln2, err := Listen(t.Context(), Spec{TCP, ln.Addr().String()}, opts)
	if err != nil {
		t.Fatalf("second bind with reuse_port: %v", err)
	}
	ln2.Close()

	// Without it the port is taken.
	ln3, err := Listen(t.Context(), Spec{TCP, ln.Addr().String()}, Options{})
	if err == nil {
		ln3.Close()
		t.Fatal("second bind without reuse_port succeeded")
	}

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
}

func TestListenTCPDefaultNoReusePort(t *testing.T) {
	ln, err := Listen(t.Context(), Spec{TCP, "127.0.0.1:0"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if v := sockoptInt(t, ln, unix.SOL_SOCKET, unix.SO_REUSEPORT); v != 0 {
		t.Errorf("SO_REUSEPORT = %d, want 0", v)
	}
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	// sun_path is 108 bytes; t.TempDir under a long TMPDIR can exceed it.
	dir, err := os.MkdirTemp("", "lst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestListenUnix(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "a.sock")
	ln, err := Listen(t.Context(), Spec{Unix, path}, Options{Mode: 0o600, Backlog: 8})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}

	// A live socket is not stolen.
	_, err = Listen(t.Context(), Spec{Unix, path}, Options{})
	if !errors.Is(err, ErrInUse) {
		t.Errorf("second Listen on a live socket: %v, want ErrInUse", err)
	}

	ln.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there after Close: %v", err)
	}
}

func TestListenUnixDefaultMode(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "m.sock")
	ln, err := Listen(t.Context(), Spec{Unix, path}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != DefaultMode {
		t.Errorf("mode = %v, want %v", fi.Mode().Perm(), DefaultMode)
	}
}

func TestListenUnixRemovesStaleSocket(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "stale.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	// A crashed server leaves its socket file behind.
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	ln, err := Listen(t.Context(), Spec{Unix, path}, Options{})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial new socket: %v", err)
	}
	c.Close()
}

func TestListenUnixKeepsRegularFile(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "data")
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(t.Context(), Spec{Unix, path}, Options{})
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v, want a 'not a socket' error", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Errorf("regular file damaged: %q, %v", b, err)
	}
}

func TestListenFD(t *testing.T) {
	// Not orig.File() itself: Listen closes the number, and the *os.File's
	// finalizer would close it again later, by then maybe another test's
	// socket.
	fd, addr := inheritedFD(t)

	s, err := Parse("fd://" + strconv.Itoa(fd))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(t.Context(), s, Options{})
	if err != nil {
		t.Fatalf("Listen(%v): %v", s, err)
	}
	defer ln.Close()
	if ln.Addr().String() != addr {
		t.Errorf("addr = %s, want %s", ln.Addr(), addr)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
}

func TestListenFDNotASocket(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Listen closes the descriptor it was handed; give it a dup.
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(t.Context(), Spec{FD, strconv.Itoa(fd)}, Options{}); err == nil {
		t.Fatal("Listen on /dev/null succeeded")
	}
}

func TestListenTCPBacklog(t *testing.T) {
	ln, err := Listen(t.Context(), Spec{TCP, "127.0.0.1:0"}, Options{Backlog: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var (
		info *unix.TCPInfo
		gerr error
	)
	rc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if gerr != nil {
		t.Skipf("TCP_INFO: %v", gerr)
	}
	// For a listening socket Linux reports the accept queue limit in
	// tcpi_sacked.
	if info.Sacked != 7 {
		t.Errorf("backlog = %d, want 7", info.Sacked)
	}
}
