package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"paddock/listener"
)

// spawnRequest is one worker to start.
type spawnRequest struct {
	ID, Generation, MaxRequests int
	Settings                    *Settings
	// Files are the validated config contents the worker builds from
	// (passed in a memfd); nil: it reads the files.
	Files map[string][]byte
	// TLS is certfile and keyfile as the master read them (same memfd):
	// the worker, perhaps another user, never opens them.
	TLS *TLSPair
}

// childProc is the master's handle on a started worker. Its exit and its
// messages arrive as events.
type childProc interface {
	Pid() int
	Send(Message) error
	Signal(syscall.Signal) error
	// Close releases the channel once the process has exited.
	Close()
}

// event is something a worker did: sent a message (msg), broke its
// channel (err: garbage, or io.EOF), or exited (exited, with status).
type event struct {
	pid    int
	msg    *Message
	err    error
	exited bool
	status string
	code   int
}

// spawner starts a worker. The goroutines it starts for the worker send
// on events (or give up when done closes) and end with the process.
type spawner interface {
	spawn(req spawnRequest, events chan<- event, done <-chan struct{}) (childProc, error)
}

// execSpawner re-executes the master's binary in worker mode with the
// listeners as ExtraFiles (fds 3..) and one end of a socketpair after
// them; nothing else is inherited (every other descriptor is CLOEXEC:
// Go opens everything so, and the socketpair is made with SOCK_CLOEXEC).
type execSpawner struct {
	exe, argv0              string
	set                     *listener.Set
	stderr                  io.Writer
	stdout                  io.Writer // nil: os.Stdout
	baseEnv                 []string
	config, app, serverName string
	logJSON                 bool
	cred                    *syscall.Credential
}

func (sp *execSpawner) spawn(req spawnRequest, events chan<- event, done <-chan struct{}) (childProc, error) {
	sockFiles, err := sp.set.Files()
	if err != nil {
		return nil, err
	}
	files, err := inheritable(sockFiles)
	if err != nil {
		return nil, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		closeAll(files)
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(pair[0]), "paddock-channel-master")
	child := os.NewFile(uintptr(pair[1]), "paddock-channel-worker")
	extra := append(files, child)
	env := &childEnv{id: req.ID, generation: req.Generation, maxRequests: req.MaxRequests, specs: sp.set.Specs(),
		channelFD: 3 + len(files), configFD: -1, config: sp.config, app: sp.app, server: sp.serverName,
		settings: req.Settings, logJSON: sp.logJSON}
	if len(req.Files) > 0 || req.TLS != nil {
		snap, err := configSnapshot(workerSnapshot{Files: req.Files, TLS: req.TLS})
		if err != nil {
			closeAll(files)
			parent.Close()
			child.Close()
			return nil, err
		}
		defer snap.Close()
		env.configFD = 3 + len(extra)
		extra = append(extra, snap)
	}
	contract, err := env.environ()
	if err != nil {
		closeAll(files)
		parent.Close()
		child.Close()
		return nil, err
	}
	stdout := sp.stdout
	if stdout == nil {
		stdout = os.Stdout
	}
	// Whole lines only, when exec copies through a pipe (logs.go).
	stdout, flushStdout := workerOutput(stdout)
	stderr, flushStderr := workerOutput(sp.stderr)
	cmd := &exec.Cmd{
		Path:       sp.exe,
		Args:       []string{sp.argv0, WorkerCommand},
		Stdout:     stdout,
		Stderr:     stderr,
		ExtraFiles: extra,
		Env:        append(append([]string(nil), sp.baseEnv...), contract...),
	}
	if sp.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: sp.cred}
	}
	err = cmd.Start()
	closeAll(files)
	child.Close()
	// Starting a process with the listeners made them blocking (D8).
	if rerr := sp.set.RestoreNonblock(); rerr != nil && err == nil {
		err = rerr
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	if err != nil {
		parent.Close()
		return nil, fmt.Errorf("start worker: %w", err)
	}
	conn, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("worker channel: %w", err)
	}
	p := &execProc{cmd: cmd, conn: conn, enc: NewEncoder(conn)}
	p.relay(events, done, func() { flushStdout(); flushStderr() })
	return p, nil
}

// relay turns what a started worker does into events for the master:
// its messages, a broken channel, and its exit (after flush, which
// writes out the last partial lines of its output). Each goroutine is
// owned by what it waits on (the process, the channel) and gives up on
// sending once done is closed.
func (p *execProc) relay(events chan<- event, done <-chan struct{}, flush func()) {
	pid := p.cmd.Process.Pid
	send := func(ev event) bool {
		select {
		case events <- ev:
			return true
		case <-done:
			return false
		}
	}
	go func() { // owned by the process: ends when it exits
		err := p.cmd.Wait()
		flush()
		ev := event{pid: pid, exited: true, code: -1}
		if p.cmd.ProcessState != nil {
			ev.status = p.cmd.ProcessState.String()
			ev.code = p.cmd.ProcessState.ExitCode()
		} else if err != nil {
			ev.status = err.Error()
		}
		send(ev)
	}()
	go func() { // owned by the channel: ends at EOF, garbage, or Close
		dec := NewDecoder(p.conn, FromWorker)
		for {
			m, err := dec.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					send(event{pid: pid, err: err})
				}
				return
			}
			if !send(event{pid: pid, msg: &m}) {
				return
			}
		}
	}()
}

// inheritable re-wraps listener files for ExtraFiles and closes the
// originals. The files net hands out (TCPListener.File) are "socket"
// Files whose Fd, which os.StartProcess calls, switches the shared open
// file description to blocking mode (docs/pitfalls.md D8): a sibling worker
// woken for the same connection would then sit in a blocking accept4
// that no Close interrupts. A File made by os.NewFile from a descriptor
// that is already non-blocking leaves it alone in Fd.
func inheritable(files []*os.File) ([]*os.File, error) {
	defer closeAll(files)
	out := make([]*os.File, 0, len(files))
	for _, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("listener descriptor: %w", err)
		}
		var nfd int
		var derr error
		if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
			derr = err
		}
		if derr != nil {
			closeAll(out)
			return nil, fmt.Errorf("duplicate listener descriptor: %w", derr)
		}
		out = append(out, os.NewFile(uintptr(nfd), f.Name()))
	}
	return out, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

type execProc struct {
	cmd  *exec.Cmd
	conn net.Conn
	enc  *Encoder
}

func (p *execProc) Pid() int { return p.cmd.Process.Pid }

// Send writes m, giving up after sendTimeout: a worker that does not
// read its channel (stopped, wedged) must not block the master.
func (p *execProc) Send(m Message) error {
	if err := p.conn.SetWriteDeadline(time.Now().Add(sendTimeout)); err != nil {
		return err
	}
	return p.enc.Send(m)
}

// sendTimeout bounds one message to a worker.
const sendTimeout = 5 * time.Second

// workerSnapshot is what the snapshot descriptor (EnvConfigFD) holds, as
// JSON.
type workerSnapshot struct {
	// Files are the validated config contents by name.
	Files map[string][]byte `json:"files,omitempty"`
	// TLS is certfile and keyfile as the master read them.
	TLS *TLSPair `json:"tls,omitempty"`
}

// configSnapshot puts the validated config contents and TLS pair (JSON)
// in an anonymous memory file for a new worker; a temporary file,
// unlinked at once, where memfd_create is missing. Only the worker
// inherits it (it is CLOEXEC in the master, closed once the worker
// started; the worker closes it once read), so a key in it reaches no
// other process, and the worker needs no permission on the files.
func configSnapshot(snap workerSnapshot) (*os.File, error) {
	data, err := json.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("encode config snapshot: %w", err)
	}
	var f *os.File
	if fd, err := unix.MemfdCreate("paddock-config", unix.MFD_CLOEXEC); err == nil {
		f = os.NewFile(uintptr(fd), "paddock-config")
	} else {
		if f, err = os.CreateTemp("", "paddock-config-*"); err != nil {
			return nil, fmt.Errorf("config snapshot: %w", err)
		}
		_ = os.Remove(f.Name())
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("config snapshot: %w", err)
	}
	return f, nil
}

func (p *execProc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

func (p *execProc) Close() { p.conn.Close() }

// WorkerCommand is the hidden subcommand a master runs its workers with.
const WorkerCommand = "__worker"

// ErrNeedRoot is returned when user or group is set and the master is not
// root.
var ErrNeedRoot = errors.New("user and group need the master to run as root")

// credential resolves user and group (names or numbers) for the workers;
// nil when neither is set.
func credential(userName, groupName string) (*syscall.Credential, error) {
	if userName == "" && groupName == "" {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("worker: user %q, group %q: %w", userName, groupName, ErrNeedRoot)
	}
	// Supplementary groups are the user's own (initgroups(3), as gunicorn
	// does), never the root master's: none for a uid without a passwd
	// entry, or with group alone.
	cred := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Groups: []uint32{}}
	if userName != "" {
		u, err := lookupUser(userName)
		if err != nil {
			return nil, fmt.Errorf("worker: user %q: %w", userName, err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.Uid, cred.Gid = uint32(uid), uint32(gid)
		if u.Username != "" {
			ids, err := u.GroupIds()
			if err != nil {
				return nil, fmt.Errorf("worker: user %q: supplementary groups: %w", userName, err)
			}
			for _, id := range ids {
				if n, err := strconv.ParseUint(id, 10, 32); err == nil {
					cred.Groups = append(cred.Groups, uint32(n))
				}
			}
		}
	}
	if groupName != "" {
		gid, err := lookupGroup(groupName)
		if err != nil {
			return nil, fmt.Errorf("worker: group %q: %w", groupName, err)
		}
		cred.Gid = gid
	}
	return cred, nil
}

func lookupUser(name string) (*user.User, error) {
	if _, err := strconv.ParseUint(name, 10, 32); err == nil {
		if u, err := user.LookupId(name); err == nil {
			return u, nil
		}
		return &user.User{Uid: name, Gid: name}, nil
	}
	return user.Lookup(name)
}

func lookupGroup(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(n), err
}

// workerEnv is the master's environment without a previous worker
// contract (a master started from a worker's environment) and without
// tableflip's upgrade marker (a new master's workers are no upgrade
// children), nor systemd's notification variables (only the master
// notifies: notify.go).
func workerEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(kv, "PADDOCK_WORKER_") && name != upgradeEnvVar && !slices.Contains(notifyEnv, name) {
			out = append(out, kv)
		}
	}
	return out
}
