package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"paddock/internal/loadgen"

	"paddock/control"
)

// buildUpgradeBinaries builds this package twice, as versions v1 and v2,
// into dir (a real binary is needed: tableflip re-executes os.Args[0], and
// testscript's "paddock" is the test binary). TestUpgrade builds them once
// for all its subtests.
func buildUpgradeBinaries(t *testing.T, dir string) (v1, v2 string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, v := range []string{"v1", "v2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+v, "-o", filepath.Join(dir, "paddock-"+v), repoRoot)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if msg, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %s: %w\n%s", v, err, msg)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "paddock-v1"), filepath.Join(dir, "paddock-v2")
}

// installBinary puts a copy of src at dst by renaming over it, as a
// package manager replaces a binary.
func installBinary(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// upgradeMaster is a master started from a binary at exe (a path the test
// replaces), with a pidfile and a control socket.
type upgradeMaster struct {
	dir, exe, sock, pidfile, addr string
	first                         *exec.Cmd
	firstDone                     chan struct{}
	log                           *os.File
	client                        *control.Client
	mu                            sync.Mutex
	pids                          []int // every master seen, killed at Cleanup
}

// startUpgradeMaster starts a master of 2 workers serving "hi" (the
// e2e ctl config: graceful_timeout 3 s, the default upgrade_timeout).
func startUpgradeMaster(t *testing.T, bin string) *upgradeMaster {
	t.Helper()
	return startUpgradeMasterConfig(t, bin, func(addr string) string { return ctlConfig(addr, 2, "hi") })
}

// upgradeConfig is a config of 2 workers on addr with extra server
// settings (lines) and the app section's body.
func upgradeConfig(addr, settings, app string) string {
	return fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = 2\n%s\n[app:main]\n%s", addr, settings, app)
}

// startUpgradeMasterConfig starts a master from a copy of bin with the
// config config(addr) (2 workers) and waits until both workers are ready.
func startUpgradeMasterConfig(t *testing.T, bin string, config func(addr string) string) *upgradeMaster {
	t.Helper()
	dir := t.TempDir()
	m := &upgradeMaster{dir: dir, exe: filepath.Join(dir, "paddock"), sock: filepath.Join(dir, "ctl.sock"),
		pidfile: filepath.Join(dir, "paddock.pid"), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	installBinary(t, bin, m.exe)
	cfg := filepath.Join(dir, "paste.ini")
	if err := os.WriteFile(cfg, []byte(config(m.addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	// A file, not a pipe: the new master and its workers inherit it, and
	// exec.Cmd.Wait would wait for every writer of a pipe.
	log, err := os.Create(filepath.Join(dir, "paddock.log"))
	if err != nil {
		t.Fatal(err)
	}
	m.log = log
	m.first = exec.Command(m.exe, "serve", "--pidfile", m.pidfile, "--ctl-socket", m.sock, "--workers", "2", cfg)
	m.first.Stdout, m.first.Stderr = log, log
	m.first.Dir = dir
	if err := m.first.Start(); err != nil {
		t.Fatal(err)
	}
	m.firstDone = make(chan struct{})
	go func() { _ = m.first.Wait(); close(m.firstDone) }()
	m.pids = []int{m.first.Process.Pid}
	m.client = &control.Client{Path: m.sock, Timeout: 5 * time.Second}
	t.Cleanup(func() {
		m.client.CloseIdleConnections()
		m.mu.Lock()
		pids := m.pids
		m.mu.Unlock()
		for _, pid := range pids {
			kids := childrenOf(pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for _, k := range kids {
				_ = syscall.Kill(k, syscall.SIGKILL)
			}
		}
		<-m.firstDone
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("masters' log:\n%s", b)
		}
	})
	m.waitMaster(t, m.first.Process.Pid, "")
	return m
}

func (m *upgradeMaster) track(pid int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pids = append(m.pids, pid)
}

// waitMaster waits until the master answering on the control socket is
// pid, with 2 ready workers and version (any when "").
func (m *upgradeMaster) waitMaster(t *testing.T, pid int, version string) control.Status {
	t.Helper()
	var st control.Status
	waitFor(t, fmt.Sprintf("master %d ready", pid), 20*time.Second, func() bool {
		var err error
		st, err = m.client.Status(t.Context())
		return err == nil && st.Pid == pid && st.Workers.Ready == 2 && (version == "" || st.Version == version)
	})
	return st
}

func (m *upgradeMaster) pidfilePid(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(m.pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pidfile %q: %v", b, err)
	}
	return pid
}

// exited reports whether pid is gone (or a zombie: the first master is
// the test's child and is reaped by firstDone's goroutine).
func (m *upgradeMaster) exited(pid int) bool {
	if pid == m.first.Process.Pid {
		select {
		case <-m.firstDone:
			return true
		default:
			return false
		}
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// fdCount counts the open fds of pid.
//
// It is the fewest seen in several samples over 300ms: a leaked fd stays
// open in every sample, while one the master opens for a moment (the
// server side of a ctl connection that is closing, the pidfile being
// rewritten) must not count as growth.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	fewest := -1
	for i := 0; i < 10; i++ {
		if i > 0 {
			time.Sleep(30 * time.Millisecond)
		}
		ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
		if err != nil {
			t.Fatal(err)
		}
		if fewest < 0 || len(ents) < fewest {
			fewest = len(ents)
		}
	}
	return fewest
}

// ctlUpgrade runs `paddock ctl upgrade --json` with the binary at exe.
func (m *upgradeMaster) ctlUpgrade(t *testing.T, bin string) (res control.UpgradeResult, stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, "ctl", "--socket", m.sock, "--json", "--timeout", "30s", "upgrade")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(35*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	if err := cmd.Wait(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	if code == 0 {
		if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
			t.Fatalf("ctl upgrade --json: %v: %q", err, out.String())
		}
	}
	return res, out.String(), errb.String(), code
}

// loadClient is the shared load (internal/loadgen) with a test's
// verdict: finish requires that every request succeeded.
type loadClient struct{ *loadgen.Load }

func startLoad(addr string) *loadClient {
	return &loadClient{loadgen.Start("http://" + addr + "/")}
}

func (l *loadClient) finish(t *testing.T) {
	t.Helper()
	l.Stop()
	t.Logf("load: %d ok, %d failed", l.OK(), l.Failed())
	if l.Failed() != 0 || l.OK() == 0 {
		t.Errorf("load: %d ok, %d failed: %q", l.OK(), l.Failed(), l.Errors())
	}
}

// installFile puts data at dst with mode perm by renaming over it.
func installFile(t *testing.T, dst string, data []byte, perm os.FileMode) {
	t.Helper()
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// statusField is the value of "key:" in `ctl status` text output.
func statusField(out, key string) string {
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key+":" {
			return f[1]
		}
	}
	return ""
}

// running lists the live processes whose working directory is dir (an
// upgrade test's temp dir: tableflip starts the new binary there) and
// whose argv[0] is argv0.
func running(dir, argv0 string) []int {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real // as /proc/PID/cwd reads
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	for _, d := range dirs {
		if cwd, err := os.Readlink(d + "/cwd"); err != nil || cwd != dir {
			continue
		}
		cmdline, err := os.ReadFile(d + "/cmdline")
		if err != nil {
			continue
		}
		if a0, _, _ := strings.Cut(string(cmdline), "\x00"); a0 != argv0 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		if !procGone(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// procGone reports whether pid no longer runs (absent or a zombie).
func procGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// assertStillServing checks that the master pid (version) kept serving
// after a refused or failed upgrade: it answers status with its 2 ready
// workers, the pidfile names it, and the app answers.
func (m *upgradeMaster) assertStillServing(t *testing.T, pid int, version string) {
	t.Helper()
	st, err := m.client.Status(t.Context())
	if err != nil || st.Pid != pid || st.Version != version || st.Workers.Ready != 2 {
		t.Fatalf("after the failed upgrade: status %+v, %v; want pid %d %s with 2 ready workers", st, err, pid, version)
	}
	if got := m.pidfilePid(t); got != pid {
		t.Fatalf("pidfile names %d, want the old master %d", got, pid)
	}
	if m.exited(pid) {
		t.Fatal("the old master exited")
	}
	if body := get(t, m.addr); !strings.Contains(body, "hi") {
		t.Fatalf("body %q", body)
	}
}

// TestUpgrade replaces the binary under a running master, under load.
func TestUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	v1, v2 := buildUpgradeBinaries(t, t.TempDir())

	// Five upgrades in a row (v1 -> v2 -> v1 -> v2 -> v1 -> v2) under
	// load: no request fails, each answer, `ctl status` and the pidfile
	// name the new master and its version, and the masters' open fds do
	// not grow.
	t.Run("ctl", func(t *testing.T) {
		m := startUpgradeMaster(t, v1)
		load := startLoad(m.addr)
		oldPid, oldVersion := m.first.Process.Pid, "v1"
		var fds []int
		for i := range 5 {
			bin, want := v2, "v2"
			if i%2 == 1 {
				bin, want = v1, "v1"
			}
			installBinary(t, bin, m.exe)
			time.Sleep(200 * time.Millisecond) // some load on the old master
			start := time.Now()
			res, out, errOut, code := m.ctlUpgrade(t, m.exe)
			answered := time.Since(start)
			if code != 0 {
				t.Fatalf("upgrade %d: ctl upgrade exit %d: %s %s", i+1, code, out, errOut)
			}
			if !res.OK || res.OldPid != oldPid || res.OldVersion != oldVersion || res.NewPid == oldPid || res.NewPid <= 0 || res.NewVersion != want {
				t.Fatalf("upgrade %d: answer %+v (want old pid %d %s, a new pid with %s)", i+1, res, oldPid, oldVersion, want)
			}
			newPid := res.NewPid
			m.track(newPid)
			st := m.waitMaster(t, newPid, want)
			if st.Version != want {
				t.Fatalf("status version %q, want %q", st.Version, want)
			}
			// What an operator reads.
			out, errOut, code = runCmd(t, exec.Command(m.exe, "ctl", "--socket", m.sock, "status"))
			if code != 0 || statusField(out, "version") != want || statusField(out, "pid") != strconv.Itoa(newPid) {
				t.Fatalf("upgrade %d: ctl status: exit %d, want pid %d version %s:\n%s%s", i+1, code, newPid, want, out, errOut)
			}
			if got := m.pidfilePid(t); got != newPid {
				t.Errorf("upgrade %d: pidfile names %d, want the new master %d", i+1, got, newPid)
			}
			waitFor(t, fmt.Sprintf("old master %d to exit", oldPid), 15*time.Second, func() bool { return m.exited(oldPid) })
			drained := time.Since(start)
			if fi, err := os.Stat(m.sock); err != nil || fi.Mode().Type() != os.ModeSocket {
				t.Fatalf("control socket after upgrade %d: %v %v", i+1, fi, err)
			}
			if got := m.pidfilePid(t); got != newPid {
				t.Errorf("upgrade %d: after the old master exited the pidfile names %d, want %d", i+1, got, newPid)
			}
			fds = append(fds, fdCount(t, newPid))
			t.Logf("upgrade %d (%s -> %s, pid %d -> %d): ctl upgrade answered in %v; old master gone after %v; new master has %d open fds",
				i+1, oldVersion, want, oldPid, newPid, answered.Round(time.Millisecond), drained.Round(time.Millisecond), fds[i])
			oldPid, oldVersion = newPid, want
		}
		load.finish(t)
		// The unix control socket still works, through ctl too.
		out, errOut, code := runCmd(t, exec.Command(m.exe, "ctl", "--socket", m.sock, "status"))
		if code != 0 || statusField(out, "version") != "v2" || statusField(out, "pid") != strconv.Itoa(oldPid) {
			t.Fatalf("ctl status after upgrades: exit %d: %s %s", code, out, errOut)
		}
		t.Logf("open fds of each new master: %v", fds)
		for i, n := range fds {
			if n > fds[0] {
				t.Errorf("open fds grow across upgrades: upgrade %d's master has %d, the first one's %d: %v", i+1, n, fds[0], fds)
			}
		}
	})

	t.Run("failure", func(t *testing.T) {
		m := startUpgradeMaster(t, v1)
		pid := m.first.Process.Pid
		load := startLoad(m.addr)
		// A "binary" that exits at once, saying why on stderr.
		installFile(t, m.exe, []byte("#!/bin/sh\necho boom >&2; exit 3\n"), 0o755)
		_, out, errOut, code := m.ctlUpgrade(t, v1)
		if code != 1 || !strings.Contains(out+errOut, "exited") || !strings.Contains(out+errOut, "exit status 3") {
			t.Fatalf("ctl upgrade with a failing binary: exit %d, want 1 with the reason (exit status 3): %s %s", code, out, errOut)
		}
		// The new binary shares the master's stderr: its last words are
		// in the master's log (the answer points there; it does not
		// carry them).
		if b, _ := os.ReadFile(m.log.Name()); !strings.Contains(string(b), "boom") {
			t.Errorf("the failing binary's stderr (boom) is not in the master's log")
		}
		t.Logf("ctl upgrade with a binary that exits 3: %s%s", out, errOut)
		m.assertStillServing(t, pid, "v1")
		// A binary that is gone.
		if err := os.Remove(m.exe); err != nil {
			t.Fatal(err)
		}
		_, out, errOut, code = m.ctlUpgrade(t, v1)
		if code != 1 || !strings.Contains(out+errOut, m.exe) {
			t.Fatalf("ctl upgrade with no binary: exit %d, want 1 naming %s: %s %s", code, m.exe, out, errOut)
		}
		// Two at once: a binary that takes 2 s to fail; the second is
		// refused as busy (409).
		if err := os.WriteFile(m.exe, []byte("#!/bin/sh\nsleep 2\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		first := make(chan int, 1)
		go func() {
			cmd := exec.Command(v1, "ctl", "--socket", m.sock, "--timeout", "30s", "upgrade")
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			first <- code
		}()
		waitFor(t, "the slow upgrade to start", 10*time.Second, func() bool {
			b, _ := os.ReadFile(m.log.Name())
			return strings.Count(string(b), "upgrading: starting the new binary") >= 2
		})
		_, out, errOut, code = m.ctlUpgrade(t, v1)
		if code != 1 || !strings.Contains(out+errOut, "another upgrade is running") {
			t.Fatalf("second concurrent ctl upgrade: exit %d, want 1 (busy): %s %s", code, out, errOut)
		}
		if c := <-first; c != 1 {
			t.Fatalf("slow failing upgrade: ctl exit %d, want 1", c)
		}
		m.assertStillServing(t, pid, "v1")
		load.finish(t)
	})

	// A new binary that never gets ready is killed once upgrade_timeout
	// passes; ctl upgrade says so and the old master serves on, and can
	// still upgrade afterwards.
	t.Run("never-ready", func(t *testing.T) {
		m := startUpgradeMasterConfig(t, v1, func(addr string) string {
			return upgradeConfig(addr, "graceful_timeout = 3\nupgrade_timeout = 2\n", "use = egg:paddock#hello\nbody = hi\n")
		})
		pid := m.first.Process.Pid
		load := startLoad(m.addr)
		installFile(t, m.exe, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755)
		// Watch for the new "binary" (sleep, in the master's working
		// directory) while the upgrade runs.
		var (
			mu   sync.Mutex
			seen = map[int]bool{}
		)
		stop, watched := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(watched)
			for {
				for _, p := range running(m.dir, "sleep") {
					mu.Lock()
					seen[p] = true
					mu.Unlock()
				}
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		start := time.Now()
		_, out, errOut, code := m.ctlUpgrade(t, v1)
		took := time.Since(start)
		close(stop)
		<-watched
		t.Logf("ctl upgrade with a binary that never gets ready: exit %d after %v: %s%s", code, took.Round(time.Millisecond), out, errOut)
		if code != 1 || !strings.Contains(out+errOut, "timed out") || !strings.Contains(out+errOut, "not ready within upgrade_timeout (2s), killed") {
			t.Fatalf("ctl upgrade with a binary that never gets ready: exit %d, want 1 naming the timeout: %s %s", code, out, errOut)
		}
		if took < 2*time.Second || took > 20*time.Second {
			t.Errorf("ctl upgrade answered after %v; upgrade_timeout is 2s", took)
		}
		if len(seen) != 1 {
			t.Fatalf("new binaries seen running: %v, want exactly one", seen)
		}
		var child int
		for p := range seen {
			child = p
		}
		if !strings.Contains(out+errOut, fmt.Sprintf("pid=%d", child)) {
			t.Errorf("the error does not name the child %d: %s %s", child, out, errOut)
		}
		waitFor(t, fmt.Sprintf("the timed-out child %d to be gone", child), 5*time.Second, func() bool {
			return procGone(child) && len(running(m.dir, "sleep")) == 0
		})
		m.assertStillServing(t, pid, "v1")
		// The master can still upgrade.
		installBinary(t, v2, m.exe)
		res, out, errOut, code := m.ctlUpgrade(t, m.exe)
		if code != 0 || !res.OK || res.OldPid != pid || res.NewVersion != "v2" {
			t.Fatalf("upgrade after the timed-out one: exit %d %+v: %s %s", code, res, out, errOut)
		}
		m.track(res.NewPid)
		m.waitMaster(t, res.NewPid, "v2")
		waitFor(t, "the old master to exit", 15*time.Second, func() bool { return m.exited(pid) })
		load.finish(t)
	})

	// A binary without the execute bit is refused before anything starts.
	t.Run("not-executable", func(t *testing.T) {
		m := startUpgradeMaster(t, v1)
		pid := m.first.Process.Pid
		load := startLoad(m.addr)
		data, err := os.ReadFile(v2)
		if err != nil {
			t.Fatal(err)
		}
		installFile(t, m.exe, data, 0o644)
		workers := childrenOf(pid)
		_, out, errOut, code := m.ctlUpgrade(t, v1)
		t.Logf("ctl upgrade with a 0644 binary: exit %d: %s%s", code, out, errOut)
		if code != 1 || !strings.Contains(out+errOut, "not executable") || !strings.Contains(out+errOut, m.exe) {
			t.Fatalf("ctl upgrade with a 0644 binary: exit %d, want 1 saying %s is not executable: %s %s", code, m.exe, out, errOut)
		}
		if got := childrenOf(pid); !slices.Equal(got, workers) {
			t.Errorf("the master's children went from %v to %v: something started", workers, got)
		}
		m.assertStillServing(t, pid, "v1")
		// Once executable, the same file upgrades.
		if err := os.Chmod(m.exe, 0o755); err != nil {
			t.Fatal(err)
		}
		res, out, errOut, code := m.ctlUpgrade(t, v1)
		if code != 0 || !res.OK || res.NewVersion != "v2" {
			t.Fatalf("upgrade once executable: exit %d %+v: %s %s", code, res, out, errOut)
		}
		m.track(res.NewPid)
		m.waitMaster(t, res.NewPid, "v2")
		waitFor(t, "the old master to exit", 15*time.Second, func() bool { return m.exited(pid) })
		load.finish(t)
	})

	// Three 5 s requests in flight through the proxy app finish with 200
	// and their whole body while the old master drains after an upgrade
	// (graceful_timeout 10 s).
	t.Run("slow-requests", func(t *testing.T) {
		const slow = 5 * time.Second
		tail := strings.Repeat("0123456789abcdef", 4096) // 64 KiB after the pause
		started := make(chan struct{}, 3)
		upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/slow" {
				fmt.Fprint(w, "hi from upstream")
				return
			}
			fmt.Fprint(w, "upstream /slow: ")
			w.(http.Flusher).Flush()
			started <- struct{}{}
			time.Sleep(slow)
			fmt.Fprint(w, tail)
		}))
		defer upstream.Close()
		m := startUpgradeMasterConfig(t, v1, func(addr string) string {
			return upgradeConfig(addr, "graceful_timeout = 10\n", "use = egg:paddock#proxy\naddress = "+upstream.URL+"\n")
		})
		pid := m.first.Process.Pid
		load := startLoad(m.addr)
		client := &http.Client{Timeout: 30 * time.Second}
		defer client.CloseIdleConnections()
		sent := time.Now()
		var dones []<-chan slowResult
		for range 3 {
			dones = append(dones, startSlowGet(t, client, "http://"+m.addr+"/slow", started, 10*time.Second))
		}
		inFlight := time.Since(sent)
		installBinary(t, v2, m.exe)
		res, out, errOut, code := m.ctlUpgrade(t, v1)
		answered := time.Since(sent)
		if code != 0 || !res.OK || res.OldPid != pid || res.NewVersion != "v2" {
			t.Fatalf("ctl upgrade: exit %d %+v: %s %s", code, res, out, errOut)
		}
		m.track(res.NewPid)
		if m.exited(pid) {
			t.Fatalf("the old master exited %v after the slow requests were sent, before they could finish", answered)
		}
		t.Logf("3 slow requests in flight after %v; ctl upgrade answered after %v", inFlight.Round(time.Millisecond), answered.Round(time.Millisecond))
		for i, done := range dones {
			select {
			case r := <-done:
				if r.err != nil || r.status != 200 || r.body != "upstream /slow: "+tail {
					t.Errorf("slow request %d: %d, %d body bytes, %v", i+1, r.status, len(r.body), r.err)
				}
				if d := time.Since(sent); d < slow {
					t.Errorf("slow request %d finished after %v, before the upstream answered", i+1, d)
				}
				t.Logf("slow request %d done after %v", i+1, time.Since(sent).Round(time.Millisecond))
			case <-time.After(25 * time.Second):
				t.Fatalf("slow request %d did not finish", i+1)
			}
		}
		if answered >= slow {
			t.Errorf("the upgrade took %v, longer than the slow requests: they were not in flight during the drain", answered)
		}
		m.waitMaster(t, res.NewPid, "v2")
		waitFor(t, "the old master to exit", 15*time.Second, func() bool { return m.exited(pid) })
		load.finish(t)
	})

	t.Run("usr2", func(t *testing.T) {
		m := startUpgradeMaster(t, v1)
		pid := m.first.Process.Pid
		load := startLoad(m.addr)
		installBinary(t, v2, m.exe)
		time.Sleep(200 * time.Millisecond)
		if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		var st control.Status
		waitFor(t, "a new master", 20*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			var err error
			st, err = m.client.Status(ctx)
			return err == nil && st.Pid != pid && st.Version == "v2"
		})
		m.track(st.Pid)
		waitFor(t, "the old master to exit", 15*time.Second, func() bool { return m.exited(pid) })
		if got := m.pidfilePid(t); got != st.Pid {
			t.Errorf("pidfile names %d, want %d", got, st.Pid)
		}
		load.finish(t)
	})

	// A bind removed by a reload is shut down, but tableflip still holds
	// a duplicate under its address and hands it to the next master. A
	// config that names the address again at the upgrade (watch_config
	// off: no reload in between) gets a listening socket, not that one.
	t.Run("retired-bind-named-again", func(t *testing.T) {
		second := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		config := func(bind string) string {
			return upgradeConfig(bind, "watch_config = false\ngraceful_timeout = 3\n", "use = egg:paddock#hello\nbody = hi\n")
		}
		m := startUpgradeMasterConfig(t, v1, func(addr string) string { return config(addr + " " + second) })
		if got := get(t, second); got != "hi" {
			t.Fatalf("GET %s = %q, want hi", second, got)
		}
		cfg := filepath.Join(m.dir, "paste.ini")
		renameSave(t, cfg, config(m.addr))
		if out, errOut, code := runCmd(t, exec.Command(m.exe, "ctl", "--socket", m.sock, "--timeout", "20s", "reload")); code != 0 {
			t.Fatalf("ctl reload: exit %d: %s%s", code, out, errOut)
		}
		waitFor(t, "the removed bind to stop listening", 15*time.Second, func() bool { return connRefused(second) })
		renameSave(t, cfg, config(m.addr+" "+second))
		installBinary(t, v2, m.exe)
		res, out, errOut, code := m.ctlUpgrade(t, m.exe)
		if code != 0 || !res.OK {
			t.Fatalf("ctl upgrade: exit %d %+v: %s %s", code, res, out, errOut)
		}
		m.track(res.NewPid)
		m.waitMaster(t, res.NewPid, "v2")
		for _, addr := range []string{m.addr, second} {
			if got := get(t, addr); got != "hi" {
				t.Errorf("GET %s = %q after the upgrade, want hi", addr, got)
			}
		}
	})
}
