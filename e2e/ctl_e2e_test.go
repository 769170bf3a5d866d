package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"paddock/internal/command"

	"paddock/control"
)

// ctlMaster is a master started with a control socket.
type ctlMaster struct {
	cmd    *exec.Cmd
	stderr *strings.Builder
	sock   string
	addr   string
	config string
	client *control.Client
}

func ctlConfig(addr string, workers int, body string) string {
	return fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = %d\ngraceful_timeout = 3\n\n[app:main]\nuse = egg:paddock#hello\nbody = %s\n", addr, workers, body)
}

// startCtlMaster starts paddock serve with workers and a control socket
// in a temp dir and waits until every worker is ready.
func startCtlMaster(t *testing.T, workers int, body string) *ctlMaster {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	cmd, stderr, pidfile := startPaddock(t, ctlConfig(addr, workers, body), "--ctl-socket", sock)
	m := &ctlMaster{cmd: cmd, stderr: stderr, sock: sock, addr: addr, config: filepath.Join(filepath.Dir(pidfile), "paste.ini"),
		client: &control.Client{Path: sock, Timeout: 5 * time.Second}}
	t.Cleanup(m.client.CloseIdleConnections)
	m.waitReady(t, workers)
	return m
}

// waitReady waits until n workers are ready and none other is alive, and
// returns them.
func (m *ctlMaster) waitReady(t *testing.T, n int) []control.Worker {
	t.Helper()
	var ws []control.Worker
	waitFor(t, fmt.Sprintf("%d ready workers", n), 10*time.Second, func() bool {
		var err error
		ws, err = m.client.Workers(t.Context())
		if err != nil {
			return false
		}
		if len(ws) != n {
			return false
		}
		for _, w := range ws {
			if w.State != "ready" {
				return false
			}
		}
		return true
	})
	return ws
}

// ctlRunE2E runs paddock ctl --socket SOCK args... and returns its output and
// exit code.
func ctlRunE2E(t *testing.T, sock string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCmd(t, exec.Command("paddock", append([]string{"ctl", "--socket", sock, "--timeout", "10s"}, args...)...))
}

func runCmd(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(12*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func get(t *testing.T, addr string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tablePids returns the PID column of `ctl workers`.
func tablePids(t *testing.T, out string) []int {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "HEARTBEAT") {
		t.Fatalf("no workers table:\n%s", out)
	}
	var pids []int
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		pid, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("bad row %q", l)
		}
		pids = append(pids, pid)
	}
	return pids
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func pidsOf(ws []control.Worker) []int {
	var out []int
	for _, w := range ws {
		out = append(out, w.Pid)
	}
	return out
}

// status shows the worker count; add, remove and kill change the workers
// as they say.
func TestCtlWorkers(t *testing.T) {
	m := startCtlMaster(t, 2, "one")
	out, errOut, code := ctlRunE2E(t, m.sock, "status")
	if code != 0 || !strings.Contains(out, "2 ready, 0 booting, 0 draining (target 2)") || !strings.Contains(out, m.addr) {
		t.Fatalf("ctl status: exit %d\n%s%s", code, out, errOut)
	}
	before := m.waitReady(t, 2)

	out, errOut, code = ctlRunE2E(t, m.sock, "workers", "add", "2")
	added := time.Now()
	if code != 0 || !strings.Contains(out, "target 2 -> 4") {
		t.Fatalf("ctl workers add 2: exit %d\n%s%s", code, out, errOut)
	}
	m.waitReady(t, 4)
	t.Logf("workers add 2: both new workers ready %v after ctl returned", time.Since(added).Round(time.Millisecond))
	out, _, code = ctlRunE2E(t, m.sock, "workers")
	pids := tablePids(t, out)
	if code != 0 || len(pids) != 4 {
		t.Fatalf("ctl workers: exit %d\n%s", code, out)
	}
	for _, p := range pids {
		if !alive(p) {
			t.Errorf("worker %d listed but not alive", p)
		}
	}
	if !slices.Contains(pids, before[0].Pid) || !slices.Contains(pids, before[1].Pid) {
		t.Errorf("old workers %v not in %v", pidsOf(before), pids)
	}

	// remove 1: the oldest goes, gracefully.
	oldest := before[0].Pid
	out, errOut, code = ctlRunE2E(t, m.sock, "workers", "remove", "1")
	if code != 0 || !strings.Contains(out, "target 4 -> 3") {
		t.Fatalf("ctl workers remove 1: exit %d\n%s%s", code, out, errOut)
	}
	ws := m.waitReady(t, 3)
	if slices.Contains(pidsOf(ws), oldest) {
		t.Errorf("the oldest worker %d is still listed: %v", oldest, pidsOf(ws))
	}
	waitFor(t, "the oldest worker to exit", 5*time.Second, func() bool { return !alive(oldest) })

	// kill PID: replaced by a new worker.
	victim := ws[0].Pid
	out, errOut, code = ctlRunE2E(t, m.sock, "workers", "kill", strconv.Itoa(victim))
	if code != 0 || !strings.Contains(out, fmt.Sprintf("worker %d: stopping gracefully", victim)) {
		t.Fatalf("ctl workers kill: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "the killed worker to be replaced", 10*time.Second, func() bool {
		ws, err := m.client.Workers(t.Context())
		if err != nil || len(ws) != 3 || slices.Contains(pidsOf(ws), victim) {
			return false
		}
		for _, w := range ws {
			if w.State != "ready" {
				return false
			}
		}
		return true
	})
	// --force after the PID works too (urfave/cli would take it for an
	// argument).
	victim = m.waitReady(t, 3)[0].Pid
	out, errOut, code = ctlRunE2E(t, m.sock, "workers", "kill", strconv.Itoa(victim), "--force")
	if code != 0 || !strings.Contains(out, "killed (SIGKILL)") {
		t.Fatalf("ctl workers kill --force: exit %d\n%s%s", code, out, errOut)
	}
	// A pid that is not a worker: 404, exit 1.
	_, errOut, code = ctlRunE2E(t, m.sock, "workers", "kill", "1")
	if code != command.ExitFailed || !strings.Contains(errOut, "no such worker") {
		t.Errorf("ctl workers kill 1: exit %d, %s", code, errOut)
	}
	// Usage errors exit 2.
	for _, args := range [][]string{{"workers", "add", "x"}, {"workers", "set"}, {"bogus"}, {"workers", "kill"}} {
		if _, errOut, code := ctlRunE2E(t, m.sock, args...); code != command.ExitUsage {
			t.Errorf("ctl %v: exit %d, want 2; %s", args, code, errOut)
		}
	}
}

// The time from `ctl workers add 1` returning to the new worker
// accepting, measured a few times (for the notes; -v shows it).
func TestCtlAddLatency(t *testing.T) {
	m := startCtlMaster(t, 1, "x")
	var ds, total []time.Duration
	for n := 2; n <= 4; n++ {
		begin := time.Now()
		if _, errOut, code := ctlRunE2E(t, m.sock, "workers", "add", "1"); code != 0 {
			t.Fatalf("add: %s", errOut)
		}
		start := time.Now()
		for {
			ws, err := m.client.Workers(t.Context())
			if err == nil && len(ws) == n && !slices.ContainsFunc(ws, func(w control.Worker) bool { return w.State != "ready" }) {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("the new worker did not get ready")
			}
			time.Sleep(2 * time.Millisecond)
		}
		ds = append(ds, time.Since(start))
		total = append(total, time.Since(begin))
	}
	t.Logf("ctl workers add 1 returned -> new worker ready (polling /v1/workers every 2ms): %v; from running ctl: %v", ds, total)
}

// reload: a broken edit exits 1 with file:line and the old pipeline keeps
// serving; a good edit serves the new body once reload returns.
func TestCtlReload(t *testing.T) {
	// This test edits the file and reloads by hand; the watcher would
	// reload it first.
	t.Setenv("PADDOCK_WATCH_CONFIG", "false")
	m := startCtlMaster(t, 2, "old body")
	if got := get(t, m.addr); got != "old body" {
		t.Fatalf("GET = %q", got)
	}
	broken := strings.Replace(ctlConfig(m.addr, 2, "new body"), "egg:paddock#hello", "egg:paddock#nope", 1)
	if err := os.WriteFile(m.config, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := ctlRunE2E(t, m.sock, "reload")
	if code != command.ExitFailed || !strings.Contains(errOut, m.config+":8: [app:main]: no factory registered") {
		t.Fatalf("ctl reload (broken): exit %d\n%s%s", code, out, errOut)
	}
	if got := get(t, m.addr); got != "old body" {
		t.Errorf("after a broken reload GET = %q, want the old body", got)
	}
	out, _, _ = ctlRunE2E(t, m.sock, "status")
	if !strings.Contains(out, "FAILED") || !strings.Contains(out, "paste.ini:8") {
		t.Errorf("status does not show the failed reload:\n%s", out)
	}

	if err := os.WriteFile(m.config, []byte(ctlConfig(m.addr, 2, "new body")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = ctlRunE2E(t, m.sock, "reload")
	if code != 0 || !strings.Contains(out, "generation 1") || !strings.Contains(out, "[app:main]") {
		t.Fatalf("ctl reload: exit %d\n%s%s", code, out, errOut)
	}
	// The new workers are ready when reload returns; the old ones may
	// still be closing their listeners for a moment.
	waitFor(t, "the new body", 3*time.Second, func() bool { return get(t, m.addr) == "new body" })
	for range 10 {
		if got := get(t, m.addr); got != "new body" {
			t.Fatalf("GET = %q after the roll", got)
		}
	}
	st, err := m.client.Status(t.Context())
	if err != nil || st.Generation != 1 || st.LastReload == nil || !st.LastReload.OK {
		t.Errorf("status after reload: %+v, %v", st, err)
	}
}

// ctl stop ends the master with exit 0 and removes the socket.
func TestCtlStop(t *testing.T) {
	m := startCtlMaster(t, 1, "x")
	out, errOut, code := ctlRunE2E(t, m.sock, "stop")
	if code != 0 || !strings.Contains(out, "stopping") {
		t.Fatalf("ctl stop: exit %d\n%s%s", code, out, errOut)
	}
	done := make(chan error, 1)
	go func() { done <- m.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("master exited with %v\n%s", err, m.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("master did not exit")
	}
	if _, err := os.Stat(m.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s still there after stop: %v", m.sock, err)
	}
}

// A plain HTTP client over the unix socket (curl --unix-socket) gets the
// JSON ctl --json prints.
func TestCtlUnixSocketHTTP(t *testing.T) {
	m := startCtlMaster(t, 1, "x")
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", m.sock)
		},
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://localhost/v1/workers")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /v1/workers: %d %v %s", resp.StatusCode, err, body)
	}
	var direct control.WorkersResponse
	if err := json.Unmarshal(body, &direct); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := ctlRunE2E(t, m.sock, "--json", "workers")
	var viaCtl control.WorkersResponse
	if code != 0 || json.Unmarshal([]byte(out), &viaCtl) != nil {
		t.Fatalf("ctl --json workers: exit %d\n%s%s", code, out, errOut)
	}
	if len(direct.Workers) != 1 || len(viaCtl.Workers) != 1 || direct.Workers[0].Pid != viaCtl.Workers[0].Pid {
		t.Errorf("curl-style %s\nctl --json %s", body, out)
	}
	// --json after the command too.
	out, _, code = ctlRunE2E(t, m.sock, "status", "--json")
	var st control.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Pid != m.cmd.Process.Pid || st.Workers.Ready != 1 {
		t.Errorf("ctl status --json: exit %d\n%s", code, out)
	}
	resp, err = hc.Get("http://localhost/v1/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /v1/nope: %d", resp.StatusCode)
	}
}

// ctl without a master exits 3 and names the path it tried.
func TestCtlNoMaster(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, errOut, code := ctlRunE2E(t, sock, "status")
	if code != command.ExitNoReach || !strings.Contains(errOut, sock) || !strings.Contains(errOut, "PADDOCK_CTL_SOCKET") {
		t.Fatalf("exit %d, want 3 naming %s:\n%s", code, sock, errOut)
	}
	// The pidfile rule: app.pid -> app.ctl.sock.
	pidfile := filepath.Join(t.TempDir(), "app.pid")
	cmd := exec.Command("paddock", "ctl", "--pidfile", pidfile, "status")
	cmd.Env = append(os.Environ(), "RUNTIME_DIRECTORY=", "XDG_RUNTIME_DIR=", "PADDOCK_CTL_SOCKET=")
	_, errOut, code = runCmd(t, cmd)
	if want := strings.TrimSuffix(pidfile, ".pid") + ".ctl.sock"; code != command.ExitNoReach || !strings.Contains(errOut, want) {
		t.Fatalf("--pidfile: exit %d, want 3 naming %s:\n%s", code, want, errOut)
	}
}

// As root: the socket is 0600, so another uid cannot even connect (exit
// 3); with the file opened up, the peer check answers 403 (exit 1).
func TestCtlPeerUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	m := startCtlMaster(t, 1, "x")
	bin, err := exec.LookPath("paddock")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(filepath.Dir(bin)), filepath.Dir(bin), filepath.Dir(filepath.Dir(m.sock)), filepath.Dir(m.sock)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(m.sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	asNobody := func() (string, int) {
		cmd := exec.Command(bin, "ctl", "--socket", m.sock, "status")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		_, errOut, code := runCmd(t, cmd)
		return errOut, code
	}
	if errOut, code := asNobody(); code != command.ExitNoReach || !strings.Contains(errOut, "permission denied") {
		t.Errorf("uid 65534 on a 0600 socket: exit %d, want 3:\n%s", code, errOut)
	}
	if err := os.Chmod(m.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if errOut, code := asNobody(); code != command.ExitFailed || !strings.Contains(errOut, "uid 65534") && !strings.Contains(errOut, "forbidden") && !strings.Contains(errOut, "403") {
		t.Errorf("uid 65534 on a 0666 socket: exit %d, want 1 with 403:\n%s", code, errOut)
	}
}

// Garbage, an oversized body, a slow-loris client and a crowd on the real
// master's control socket: the master keeps serving and the next status
// answers promptly.
func TestCtlSocketAbuse(t *testing.T) {
	m := startCtlMaster(t, 1, "abuse")
	dial := func() net.Conn {
		c, err := net.DialTimeout("unix", m.sock, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Garbage bytes, then a closed connection.
	for _, junk := range []string{"\x00\x01\x02garbage\r\n\r\n", "GET /v1/status HTTP/9.9\r\n\r\n", strings.Repeat("A", 70000) + "\r\n\r\n"} {
		c := dial()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write([]byte(junk))
		io.Copy(io.Discard, c)
		c.Close()
	}
	// A 10 MB body.
	big := dial()
	big.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(big, "POST /v1/workers/add HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 10<<20)
	go func() { big.Write(make([]byte, 10<<20)) }()
	resp, err := http.ReadResponse(bufio.NewReader(big), nil)
	if err != nil {
		t.Fatalf("10 MB body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("10 MB body: status %d, want 413 or 400", resp.StatusCode)
	}
	big.Close()
	// A slow-loris client that never finishes its headers, kept open.
	loris := dial()
	defer loris.Close()
	loris.Write([]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\n"))
	// 200 concurrent clients.
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 200 {
		wg.Go(func() {
			c := &control.Client{Path: m.sock, Timeout: 10 * time.Second}
			defer c.CloseIdleConnections()
			if _, err := c.Status(t.Context()); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of 200 concurrent status calls failed", n)
	}
	start := time.Now()
	st, err := m.client.Status(t.Context())
	if err != nil {
		t.Fatalf("status after the abuse: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("status took %v after the abuse", d)
	}
	if st.Workers.Ready != 1 {
		t.Errorf("ready workers = %d, want 1", st.Workers.Ready)
	}
	if got := get(t, m.addr); got != "abuse" {
		t.Errorf("the site answers %q after the abuse", got)
	}
}
