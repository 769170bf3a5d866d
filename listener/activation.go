package listener

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ListenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START):
// LISTEN_FDS=N means descriptors 3 to 3+N-1.
const ListenFDsStart = 3

// The environment of sd_listen_fds(3).
const (
	envListenPID     = "LISTEN_PID"
	envListenFDs     = "LISTEN_FDS"
	envListenFDNames = "LISTEN_FDNAMES"
)

// ActivatedListener describes one socket systemd passed to this process.
// The package keeps the descriptor open (close-on-exec) for the life of the
// process; Open or Listen with Spec returns a listener on a duplicate of it.
type ActivatedListener struct {
	// FD is the descriptor number, from ListenFDsStart up.
	FD int
	// Name is the descriptor's LISTEN_FDNAMES entry, which is the socket
	// unit's FileDescriptorName= (default: the unit's name). systemd
	// calls a descriptor it did not name "unknown", and so do we.
	Name string
	// Spec is the bind that selects this socket: systemd:Name when no
	// other activated socket has that name, fd://FD otherwise.
	Spec Spec
}

// Activated returns the sockets systemd passed to this process (socket
// activation), in descriptor order; none when the process was not
// activated. It reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES once per
// process and then unsets them, as sd_listen_fds(unset_environment=1) does,
// so that workers and an upgraded master, which inherit the environment but
// not these descriptor numbers, cannot claim them; every later call returns
// the first answer. The descriptors are made close-on-exec, so they reach
// a child only through ExtraFiles.
//
// The master should call it once at start even when no bind names an
// activated socket: that is what keeps the descriptors out of its workers.
func Activated() ([]ActivatedListener, error) {
	fds, err := activation.load()
	out := make([]ActivatedListener, len(fds))
	for i, a := range fds {
		out[i] = a.ActivatedListener
	}
	return out, err
}

// ActivatedSpecs returns the bind of every activated socket, in descriptor
// order: what a config without an explicit bind serves on when systemd
// started the process through a socket unit. It returns nil when the process
// was not activated, and the caller then falls back to its default bind.
func ActivatedSpecs() ([]Spec, error) {
	fds, err := activation.load()
	if err != nil {
		return nil, err
	}
	var specs []Spec
	for _, a := range fds {
		specs = append(specs, a.Spec)
	}
	return specs, nil
}

// activationEnv is the seam the tests use (as tableflip's env struct is):
// a real test cannot make its own process the target of LISTEN_PID nor put
// sockets at descriptors 3, 4, ... that the Go runtime may be using.
type activationEnv struct {
	getpid   func() int
	getenv   func(string) string
	unsetenv func(string) error
	fdStart  int
}

var stdActivationEnv = activationEnv{
	getpid:   os.Getpid,
	getenv:   os.Getenv,
	unsetenv: os.Unsetenv,
	fdStart:  ListenFDsStart,
}

type activatedFD struct {
	ActivatedListener
	// file keeps the descriptor open and reachable (an unreachable
	// *os.File is closed by its finalizer); listeners get dups of it.
	file *os.File
}

// activator reads the environment once: after the first read the variables
// are gone, so a second read would find nothing.
type activator struct {
	env  activationEnv
	once sync.Once
	fds  []activatedFD
	err  error
}

// activation is this process's activator; tests replace it.
var activation = &activator{env: stdActivationEnv}

func (a *activator) load() ([]activatedFD, error) {
	a.once.Do(func() { a.fds, a.err = a.read() })
	return a.fds, a.err
}

func (a *activator) read() ([]activatedFD, error) {
	env := a.env
	pidStr := env.getenv(envListenPID)
	nStr := env.getenv(envListenFDs)
	namesStr := env.getenv(envListenFDNames)
	// Unset whatever happens next, as sd_listen_fds does: a malformed or
	// foreign LISTEN_FDS must not reach the workers either.
	for _, k := range []string{envListenPID, envListenFDs, envListenFDNames} {
		_ = env.unsetenv(k)
	}
	if pidStr == "" || nStr == "" {
		return nil, nil
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		return nil, fmt.Errorf("listener: socket activation: %s=%q: %w", envListenPID, pidStr, err)
	}
	if pid != env.getpid() {
		// Meant for the process systemd started; we inherited its
		// environment (a child started before it was unset).
		return nil, nil
	}
	n, err := strconv.Atoi(nStr)
	// The bound only rejects nonsense before we fcntl that many numbers.
	if err != nil || n < 0 || n > 1<<16 {
		return nil, fmt.Errorf("listener: socket activation: %s=%q is not a descriptor count", envListenFDs, nStr)
	}
	if n == 0 {
		return nil, nil
	}
	// Close-on-exec first, as sd_listen_fds does, so that even on a
	// later error no descriptor leaks into a child (docs/pitfalls.md E3).
	for fd := env.fdStart; fd < env.fdStart+n; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return nil, fmt.Errorf("listener: socket activation: %s=%d but descriptor %d: %w", envListenFDs, n, fd, err)
		}
	}
	names := make([]string, n)
	if namesStr == "" {
		for i := range names {
			names[i] = "unknown" // sd_listen_fds_with_names' name for unnamed fds
		}
	} else {
		names = strings.Split(namesStr, ":")
		if len(names) != n {
			return nil, fmt.Errorf("listener: socket activation: %s has %d names for %s=%d", envListenFDNames, len(names), envListenFDs, n)
		}
	}
	count := make(map[string]int, n)
	for _, name := range names {
		count[name]++
	}
	fds := make([]activatedFD, n)
	for i, name := range names {
		fd := env.fdStart + i
		spec := Spec{Network: FD, Addr: strconv.Itoa(fd)}
		if count[name] == 1 && validFDName(name) {
			spec = Spec{Network: Systemd, Addr: name}
		}
		fds[i] = activatedFD{
			ActivatedListener: ActivatedListener{FD: fd, Name: name, Spec: spec},
			file:              os.NewFile(uintptr(fd), "systemd:"+name),
		}
	}
	return fds, nil
}

// lookup finds the activated socket s names: by name for Systemd, by number
// for FD. ok is false when s names no activated socket.
func (a *activator) lookup(s Spec) (activatedFD, bool, error) {
	fds, err := a.load()
	if err != nil {
		return activatedFD{}, false, err
	}
	var (
		found   activatedFD
		matches []string
	)
	for _, f := range fds {
		switch {
		case s.Network == Systemd && f.Name == s.Addr,
			s.Network == FD && strconv.Itoa(f.FD) == s.Addr:
			found = f
			matches = append(matches, strconv.Itoa(f.FD))
		}
	}
	switch {
	case len(matches) == 0:
		return activatedFD{}, false, nil
	case len(matches) > 1:
		// One spec is one socket and one upgrade key; with several, which
		// one the user meant is a guess.
		return activatedFD{}, false, fmt.Errorf("listener: %s: systemd passed %d sockets named %q (descriptors %s); give each socket unit its own FileDescriptorName= or bind fd://N",
			s, len(matches), s.Addr, strings.Join(matches, ", "))
	}
	return found, true, nil
}

// listenActivated returns a listener on a duplicate of the activated
// socket s names. The original stays open in the package, so a second
// Listen for the same spec (a reload, a second Set) gets the same socket
// rather than an error; systemd holds the socket open anyway.
func (a *activator) listen(s Spec) (net.Listener, bool, error) {
	f, ok, err := a.lookup(s)
	if err != nil || !ok {
		return nil, ok, err
	}
	ln, err := net.FileListener(f.file)
	if err != nil {
		return nil, true, fmt.Errorf("listener: %s: activated descriptor %d: %w", s, f.FD, err)
	}
	return ln, true, nil
}

// close closes the retained descriptors (tests only: in a real process they
// live as long as it does).
func (a *activator) close() {
	for _, f := range a.fds {
		f.file.Close()
	}
}
