package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// Opener creates listeners so that a binary upgrade can inherit them:
// *tableflip.Fds satisfies it (upg.Fds). A nil Opener makes Open create the
// sockets directly.
type Opener interface {
	ListenWithCallback(network, addr string, callback func(network, addr string) (net.Listener, error)) (net.Listener, error)
}

// Set is the master's listening sockets, in bind order. The master owns
// them for its whole life (they survive worker churn, reloads and, through
// the Opener, upgrades); workers get duplicates through Files.
type Set struct {
	specs []Spec
	lns   []net.Listener
}

// Open creates (or, through fds, inherits) a listener for every spec. On
// error nothing stays open and the error names the address.
func Open(ctx context.Context, specs []Spec, opts Options, fds Opener) (*Set, error) {
	s := &Set{}
	for _, spec := range specs {
		ln, err := openOne(ctx, spec, opts, fds)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.specs = append(s.specs, spec)
		s.lns = append(s.lns, ln)
	}
	return s, nil
}

func openOne(ctx context.Context, spec Spec, opts Options, fds Opener) (net.Listener, error) {
	if fds == nil || spec.Network == FD {
		return Listen(ctx, spec, opts)
	}
	return fds.ListenWithCallback(spec.Network, spec.Addr, func(string, string) (net.Listener, error) {
		return Listen(ctx, spec, opts)
	})
}

// Specs returns the specs in bind order.
func (s *Set) Specs() []Spec { return append([]Spec(nil), s.specs...) }

// Listeners returns the listeners in bind order.
func (s *Set) Listeners() []net.Listener { return append([]net.Listener(nil), s.lns...) }

// Files returns a duplicate of every listener's descriptor, in bind order,
// for exec.Cmd.ExtraFiles. The caller closes them once the child started,
// then calls RestoreNonblock (PITFALLS D8: starting a process with them
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

// RestoreNonblock puts every listener back in non-blocking mode (PITFALLS
// D8): os.StartProcess makes each ExtraFiles descriptor blocking, and the
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
