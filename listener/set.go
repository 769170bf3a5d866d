package listener

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
)

// Opener creates listeners so that a binary upgrade can inherit them:
// *tableflip.Fds satisfies it (upg.Fds). A nil Opener makes Open create the
// sockets directly.
//
// ListenWithCallback must return the listener inherited under the key
// (network, addr) if there is one, and otherwise call callback and remember
// its result under that key for the next process, as tableflip does.
type Opener interface {
	ListenWithCallback(network, addr string, callback func(network, addr string) (net.Listener, error)) (net.Listener, error)
}

// Set is the master's listening sockets, in bind order. The master owns
// them for its whole life (they survive worker churn, reloads and, through
// the Opener, upgrades); workers get duplicates through Files.
type Set struct {
	specs []Spec
	lns   []net.Listener
	// files are the unix socket files this Set bound or inherited, by
	// index, for Unlink: nil for other networks and abstract sockets.
	files []os.FileInfo
}

// Open creates (or, through fds, inherits) a listener for every spec. On
// error nothing stays open and the error names the address.
//
// With fds, every spec goes through fds.ListenWithCallback under the key
// (spec.Network, spec.Addr), the normalised address, so "localhost:8080" in
// the old config and "127.0.0.1:8080" in the new one are the same socket
// (docs/pitfalls.md D6):
//   - tcp and unix: an inherited socket is used as it is; otherwise Listen
//     creates one with opts (backlog, reuse_port, mode), and only then is a
//     stale unix socket file removed, never an inherited live one (D7).
//     tableflip turns off unlink-on-close for unix listeners so the file
//     survives the handoff: Close then leaves the file, see Unlink.
//   - fd://N and systemd:NAME: on first start the descriptor from the
//     process's own parent (systemd, a supervisor) is wrapped, and the
//     Opener keeps a dup under "fd"/"systemd" keys. An upgraded master
//     gets it back by that key, never by number: in tableflip's child
//     descriptors 3 and 4 are tableflip's own pipes, and LISTEN_FDS is gone.
func Open(ctx context.Context, specs []Spec, opts Options, fds Opener) (*Set, error) {
	s := &Set{}
	for _, spec := range specs {
		ln, err := openOne(ctx, spec, opts, fds)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.add(spec, ln, socketFile(spec))
	}
	return s, nil
}

func openOne(ctx context.Context, spec Spec, opts Options, fds Opener) (net.Listener, error) {
	if fds == nil {
		return Listen(ctx, spec, opts)
	}
	return ListenThrough(fds, spec.Network, spec.Addr, func() (net.Listener, error) { return Listen(ctx, spec, opts) })
}

// ListenThrough creates (or inherits) a socket through opener, calling
// create when nothing is inherited. tableflip wraps the callback's error
// with %s, which would hide ErrInUse and syscall.EADDRINUSE from errors.Is;
// ListenThrough returns create's own error (which names the address)
// instead, and names the address in the opener's other errors.
func ListenThrough(opener Opener, network, addr string, create func() (net.Listener, error)) (net.Listener, error) {
	var cbErr error
	ln, err := opener.ListenWithCallback(network, addr, func(string, string) (net.Listener, error) {
		ln, err := create()
		cbErr = err
		return ln, err
	})
	switch {
	case cbErr != nil:
		return nil, cbErr
	case err != nil:
		return nil, fmt.Errorf("listener: %s/%s: %w", network, addr, err)
	}
	return ln, nil
}

// socketFile records the unix socket file just bound or inherited at
// spec's path, so Unlink removes that file and not one another process
// created there since.
func socketFile(spec Spec) os.FileInfo {
	if spec.Network != Unix || strings.HasPrefix(spec.Addr, "@") {
		return nil
	}
	fi, err := os.Lstat(spec.Addr)
	if err != nil || fi.Mode().Type() != fs.ModeSocket {
		return nil
	}
	return fi
}

// Unlink removes the socket files of the Set's unix binds. The master calls
// it on a real stop, after Close; it must not call it when it hands the
// sockets to an upgraded master, which keeps serving on those paths.
//
// It is needed because a Set opened through an Opener never unlinks on
// Close (tableflip keeps the file for the next process); without an Opener
// Close has already removed the files and Unlink does nothing. A path that
// is no longer the socket this Set bound or inherited (another process
// replaced it) is left alone, as are abstract sockets. Missing files are not
// an error, so Unlink may run twice, or after tableflip's Upgrader.Stop,
// which also unlinks (asynchronously: do not rely on it before exit).
func (s *Set) Unlink() error {
	var errs []error
	for i, want := range s.files {
		if want == nil {
			continue
		}
		path := s.specs[i].Addr
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("listener: %s: unlink: %w", s.specs[i], err))
			continue
		}
		// Inode numbers are reused at once on some file systems, so the
		// bind time must match as well.
		if !os.SameFile(fi, want) || !fi.ModTime().Equal(want.ModTime()) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("listener: %s: unlink: %w", s.specs[i], err))
		}
	}
	return errors.Join(errs...)
}

// Specs returns the specs in bind order.
func (s *Set) Specs() []Spec { return append([]Spec(nil), s.specs...) }

// Listeners returns the listeners in bind order.
func (s *Set) Listeners() []net.Listener { return append([]net.Listener(nil), s.lns...) }

// Files returns a duplicate of every listener's descriptor, in bind order,
// for exec.Cmd.ExtraFiles. The caller closes them once the child started,
// then calls RestoreNonblock (docs/pitfalls.md D8: starting a process with them
// flips the shared open file description to blocking mode).
func (s *Set) Files() ([]*os.File, error) {
	files := make([]*os.File, 0, len(s.lns))
	for i, ln := range s.lns {
		fl, ok := ln.(interface{ File() (*os.File, error) })
		if !ok {
			closeFiles(files)
			return nil, fmt.Errorf("listener: %s: %T has no file descriptor", s.specs[i], ln)
		}
		f, err := fl.File()
		if err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("listener: %s: duplicate descriptor: %w", s.specs[i], err)
		}
		files = append(files, f)
	}
	return files, nil
}

// RestoreNonblock puts every listener back in non-blocking mode
// (docs/pitfalls.md D8): os.StartProcess makes each ExtraFiles descriptor blocking, and the
// flag lives on the open file description the master's listener shares.
func (s *Set) RestoreNonblock() error {
	var errs []error
	for i, ln := range s.lns {
		sc, ok := ln.(syscall.Conn)
		if !ok {
			continue
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			errs = append(errs, fmt.Errorf("listener: %s: %w", s.specs[i], err))
			continue
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), true) }); err != nil {
			serr = err
		}
		if serr != nil {
			errs = append(errs, fmt.Errorf("listener: %s: set non-blocking: %w", s.specs[i], serr))
		}
	}
	return errors.Join(errs...)
}

// Close closes every listener.
func (s *Set) Close() error {
	var errs []error
	for _, ln := range s.lns {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.lns = nil
	return errors.Join(errs...)
}

// FromFiles turns descriptors a worker inherited back into listeners, one
// per spec, and closes the files (the listeners hold their own
// duplicates).
func FromFiles(files []*os.File, specs []Spec) ([]net.Listener, error) {
	defer closeFiles(files)
	if len(files) != len(specs) {
		return nil, fmt.Errorf("listener: %d inherited descriptors for %d binds", len(files), len(specs))
	}
	lns := make([]net.Listener, 0, len(files))
	for i, f := range files {
		ln, err := net.FileListener(f)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listener: %s: inherited descriptor %d: %w", specs[i], f.Fd(), err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
