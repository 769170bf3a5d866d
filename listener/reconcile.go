package listener

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Reconcile is a config reload's bind change: it returns a
// Set for specs that keeps the listener of every spec s already holds
// (matched by Key, however it is spelled) and opens the others, through
// fds as Open does; retired holds s's listeners that specs no longer
// name. New sockets are opened before anything is closed, so a bind that
// stays never stops accepting. s is left as it is: the caller keeps
// serving from it until its workers moved to next, then calls
// retired.Retire. On error every socket Reconcile opened is closed and s
// is untouched.
//
// held are sets the caller still holds open besides s: binds an earlier
// reload removed, retired only once the workers that may accept on them
// have exited. A spec whose address one of them holds gets that socket
// back instead of a new bind, which would fail (the address is in use)
// or, with reuse_port, open a second accept queue beside the draining
// one. The caller then takes such sockets out of their held set
// (Without), so they are not retired.
//
// opts.Backlog is applied to the kept listeners too (listen(2) on a
// listening socket changes its backlog); ReusePort only applies to new
// sockets.
func (s *Set) Reconcile(ctx context.Context, specs []Spec, opts Options, fds Opener, held ...*Set) (next, retired *Set, err error) {
	have := make(map[string]int, len(s.specs))
	for i, spec := range s.specs {
		have[spec.Key()] = i
	}
	type heldAt struct{ set, i int }
	holding := make(map[string]heldAt)
	for hi, h := range held {
		for i, spec := range h.specs {
			if _, ok := holding[spec.Key()]; !ok {
				holding[spec.Key()] = heldAt{hi, i}
			}
		}
	}
	next, retired = &Set{}, &Set{}
	var opened []net.Listener
	kept := make(map[int]bool)
	takenBack := make(map[heldAt]bool)
	for _, spec := range specs {
		if i, ok := have[spec.Key()]; ok && !kept[i] {
			kept[i] = true
			next.add(s.specs[i], s.lns[i], s.files[i])
			continue
		}
		if at, ok := holding[spec.Key()]; ok && !takenBack[at] {
			takenBack[at] = true
			h := held[at.set]
			next.add(h.specs[at.i], h.lns[at.i], h.files[at.i])
			continue
		}
		ln, err := openOne(ctx, spec, opts, fds)
		if err != nil {
			for _, o := range opened {
				o.Close()
			}
			return nil, nil, err
		}
		opened = append(opened, ln)
		next.add(spec, ln, socketFile(spec))
	}
	if opts.Backlog > 0 {
		for i, ln := range next.lns {
			if next.specs[i].Network != TCP && next.specs[i].Network != Unix {
				continue
			}
			if err := setBacklog(ln, opts.Backlog); err != nil {
				for _, o := range opened {
					o.Close()
				}
				return nil, nil, fmt.Errorf("listener: %s: set backlog %d: %w", next.specs[i], opts.Backlog, err)
			}
		}
	}
	for i := range s.specs {
		if !kept[i] {
			retired.add(s.specs[i], s.lns[i], s.files[i])
		}
	}
	return next, retired, nil
}

// Without returns s less the listeners that other holds too (the same
// socket, not the same address): what is left of a held set once a
// Reconcile took some of its sockets back. Nothing is closed.
func (s *Set) Without(other *Set) *Set {
	out := &Set{}
	for i, ln := range s.lns {
		if !slices.Contains(other.lns, ln) {
			out.add(s.specs[i], ln, s.files[i])
		}
	}
	return out
}

func (s *Set) add(spec Spec, ln net.Listener, file os.FileInfo) {
	s.specs = append(s.specs, spec)
	s.lns = append(s.lns, ln)
	s.files = append(s.files, file)
}

// Retire stops the Set's sockets for good: a bind removed from the
// config. Closing the master's descriptor is not enough when an Opener
// (tableflip) holds a duplicate for the next master, so tcp and unix
// sockets are first shut down, which takes them out of the listening
// state for every holder: new connections are refused, and the port or
// path is free for a later bind. Socket files are then unlinked as Unlink
// does. Sockets from fd://N and systemd:NAME belong to whoever passed
// them and are only closed.
func (s *Set) Retire() error {
	var errs []error
	for i, ln := range s.lns {
		if n := s.specs[i].Network; n == TCP || n == Unix {
			if err := shutdownListener(ln); err != nil {
				errs = append(errs, fmt.Errorf("listener: %s: shutdown: %w", s.specs[i], err))
			}
		}
	}
	if err := s.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.Unlink(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func shutdownListener(ln net.Listener) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no file descriptor", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_RDWR) }); err != nil {
		return err
	}
	if errors.Is(serr, unix.ENOTCONN) {
		// Linux answers ENOTCONN for a listening socket it did shut down.
		return nil
	}
	return serr
}

// Listening reports whether ln's socket still takes connections. A socket
// Retire shut down does not, though it is still open: tableflip keeps its
// duplicate under the address and hands it to the next master, which
// must bind the address anew rather than accept on it. A tcp socket says
// so itself (SO_ACCEPTCONN is cleared by shutdown(2)); a unix socket does
// not, and is taken as retired when no socket file is left at its path
// (Retire unlinks it). Listeners without a descriptor count as listening.
func Listening(ln net.Listener) bool {
	if ul, ok := ln.(*net.UnixListener); ok {
		if path := ul.Addr().String(); path != "" && !strings.HasPrefix(path, "@") {
			fi, err := os.Lstat(path)
			if err != nil || fi.Mode().Type() != fs.ModeSocket {
				return false
			}
		}
	}
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	accepting := true
	_ = rc.Control(func(fd uintptr) {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		accepting = err != nil || v != 0
	})
	return accepting
}
