package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
			cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+v, "-o", filepath.Join(dir, "paddock-"+v), ".")
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

func startUpgradeMaster(t *testing.T, bin string) *upgradeMaster {
	t.Helper()
	dir := t.TempDir()
	m := &upgradeMaster{dir: dir, exe: filepath.Join(dir, "paddock"), sock: filepath.Join(dir, "ctl.sock"),
		pidfile: filepath.Join(dir, "paddock.pid"), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	installBinary(t, bin, m.exe)
	cfg := filepath.Join(dir, "paste.ini")
	if err := os.WriteFile(cfg, []byte(ctlConfig(m.addr, 2, "hi")), 0o644); err != nil {
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
	waitFor(t, fmt.Sprintf("master %d ready", pid), 10*time.Second, func() bool {
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

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
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

// loadClient sends requests until stop is closed: keep-alive clients and
// clients opening a fresh connection for each request; it counts
// successes and failures.
type loadClient struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
	mu         sync.Mutex
	errs       []string
}

func startLoad(addr string) *loadClient {
	l := &loadClient{stop: make(chan struct{})}
	for i := range 6 {
		tr := &http.Transport{DisableKeepAlives: i >= 4, MaxIdleConnsPerHost: 1}
		c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		kind := "keep-alive"
		if i >= 4 {
			kind = "fresh connection"
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get("http://" + addr + "/")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, kind+": "+err.Error())
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *loadClient) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("load: %d ok, %d failed", l.ok.Load(), l.failed.Load())
	if l.failed.Load() != 0 || l.ok.Load() == 0 {
		t.Errorf("load: %d ok, %d failed: %q", l.ok.Load(), l.failed.Load(), l.errs)
	}
}

// TestUpgrade replaces the binary under a running master, under load.
func TestUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	v1, v2 := buildUpgradeBinaries(t, t.TempDir())

	t.Run("ctl", func(t *testing.T) {
		m := startUpgradeMaster(t, v1)
		load := startLoad(m.addr)
		oldPid := m.first.Process.Pid
		var fds []int
		bins := []string{v2, v1, v2}
		for i, bin := range bins {
			want := "v2"
			if bin == v1 {
				want = "v1"
			}
			installBinary(t, bin, m.exe)
			time.Sleep(200 * time.Millisecond) // some load on the old master
			res, out, errOut, code := m.ctlUpgrade(t, m.exe)
			if code != 0 {
				t.Fatalf("upgrade %d: ctl upgrade exit %d: %s %s", i+1, code, out, errOut)
			}
			if !res.OK || res.OldPid != oldPid || res.NewPid == oldPid || res.NewPid <= 0 || res.NewVersion != want {
				t.Fatalf("upgrade %d: answer %+v (old pid %d, want version %s)", i+1, res, oldPid, want)
			}
			newPid := res.NewPid
			m.track(newPid)
			st := m.waitMaster(t, newPid, want)
			if st.Version != want {
				t.Fatalf("status version %q, want %q", st.Version, want)
			}
			if got := m.pidfilePid(t); got != newPid {
				t.Errorf("upgrade %d: pidfile names %d, want the new master %d", i+1, got, newPid)
			}
			waitFor(t, fmt.Sprintf("old master %d to exit", oldPid), 8*time.Second, func() bool { return m.exited(oldPid) })
			if fi, err := os.Stat(m.sock); err != nil || fi.Mode().Type() != os.ModeSocket {
				t.Fatalf("control socket after upgrade %d: %v %v", i+1, fi, err)
			}
			if got := m.pidfilePid(t); got != newPid {
				t.Errorf("upgrade %d: after the old master exited the pidfile names %d, want %d", i+1, got, newPid)
			}
			fds = append(fds, fdCount(t, newPid))
			oldPid = newPid
		}
		load.finish(t)
		// The unix control socket still works, through ctl too.
		out, errOut, code := runCmd(t, exec.Command(m.exe, "ctl", "--socket", m.sock, "status"))
		if code != 0 || !strings.Contains(out, "version:") || !strings.Contains(out, strconv.Itoa(oldPid)) {
			t.Fatalf("ctl status after upgrades: exit %d: %s %s", code, out, errOut)
		}
		t.Logf("open fds of each new master: %v", fds)
		if fds[len(fds)-1] > fds[0] {
			t.Errorf("open fds grow across upgrades: %v", fds)
		}
	})

	t.Run("failure", func(t *testing.T) {
		m := startUpgradeMaster(t, v1)
		pid := m.first.Process.Pid
		load := startLoad(m.addr)
		// A "binary" that exits at once.
		if err := os.WriteFile(m.exe+".new", []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(m.exe+".new", m.exe); err != nil {
			t.Fatal(err)
		}
		_, out, errOut, code := m.ctlUpgrade(t, v1)
		if code != 1 || !strings.Contains(out+errOut, "exited") {
			t.Fatalf("ctl upgrade with a failing binary: exit %d, want 1 with the reason: %s %s", code, out, errOut)
		}
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
		waitFor(t, "the slow upgrade to start", 5*time.Second, func() bool {
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
		st, err := m.client.Status(t.Context())
		if err != nil || st.Pid != pid || st.Version != "v1" || st.Workers.Ready != 2 {
			t.Fatalf("after failed upgrades: status %+v, %v; want pid %d v1 with 2 ready workers", st, err, pid)
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
		waitFor(t, "a new master", 15*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			var err error
			st, err = m.client.Status(ctx)
			return err == nil && st.Pid != pid && st.Version == "v2"
		})
		m.track(st.Pid)
		waitFor(t, "the old master to exit", 8*time.Second, func() bool { return m.exited(pid) })
		if got := m.pidfilePid(t); got != st.Pid {
			t.Errorf("pidfile names %d, want %d", got, st.Pid)
		}
		load.finish(t)
	})
}
