package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"paddock/internal/command"

	"paddock/control"
)

// startPaddock runs the test binary as paddock (testscript.Main put it on
// $PATH) with config text, and returns the process and its stderr. The
// process is killed by pid when the test ends.
func startPaddock(t *testing.T, config string, args ...string) (*exec.Cmd, *strings.Builder, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "paste.ini")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	pidfile := filepath.Join(dir, "paddock.pid")
	cmd := exec.Command("paddock", append(append([]string{"serve", "--pidfile", pidfile}, args...), cfg)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		// Stopped, stderr is no longer written: what the servers said is
		// what explains a failure.
		if t.Failed() {
			t.Logf("paddock's log:\n%s", stderr.String())
		}
	})
	return cmd, &stderr, pidfile
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A graceful TERM lets an in-flight request finish in its worker while
// new connections are refused, then the master exits 0.
func TestWorkersGracefulStopFinishesInFlight(t *testing.T) {
	started := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			time.Sleep(1 * time.Second)
		}
		fmt.Fprint(w, "upstream "+r.URL.Path)
	}))
	defer upstream.Close()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd, stderr, pidfile := startPaddock(t, fmt.Sprintf(`[server:main]
use = egg:paddock#http
workers = 2
graceful_timeout = 5
bind = %s

[app:main]
use = egg:paddock#proxy
address = %s
`, addr, upstream.URL))

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, "the server", 10*time.Second, func() bool {
		resp, err := client.Get("http://" + addr + "/fast")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if _, err := os.Stat(pidfile); err != nil {
		t.Fatal(err)
	}

	done := startSlowGet(t, client, "http://"+addr+"/slow", started, 10*time.Second)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused while the slow request is in flight.
	waitFor(t, "new connections to be refused", 900*time.Millisecond, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case r := <-done:
		if r.err != nil || r.status != 200 || r.body != "upstream /slow" {
			t.Fatalf("slow request: %d %q %v\n%s", r.status, r.body, r.err, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not finish")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("paddock exited with %v\n%s", err, stderr)
		}
	case <-ctx.Done():
		t.Fatalf("paddock did not exit\n%s", stderr)
	}
	for _, want := range []string{"master: signal received: signal=TERM stop=graceful", "worker: drained", "master: stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pidfile left behind: %v", err)
	}
}

// At first start, a worker that cannot boot (here: the config becomes
// unreadable for... simplest: a missing file referenced only at build time
// is caught by the master's own validation) makes serve exit non-zero.
func TestWorkersBootErrorExitCode(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "paste.ini")
	if err := os.WriteFile(cfg, []byte("[app:main]\nuse = egg:paddock#nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	got := run([]string{"paddock", "serve", "--workers", "2", "--bind", fmt.Sprintf("127.0.0.1:%d", freePort(t)), cfg}, &stdout, &stderr)
	if got != command.ExitFailed || !strings.Contains(stderr.String(), cfg+`:2: [app:main]: no factory registered for "egg:paddock#nope"`) {
		t.Errorf("exit %d, stderr:\n%s", got, stderr.String())
	}
}

// As root, user = nobody makes the workers run as nobody while the master
// keeps root (it binds and supervises).
func TestWorkersDropPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this machine")
	}
	port := freePort(t)
	config := fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = 127.0.0.1:%d\nworkers = 1\nuser = nobody\ndebug_worker_header = true\n\n[app:main]\nuse = egg:paddock#hello\n", port)
	// The worker is the same binary, started as nobody, and reads the
	// config as nobody: make both reachable first (a real install has
	// /usr/bin/paddock and /etc/paddock; the test's live in 0700 dirs).
	bin, err := exec.LookPath("paddock")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(filepath.Dir(bin)), filepath.Dir(bin), filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "paste.ini")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("paddock", "serve", cfg)
	// The master runs with supplementary groups (root's shell often has
	// some); the workers must not keep them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{0, 4242}}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	var workerPID string
	t.Cleanup(func() {
		if t.Failed() {
			cmd.Process.Kill()
			cmd.Wait()
			t.Logf("paddock stderr:\n%s", stderr.String())
		}
	})
	waitFor(t, "a response from a worker", 10*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		workerPID = resp.Header.Get("X-Paddock-Worker")
		return resp.StatusCode == 200 && workerPID != ""
	})
	uidOf := func(pid string) string {
		data, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "Uid:") {
				return strings.Fields(line)[1] // real uid
			}
		}
		t.Fatalf("no Uid line for pid %s", pid)
		return ""
	}
	if got := uidOf(workerPID); got != nobody.Uid {
		t.Errorf("worker %s runs as uid %s, want nobody (%s)", workerPID, got, nobody.Uid)
	}
	if got := uidOf(strconv.Itoa(cmd.Process.Pid)); got != "0" {
		t.Errorf("master runs as uid %s, want 0", got)
	}
	// Supplementary groups are nobody's own (initgroups), not root's.
	wantGroups, err := nobody.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/" + workerPID + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if f, ok := strings.CutPrefix(line, "Groups:"); ok {
			got := strings.Fields(f)
			for _, g := range got {
				if g == "0" || g == "4242" || !slices.Contains(wantGroups, g) {
					t.Errorf("worker supplementary groups %v, want a subset of nobody's %v", got, wantGroups)
					break
				}
			}
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
}

// A bind that cannot be opened fails the start with the address named.
func TestServeBindInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, workers := range []string{"0", "2"} {
		config := fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = %s\n\n[app:main]\nuse = egg:paddock#hello\n", ln.Addr(), workers)
		cmd, stderr, _ := startPaddock(t, config)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != command.ExitFailed || !strings.Contains(stderr.String(), ln.Addr().String()+": listen tcp") || !strings.Contains(stderr.String(), "address already in use") {
			t.Errorf("workers=%s: exit %v, stderr:\n%s", workers, err, stderr.String())
		}
	}
}

// slowResult is what startSlowGet's request ended with.
type slowResult struct {
	status int
	body   string
	err    error
}

// startSlowGet sends GET url in the background and waits until started
// says the request reached the (slow) upstream; the result arrives on the
// returned channel.
func startSlowGet(t *testing.T, client *http.Client, url string, started <-chan struct{}, wait time.Duration) <-chan slowResult {
	t.Helper()
	done := make(chan slowResult, 1)
	go func() {
		resp, err := client.Get(url)
		if err != nil {
			done <- slowResult{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- slowResult{resp.StatusCode, string(b), err}
	}()
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("the slow request did not reach the upstream")
	}
	return done
}

// A worker started after the file at the master's path was replaced (a
// package upgrade before `ctl upgrade`) runs the master's own binary, not
// the new file: workers must speak their master's protocol version.
func TestWorkersRespawnRunTheMastersBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "paddock") // testscript.Main runs it as paddock by this name
	installBinary(t, self, exe)
	cfg := filepath.Join(dir, "paste.ini")
	port := freePort(t)
	config := fmt.Sprintf("[app:main]\nuse = egg:paddock#hello\nbody = old\n\n[server:main]\nuse = egg:paddock#http\nbind = 127.0.0.1:%d\nworkers = 1\n", port)
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// A control socket of its own (the fallback path is shared by every
	// master of the machine's uid), to see when the master has the worker
	// ready.
	sock := filepath.Join(dir, "ctl.sock")
	cmd := exec.Command(exe, "serve", "--ctl-socket", sock, cfg)
	logPath := filepath.Join(dir, "stderr.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range childrenOf(cmd.Process.Pid) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("paddock's log:\n%s", b)
		}
	})
	master := cmd.Process.Pid
	var first []int
	waitFor(t, "one worker", 15*time.Second, func() bool { first = childrenOf(master); return len(first) == 1 })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	serves := func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return err == nil && string(b) == "old"
	}
	waitFor(t, "the worker to serve", 15*time.Second, serves)
	// Serving comes a moment before the master takes the worker's ready
	// message; a worker killed before that is a boot failure, and a master
	// none of whose workers ever booted gives up (exit 3).
	ctl := &control.Client{Path: sock, Timeout: 5 * time.Second}
	t.Cleanup(ctl.CloseIdleConnections)
	waitFor(t, "the master to have the worker ready", 15*time.Second, func() bool {
		ws, err := ctl.Workers(t.Context())
		return err == nil && len(ws) == 1 && ws[0].State == "ready"
	})

	// The new "release" is a program that cannot be a worker.
	broken := filepath.Join(dir, "broken")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho not a paddock worker >&2\nexit 7\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	installBinary(t, broken, exe)

	if err := syscall.Kill(first[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var next []int
	waitFor(t, "a replacement worker", 15*time.Second, func() bool {
		next = childrenOf(master)
		return len(next) == 1 && next[0] != first[0]
	})
	waitFor(t, "the replacement to serve", 15*time.Second, serves)
	mInfo, err := os.Stat(fmt.Sprintf("/proc/%d/exe", master))
	if err != nil {
		t.Fatal(err)
	}
	wInfo, err := os.Stat(fmt.Sprintf("/proc/%d/exe", next[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(mInfo, wInfo) {
		t.Errorf("replacement worker %d runs another binary than its master %d", next[0], master)
	}
	if log, _ := os.ReadFile(logPath); strings.Contains(string(log), "not a paddock worker") {
		t.Errorf("the replaced file ran as a worker:\n%s", log)
	}
}
