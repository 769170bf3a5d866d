package control

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A deleted control socket file is bound again by Recreate, and the
// Server's one Serve loop answers on the new socket; a socket still in
// place is left alone.
func TestSocketRecreate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opener func() *fakeOpener
	}{
		{"direct", func() *fakeOpener { return nil }},
		{"through an opener", func() *fakeOpener {
			return &fakeOpener{inherited: map[string]net.Listener{}, added: map[string]net.Listener{}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(shortDir(t), "ctl.sock")
			o := tc.opener()
			var sock *Socket
			var err error
			if o == nil {
				sock, err = ListenSocket(t.Context(), path, nil)
			} else {
				sock, err = ListenSocket(t.Context(), path, o)
			}
			if err != nil {
				t.Fatal(err)
			}
			srv := NewServer(ServerOptions{Controller: newFake()})
			done := make(chan error, 1)
			go func() { done <- srv.Serve(sock) }()
			c := &Client{Path: path, Timeout: 5 * time.Second}
			defer c.CloseIdleConnections()
			status := func() error {
				c.CloseIdleConnections() // dial the path each time
				_, err := c.Status(t.Context())
				return err
			}
			if err := status(); err != nil {
				t.Fatal(err)
			}
			if again, err := sock.Recreate(t.Context()); again || err != nil {
				t.Fatalf("Recreate with the socket in place = %v, %v; want a no-op", again, err)
			}
			first := sock.Addr()
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := status(); err == nil {
				t.Fatal("status answered with the socket file deleted")
			}
			if again, err := sock.Recreate(t.Context()); !again || err != nil {
				t.Fatalf("Recreate after the file was deleted = %v, %v", again, err)
			}
			if err := status(); err != nil {
				t.Fatalf("status after Recreate: %v", err)
			}
			if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != SocketMode {
				t.Errorf("recreated socket: %v, %v; want mode %v", fi, err, SocketMode)
			}
			if o != nil && o.added["unix:"+path] == nil {
				t.Error("the new socket was not created through the opener (an upgrade would hand over the dead one)")
			}
			if sock.Addr() == first {
				t.Error("Addr is still the old listener's")
			}
			if again, err := sock.Recreate(t.Context()); again || err != nil {
				t.Fatalf("second Recreate = %v, %v; want a no-op", again, err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return after Shutdown")
			}
			_, err = os.Lstat(path)
			if o == nil && err == nil {
				t.Error("the recreated socket file outlived Close")
			}
			if again, err := sock.Recreate(t.Context()); again || err != nil {
				t.Errorf("Recreate after Close = %v, %v; want a no-op", again, err)
			}
		})
	}
}

// A path now holding something else is not taken over: a regular file is
// refused and left in place.
func TestSocketRecreateRefusesAnotherFile(t *testing.T) {
	path := filepath.Join(shortDir(t), "ctl.sock")
	sock, err := ListenSocket(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := sock.Recreate(t.Context())
	if again || err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Recreate over a regular file = %v, %v; want a refusal naming %s", again, err, path)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "not a socket" {
		t.Errorf("the regular file was touched: %q, %v", b, err)
	}
}
