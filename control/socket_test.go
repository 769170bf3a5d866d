package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"paddock/listener"
)

func TestSocketPath(t *testing.T) {
	tmpFallback := filepath.Join(os.TempDir(), "paddock-"+strconv.Itoa(os.Getuid()), "ctl.sock")
	tests := []struct {
		name, explicit, pidfile string
		env                     map[string]string
		want, how, err          string
	}{
		{"explicit wins", "/srv/p/ctl.sock", "/run/p.pid", map[string]string{"RUNTIME_DIRECTORY": "/run/paddock", "XDG_RUNTIME_DIR": "/run/user/1"}, "/srv/p/ctl.sock", "control_socket", ""},
		{"explicit cleaned", "/srv//p/./ctl.sock", "", nil, "/srv/p/ctl.sock", "control_socket", ""},
		{"explicit relative", "ctl.sock", "", nil, "", "", "must be absolute"},
		{"runtime directory", "", "/run/p.pid", map[string]string{"RUNTIME_DIRECTORY": "/run/paddock", "XDG_RUNTIME_DIR": "/run/user/1"}, "/run/paddock/ctl.sock", "RUNTIME_DIRECTORY", ""},
		{"runtime directory list", "", "", map[string]string{"RUNTIME_DIRECTORY": "/run/a:/run/b"}, "/run/a/ctl.sock", "RUNTIME_DIRECTORY", ""},
		{"xdg", "", "/run/p.pid", map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, "/run/user/1000/paddock/ctl.sock", "XDG_RUNTIME_DIR", ""},
		{"empty env is unset", "", "/run/p.pid", map[string]string{"RUNTIME_DIRECTORY": "", "XDG_RUNTIME_DIR": ""}, "/run/p.ctl.sock", "pidfile", ""},
		{"pidfile", "", "/var/run/app/master.pid", nil, "/var/run/app/master.ctl.sock", "pidfile /var/run/app/master.pid", ""},
		{"pidfile without .pid", "", "/run/app.lock", nil, "/run/app.lock.ctl.sock", "pidfile", ""},
		{"fallback", "", "", nil, tmpFallback, "fallback", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			got, how, err := SocketPath(tc.explicit, tc.pidfile, lookup)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || !strings.Contains(how, tc.how) {
				t.Errorf("got %q (%s), want %q (%s)", got, how, tc.want, tc.how)
			}
		})
	}
}

func TestListenMode0600UnderUmask000(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(shortDir(t), "sub")
	path := filepath.Join(dir, "ctl.sock")
	ln, err := Listen(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600 socket", fi.Mode())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode %v, want 0700", di.Mode())
	}
	if got := syscall.Umask(0); got != 0 {
		t.Errorf("umask left at %o", got)
	}
}

// staleSocket leaves a socket file nobody listens on.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
}

func TestListenReplacesStale(t *testing.T) {
	path := filepath.Join(shortDir(t), "ctl.sock")
	staleSocket(t, path)
	ln, err := Listen(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Close left the file: %v", err)
	}
}

func TestListenRefusesLive(t *testing.T) {
	c, _ := serve(t, ServerOptions{Controller: newFake()})
	before, err := os.Lstat(c.Path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Listen(t.Context(), c.Path, nil)
	if !errors.Is(err, listener.ErrInUse) {
		t.Fatalf("err %v, want ErrInUse", err)
	}
	for _, want := range []string{"another paddock master (pid 4120)", c.Path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	after, err := os.Lstat(c.Path)
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("the live socket was replaced: %v", err)
	}
	if _, err := c.Status(t.Context()); err != nil {
		t.Fatalf("the live master stopped answering: %v", err)
	}
}

func TestListenRefusesNonSocketAndBadDir(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "ctl.sock")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(t.Context(), path, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: %v", err)
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(t.Context(), filepath.Join(open, "ctl.sock"), nil); err == nil || !strings.Contains(err.Error(), "writable by everyone") {
		t.Errorf("world-writable directory: %v", err)
	}
	if _, err := Listen(t.Context(), "rel.sock", nil); err == nil {
		t.Error("relative path accepted")
	}
}

// fakeOpener is a tableflip.Fds stand-in: it hands out inherited
// listeners by key and records new ones.
type fakeOpener struct {
	inherited map[string]net.Listener
	added     map[string]net.Listener
}

func (o *fakeOpener) ListenWithCallback(network, addr string, cb func(string, string) (net.Listener, error)) (net.Listener, error) {
	key := network + ":" + addr
	if ln, ok := o.inherited[key]; ok {
		return ln, nil
	}
	ln, err := cb(network, addr)
	if err != nil {
		return nil, fmt.Errorf("can't create new listener: %s", err) // as tableflip: %s
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	o.added[key] = ln
	return ln, nil
}

func TestListenThroughOpener(t *testing.T) {
	path := filepath.Join(shortDir(t), "ctl.sock")
	o := &fakeOpener{inherited: map[string]net.Listener{}, added: map[string]net.Listener{}}
	ln, err := Listen(t.Context(), path, o)
	if err != nil {
		t.Fatal(err)
	}
	if o.added["unix:"+path] != ln {
		t.Fatal("the socket was not created through the Opener")
	}
	// The next process inherits it as it is, although it is live.
	next := &fakeOpener{inherited: map[string]net.Listener{"unix:" + path: ln}, added: map[string]net.Listener{}}
	got, err := Listen(t.Context(), path, next)
	if err != nil || got != ln {
		t.Fatalf("inherit: %v", err)
	}
	// A live socket under another key is refused with ErrInUse kept.
	_, err = Listen(t.Context(), path, &fakeOpener{inherited: map[string]net.Listener{}, added: map[string]net.Listener{}})
	if !errors.Is(err, listener.ErrInUse) {
		t.Errorf("err %v, want ErrInUse through the Opener", err)
	}
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close through an Opener unlinked the socket: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	f := newFake()
	c, _ := serve(t, ServerOptions{Controller: f})
	f.err = &ConfigError{Problems: []ConfigProblem{{File: "/p.ini", Line: 3, Message: "bad"}}}
	_, err := c.Reload(t.Context())
	var ae *APIError
	var ce *ConfigError
	if !errors.As(err, &ae) || ae.Status != 422 || ae.Code != CodeConfigInvalid || len(ae.Details) != 1 {
		t.Fatalf("Reload: %#v", err)
	}
	if !errors.As(err, &ce) || ce.Problems[0].Line != 3 {
		t.Errorf("no *ConfigError in %v", err)
	}
	b, err := c.Raw(t.Context(), "POST", "/v1/reload", nil)
	if err == nil || !strings.Contains(string(b), `"config_invalid"`) {
		t.Errorf("Raw: %q, %v", b, err)
	}
	f.mu.Lock()
	f.err = ErrBusy
	f.mu.Unlock()
	if _, err := c.Upgrade(t.Context()); !errors.Is(err, ErrBusy) {
		t.Errorf("Upgrade: %v, want ErrBusy", err)
	}
	f.mu.Lock()
	f.err = nil
	f.mu.Unlock()
	if err := c.KillWorker(t.Context(), 77, true); !errors.Is(err, ErrNoSuchWorker) {
		t.Errorf("KillWorker: %v", err)
	}
	prev, target, err := c.AddWorkers(t.Context(), 3)
	if err != nil || prev != 4 || target != 7 {
		t.Errorf("AddWorkers: %d %d %v", prev, target, err)
	}
	if _, _, err := c.SetTarget(t.Context(), 0); !errors.Is(err, ErrBadRequest) {
		t.Errorf("SetTarget(0): %v", err)
	}
	if b, err := c.Pipeline(t.Context(), "dot"); err != nil || string(b) != "digraph {}\n" {
		t.Errorf("Pipeline: %q %v", b, err)
	}
	if err := c.Stop(t.Context(), true, 1500*time.Millisecond); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if got := <-f.stopped; got != (stopCall{true, 1500 * time.Millisecond}) {
		t.Errorf("Stop: %+v", got)
	}
}

func TestClientUnreachable(t *testing.T) {
	dir := shortDir(t)
	stale := filepath.Join(dir, "stale.sock")
	staleSocket(t, stale)
	for _, path := range []string{filepath.Join(dir, "missing.sock"), stale} {
		c := &Client{Path: path, How: "$XDG_RUNTIME_DIR/paddock/ctl.sock"}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := c.Status(ctx)
		cancel()
		var ue *UnreachableError
		if !errors.As(err, &ue) || ue.Path != path {
			t.Fatalf("%s: %v, want *UnreachableError", path, err)
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "XDG_RUNTIME_DIR") {
			t.Errorf("message %q names neither path nor rule", err)
		}
	}
}
