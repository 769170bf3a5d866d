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
	"sync"
	"syscall"
	"time"

	"paddock/listener"
)

// SocketFile is the control socket's name inside $RUNTIME_DIRECTORY and
// $XDG_RUNTIME_DIR/paddock.
const SocketFile = "ctl.sock"

// SocketPath resolves the control socket path in the documented order (docs/control.md). The
// master and `paddock ctl` both call it, so with the same environment
// they agree without flags:
//
//  1. explicit: the control_socket setting, --ctl-socket or
//     PADDOCK_CTL_SOCKET, which the caller has already resolved;
//  2. $RUNTIME_DIRECTORY/ctl.sock (systemd RuntimeDirectory=paddock gives
//     /run/paddock/ctl.sock; with several directories, the first);
//  3. $XDG_RUNTIME_DIR/paddock/ctl.sock (a user session);
//  4. next to the pidfile: the pidfile's name with a ".pid" suffix
//     replaced (or, without one, extended) by ".ctl.sock", so
//     /run/app.pid gives /run/app.ctl.sock and two masters with two
//     pidfiles in one directory get two sockets;
//  5. otherwise /tmp/paddock-<uid>/ctl.sock (os.TempDir()), a directory
//     Listen creates 0700 and refuses if another user owns it.
//
// how says which rule chose the path, for error messages. lookupEnv is
// os.LookupEnv outside tests; empty values count as unset. err is non-nil
// only for a relative explicit path.
func SocketPath(explicit, pidfile string, lookupEnv func(string) (string, bool)) (path, how string, err error) {
	env := func(k string) string {
		v, _ := lookupEnv(k)
		return v
	}
	switch {
	case explicit != "":
		if !filepath.IsAbs(explicit) {
			return "", "", fmt.Errorf("control: socket path %q must be absolute", explicit)
		}
		return filepath.Clean(explicit), "set by control_socket / --ctl-socket / PADDOCK_CTL_SOCKET", nil
	case env("RUNTIME_DIRECTORY") != "":
		dir, _, _ := strings.Cut(env("RUNTIME_DIRECTORY"), ":")
		return filepath.Join(dir, SocketFile), "$RUNTIME_DIRECTORY/" + SocketFile + " (systemd RuntimeDirectory=)", nil
	case env("XDG_RUNTIME_DIR") != "":
		return filepath.Join(env("XDG_RUNTIME_DIR"), "paddock", SocketFile), "$XDG_RUNTIME_DIR/paddock/" + SocketFile, nil
	case pidfile != "":
		abs, err := filepath.Abs(pidfile)
		if err != nil {
			return "", "", fmt.Errorf("control: socket next to pidfile %q: %w", pidfile, err)
		}
		return strings.TrimSuffix(abs, ".pid") + ".ctl.sock", "next to the pidfile " + abs, nil
	default:
		return filepath.Join(os.TempDir(), "paddock-"+strconv.Itoa(os.Getuid()), SocketFile),
			"the fallback (no control_socket, $RUNTIME_DIRECTORY, $XDG_RUNTIME_DIR or pidfile)", nil
	}
}

// SocketMode is the control socket file's permission.
const SocketMode os.FileMode = 0o600

// probeTimeout bounds the dial (and the status query) that tells a live
// control socket from a stale one.
const probeTimeout = time.Second

// umaskMu serialises Listen's umask change.
var umaskMu sync.Mutex

// Listen creates the control socket at path, mode 0600 from its first
// instant: it binds with the umask at 0177 (the umask is process-wide, so
// for the microseconds of the bind another goroutine creating a file gets
// at most 0600 permissions) and then chmods 0600 anyway.
//
// The parent directory is created 0700 if missing; one owned by another
// user (other than root), writable by others without the sticky bit, or
// a symlink another user owns, is refused, since whoever controls it can
// replace the socket. A live socket at path is never stolen: the error
// names it and, if it answers, the master's pid; it wraps
// listener.ErrInUse. A stale one (connection refused) is removed.
// Anything else at path (a regular file, a directory, a symlink, even one
// to a socket) is refused and left as it is.
//
// With a non-nil opener (tableflip's Fds) the socket is created through
// it, so an upgrade hands it to the new master, which then gets it back
// as it is. Through an opener the listener does not unlink the file on
// Close; otherwise it does.
func Listen(ctx context.Context, path string, opener listener.Opener) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("control: socket path %q must be absolute", path)
	}
	if opener == nil {
		return bind(ctx, path)
	}
	return listener.ListenThrough(opener, "unix", path, func() (net.Listener, error) { return bind(ctx, path) })
}

func bind(ctx context.Context, path string) (net.Listener, error) {
	if err := ensureDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := removeStale(ctx, path); err != nil {
		return nil, err
	}
	umaskMu.Lock()
	old := syscall.Umask(0o177)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("control: socket %s: %w", path, err)
	}
	// The bind made the file 0600 already; chmod makes sure, but only
	// the socket itself: chmod follows a symlink that replaced it.
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket {
		ln.(*net.UnixListener).SetUnlinkOnClose(false) // not our file any more
		ln.Close()
		return nil, fmt.Errorf("control: socket %s was replaced right after it was created (Lstat: %v); not changing its mode", path, err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close() // also unlinks the file
		return nil, fmt.Errorf("control: socket %s: %w", path, err)
	}
	return ln, nil
}

// ensureDir creates dir 0700 if missing and refuses one another user
// could swap the socket in.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("control: socket directory: %w", err)
	}
	// A symlink in place of the directory (/tmp/paddock-0 planted by
	// another user before the first start) would let its owner point it
	// elsewhere later, and ctl would follow: only ours or root's counts.
	if li, err := os.Lstat(dir); err == nil && li.Mode().Type() == fs.ModeSymlink {
		if st, ok := li.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Getuid() {
			return fmt.Errorf("control: socket directory %s is a symlink owned by uid %d, not by uid %d or root: its owner could redirect the socket; set control_socket", dir, st.Uid, os.Getuid())
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("control: socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("control: socket directory %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Getuid(); st.Uid != 0 && int(st.Uid) != uid {
		return fmt.Errorf("control: socket directory %s belongs to uid %d, not to uid %d or root: another user could replace the socket; set control_socket", dir, st.Uid, uid)
	}
	if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return fmt.Errorf("control: socket directory %s is writable by everyone (mode %v) without the sticky bit; set control_socket", dir, fi.Mode())
	}
	return nil
}

// removeStale deletes the socket file at path when nothing answers on it
// (listener.RemoveStaleSocket), and names the master that answers when one
// does: a live control socket is never taken over.
func removeStale(ctx context.Context, path string) error {
	err := listener.RemoveStaleSocket(ctx, path)
	if err == nil || !errors.Is(err, listener.ErrInUse) {
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		return nil
	}
	who := "another paddock master"
	if pid := probePid(ctx, path); pid > 0 {
		who = fmt.Sprintf("another paddock master (pid %d)", pid)
	}
	return fmt.Errorf("control: %s is serving its control socket at %s; not taking it over: %w", who, path, listener.ErrInUse)
}

// probePid asks the master on path for its pid; 0 when it does not say.
func probePid(ctx context.Context, path string) int {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	c := &Client{Path: path}
	defer c.CloseIdleConnections()
	st, err := c.Status(ctx)
	if err != nil {
		return 0
	}
	return st.Pid
}
