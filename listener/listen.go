package listener

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMode is the permission of a unix socket file when Options.Mode is
// zero: owner and group may connect (a front proxy such as nginx usually
// shares a group with the server), others may not.
const DefaultMode os.FileMode = 0o660

// ErrInUse means a unix socket path already has a live server behind it.
var ErrInUse = errors.New("address already in use")

// ErrNotActivated means a systemd:NAME bind names no socket systemd passed
// to this process: the process was not socket-activated, or no socket unit
// has that FileDescriptorName=.
var ErrNotActivated = errors.New("no socket-activated descriptor has that name")

// probeTimeout bounds the dial that tells a live unix socket from a stale
// one; a server too busy to accept within it is still alive.
const probeTimeout = time.Second

// Options are the socket options gunicorn exposes. The zero value is Go's
// defaults plus DefaultMode.
type Options struct {
	// Backlog is the accept queue length (gunicorn's backlog). Zero keeps
	// Go's default, the kernel's net.core.somaxconn; the kernel also caps
	// any value at somaxconn. Applies to tcp and unix sockets Listen
	// creates, not to inherited fds.
	Backlog int
	// ReusePort sets SO_REUSEPORT on tcp sockets, so several processes can
	// bind one port and the kernel spreads connections between them.
	ReusePort bool
	// Mode is the unix socket file's permission; zero means DefaultMode.
	// It is applied right after the bind, so for that instant the file has
	// the process umask's permissions.
	Mode os.FileMode
}

// Listen creates the socket s names. For FD it wraps the inherited
// descriptor (which must be a listening stream socket) and closes the
// number, so only the first Listen of an fd://N may succeed; for Systemd, and
// for an FD that systemd passed, it returns a listener on a duplicate of the
// activated socket (see Activated). The caller owns the listener.
func Listen(ctx context.Context, s Spec, opts Options) (net.Listener, error) {
	var (
		ln  net.Listener
		err error
	)
	switch s.Network {
	case TCP:
		ln, err = listenTCP(ctx, s, opts)
	case Unix:
		ln, err = listenUnix(ctx, s, opts)
	case FD:
		if ln, ok, err := activation.listen(s); ok || err != nil {
			return ln, err
		}
		return listenFD(s)
	case Systemd:
		ln, ok, err := activation.listen(s)
		if !ok && err == nil {
			err = fmt.Errorf("listener: %s: %w", s, ErrNotActivated)
		}
		return ln, err
	default:
		return nil, fmt.Errorf("listener: %s: unknown network %q", s, s.Network)
	}
	if err != nil {
		return nil, err
	}
	if opts.Backlog > 0 {
		if err := setBacklog(ln, opts.Backlog); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listener: %s: set backlog %d: %w", s, opts.Backlog, err)
		}
	}
	return ln, nil
}

func listenTCP(ctx context.Context, s Spec, opts Options) (net.Listener, error) {
	var lc net.ListenConfig
	if opts.ReusePort {
		lc.Control = reusePort
	}
	ln, err := lc.Listen(ctx, "tcp", s.Addr)
	if err != nil {
		return nil, fmt.Errorf("listener: %s: %w", s, err)
	}
	return ln, nil
}

func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_REUSEPORT: %w", serr)
	}
	return nil
}

// setBacklog calls listen(2) again on the listening socket: Go always
// passes somaxconn, and Linux (like the BSDs) lets a second listen change
// the queue length of a socket that is already listening. That keeps the
// socket creation Go's own instead of reimplementing it with raw syscalls.
func setBacklog(ln net.Listener, backlog int) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no file descriptor", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = unix.Listen(int(fd), backlog) }); err != nil {
		return err
	}
	return lerr
}

func listenUnix(ctx context.Context, s Spec, opts Options) (net.Listener, error) {
	abstract := strings.HasPrefix(s.Addr, "@")
	if !abstract {
		if err := RemoveStaleSocket(ctx, s.Addr); err != nil {
			return nil, err
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", s.Addr)
	if err != nil {
		return nil, fmt.Errorf("listener: %s: %w", s, err)
	}
	if abstract {
		return ln, nil
	}
	mode := opts.Mode
	if mode == 0 {
		mode = DefaultMode
	}
	if err := os.Chmod(s.Addr, mode); err != nil {
		ln.Close() // also unlinks the file it created
		return nil, fmt.Errorf("listener: %s: %w", s, err)
	}
	return ln, nil
}

// RemoveStaleSocket deletes the unix socket file at path when no process
// answers on it: a server that died without unlinking it would otherwise
// block the bind forever. A live socket (an error wrapping ErrInUse), a
// file that is not a socket and a socket we may not probe are all left
// alone.
func RemoveStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listener: unix:%s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listener: unix:%s: the path exists and is not a socket; not removing it", path)
	}
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("listener: unix:%s: %w (a server answers on it)", path, ErrInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// EAGAIN (a full backlog), a timeout or EACCES: maybe alive.
		return fmt.Errorf("listener: unix:%s: probe for a live server: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listener: unix:%s: remove stale socket: %w", path, err)
	}
	return nil
}

func listenFD(s Spec) (net.Listener, error) {
	n, err := strconv.Atoi(s.Addr)
	if err != nil {
		return nil, fmt.Errorf("listener: %s: %w", s, err)
	}
	// Descriptors 0-2 are also os.Stdin/Stdout/Stderr: reuse those Files,
	// since a second *os.File would close the descriptor when collected.
	var f *os.File
	switch n {
	case 0:
		f = os.Stdin
	case 1:
		f = os.Stdout
	case 2:
		f = os.Stderr
	default:
		f = os.NewFile(uintptr(n), s.String())
	}
	ln, err := net.FileListener(f)
	if n > 2 {
		// FileListener works on a dup; close the inherited descriptor so
		// the socket lives exactly as long as the listener. The bind
		// handed it to us, so on error it is ours to close too.
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("listener: %s: %w", s, err)
	}
	return ln, nil
}
