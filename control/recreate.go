package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"

	"paddock/listener"
)

// Socket is the master's control socket listener, able to bind its path
// again when the socket file was deleted (tmpfiles cleaning /tmp, an
// operator's rm): a listening unix socket whose file is gone keeps its
// descriptor but nobody can connect to it any more. The master calls
// Recreate on USR1 (reopen files) and on every reload; Accept moves to
// the new socket by itself.
type Socket struct {
	path   string
	opener listener.Opener

	recreateMu sync.Mutex // one Recreate at a time

	mu     sync.Mutex
	cur    net.Listener
	file   os.FileInfo // the socket file cur is bound to (nil: unknown)
	closed bool
}

// ListenSocket is Listen, keeping what Recreate needs.
func ListenSocket(ctx context.Context, path string, opener listener.Opener) (*Socket, error) {
	ln, err := Listen(ctx, path, opener)
	if err != nil {
		return nil, err
	}
	return &Socket{path: path, opener: opener, cur: ln, file: socketInfo(path)}, nil
}

// socketInfo identifies the socket file at path right after it was bound
// or inherited; nil when it is not a socket.
func socketInfo(path string) os.FileInfo {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket {
		return nil
	}
	return fi
}

// Path is the socket's path.
func (s *Socket) Path() string { return s.path }

// Accept waits for a connection on the current socket; when Recreate
// replaced the socket meanwhile it goes on with the new one.
func (s *Socket) Accept() (net.Conn, error) {
	for {
		s.mu.Lock()
		ln := s.cur
		s.mu.Unlock()
		c, err := ln.Accept()
		if err == nil {
			return c, nil
		}
		s.mu.Lock()
		swapped := s.cur != ln && !s.closed
		s.mu.Unlock()
		if !swapped {
			return nil, err
		}
	}
}

// Close closes the current socket; Accept returns. Whether the file is
// unlinked is the listener's affair (see Listen).
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.cur.Close()
}

// Addr is the current socket's address.
func (s *Socket) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.Addr()
}

// Recreate binds the path again when the socket file this Socket serves
// was removed, and reports whether it did. A path that still holds that
// file is left alone (the common case: a cheap Lstat); one holding
// something else is handled as at start (Listen): a stale socket is
// replaced, a live one or another kind of file is refused with an error.
// Through a tableflip opener the new socket replaces the old one in the
// set an upgrade hands over.
func (s *Socket) Recreate(ctx context.Context) (bool, error) {
	s.recreateMu.Lock()
	defer s.recreateMu.Unlock()
	s.mu.Lock()
	closed, file := s.closed, s.file
	s.mu.Unlock()
	if closed {
		return false, nil
	}
	fi, err := os.Lstat(s.path)
	switch {
	case err == nil && file != nil && os.SameFile(fi, file):
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("control: check socket %s: %w", s.path, err)
	}
	ln, err := Listen(ctx, s.path, s.opener)
	if err != nil {
		return false, fmt.Errorf("control: recreate socket: %w", err)
	}
	s.mu.Lock()
	if s.closed { // stopped meanwhile
		s.mu.Unlock()
		ln.Close()
		return false, nil
	}
	old := s.cur
	s.cur, s.file = ln, socketInfo(s.path)
	s.mu.Unlock()
	// The old listener must not unlink the path on Close: the new socket
	// lives there now (Go unlinks by name).
	if u, ok := old.(interface{ SetUnlinkOnClose(bool) }); ok {
		u.SetUnlinkOnClose(false)
	}
	if err := old.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return true, fmt.Errorf("control: close the unreachable socket: %w", err)
	}
	return true, nil
}
