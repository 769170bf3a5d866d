package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sdMessage is one datagram to NOTIFY_SOCKET and the pid of the process
// that sent it (SCM_CREDENTIALS, as systemd reads it).
type sdMessage struct {
	pid  int
	text string
}

// sdSocket plays systemd's notification socket for an e2e test.
type sdSocket struct {
	addr string
	msgs chan sdMessage
}

// listenSD creates the unixgram socket at addr (a path, or @name for an
// abstract one) with SO_PASSCRED; its reader goroutine ends with the test.
func listenSD(t *testing.T, addr string) *sdSocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	s := &sdSocket{addr: addr, msgs: make(chan sdMessage, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(unix.SizeofUcred))
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			m := sdMessage{text: string(buf[:n])}
			if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(cmsgs) > 0 {
				if cred, err := unix.ParseUnixCredentials(&cmsgs[0]); err == nil {
					m.pid = int(cred.Pid)
				}
			}
			s.msgs <- m
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return s
}

// next returns the next message other than WATCHDOG=1.
func (s *sdSocket) next(t *testing.T) sdMessage {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-s.msgs:
			if m.text != "WATCHDOG=1" {
				return m
			}
		case <-timeout:
			t.Fatal("no notification within 30s")
		}
	}
}

// want checks that the next message is text, sent by pid.
func (s *sdSocket) want(t *testing.T, pid int, text string) {
	t.Helper()
	if m := s.next(t); m.text != text || m.pid != pid {
		t.Fatalf("notification from pid %d:\n%q\nwant from pid %d:\n%q", m.pid, m.text, pid, text)
	}
}

// wantPrefix checks that the next message, sent by pid, starts with
// prefix and contains every one of has.
func (s *sdSocket) wantPrefix(t *testing.T, pid int, prefix string, has ...string) string {
	t.Helper()
	m := s.next(t)
	ok := m.pid == pid && strings.HasPrefix(m.text, prefix) && !strings.Contains(strings.TrimPrefix(m.text, prefix), "\n")
	for _, h := range has {
		ok = ok && strings.Contains(m.text, h)
	}
	if !ok {
		t.Fatalf("notification from pid %d:\n%q\nwant from pid %d: %q... with %q", m.pid, m.text, pid, prefix, has)
	}
	return m.text
}

// wantReloading checks RELOADING=1 from pid, with a MONOTONIC_USEC taken
// after before (CLOCK_MONOTONIC µs) and until now, and STATUS=status.
func (s *sdSocket) wantReloading(t *testing.T, pid int, before uint64, status string) {
	t.Helper()
	m := s.next(t)
	after := monotonicUsec(t)
	f := strings.Split(m.text, "\n")
	if m.pid != pid || len(f) != 3 || f[0] != "RELOADING=1" || !strings.HasPrefix(f[1], "MONOTONIC_USEC=") || f[2] != "STATUS="+status {
		t.Fatalf("notification from pid %d:\n%q\nwant from pid %d: RELOADING=1, MONOTONIC_USEC=, STATUS=%s", m.pid, m.text, pid, status)
	}
	usec, err := strconv.ParseUint(strings.TrimPrefix(f[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before || usec > after {
		t.Fatalf("%s is not between %d and %d", f[1], before, after)
	}
}

// quiet checks that no message (WATCHDOG=1 too, when watchdog) arrives
// within d.
func (s *sdSocket) quiet(t *testing.T, d time.Duration, watchdog bool) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m := <-s.msgs:
			if watchdog || m.text != "WATCHDOG=1" {
				t.Fatalf("unexpected notification from pid %d: %q", m.pid, m.text)
			}
		case <-timeout:
			return
		}
	}
}

// pings counts the WATCHDOG=1 messages of each pid within d; any other
// message fails the test.
func (s *sdSocket) pings(t *testing.T, d time.Duration) map[int]int {
	t.Helper()
	out := map[int]int{}
	timeout := time.After(d)
	for {
		select {
		case m := <-s.msgs:
			if m.text != "WATCHDOG=1" {
				t.Fatalf("notification from pid %d: %q, want only WATCHDOG=1", m.pid, m.text)
			}
			out[m.pid]++
		case <-timeout:
			return out
		}
	}
}

func monotonicUsec(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}

// notifyEnv points the masters this test starts (they inherit the test's
// environment) at sd, with the watchdog variables given ("" unsets).
func notifyEnv(t *testing.T, addr, watchdogUsec, watchdogPid string) {
	t.Setenv("NOTIFY_SOCKET", addr)
	t.Setenv("WATCHDOG_USEC", watchdogUsec)
	t.Setenv("WATCHDOG_PID", watchdogPid)
}

// notifyConfig is 2 workers saying body, not watching the file (each
// reload is the test's own).
func notifyConfig(body string) func(addr string) string {
	return func(addr string) string {
		return upgradeConfig(addr, "graceful_timeout = 3\nwatch_config = false\n", "use = egg:paddock#hello\nbody = "+body+"\n")
	}
}

func (m *upgradeMaster) writeConfig(t *testing.T, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(m.dir, "paste.ini"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (m *upgradeMaster) ctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, errOut, code := runCmd(t, exec.Command(m.exe, append([]string{"ctl", "--socket", m.sock, "--timeout", "10s"}, args...)...))
	return out + errOut, code
}

// TestNotify runs real masters with NOTIFY_SOCKET set and checks what
// systemd would read, message by message, with the sender's pid.
func TestNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	v1, v2 := buildUpgradeBinaries(t, t.TempDir())

	// start; a good reload; a bad reload; a failed upgrade; an upgrade;
	// stop.
	t.Run("sequence", func(t *testing.T) {
		sd := listenSD(t, filepath.Join(t.TempDir(), "notify.sock"))
		notifyEnv(t, sd.addr, "", "")
		m := startUpgradeMasterConfig(t, v1, notifyConfig("one"))
		p1 := m.first.Process.Pid
		sd.want(t, p1, "READY=1\nSTATUS=serving generation 0, 2 workers")

		// A good reload (in place: the app's body changes).
		m.writeConfig(t, notifyConfig("two")(m.addr))
		before := monotonicUsec(t)
		if out, code := m.ctl(t, "reload"); code != 0 {
			t.Fatalf("ctl reload: exit %d: %s", code, out)
		}
		sd.wantReloading(t, p1, before, "reloading (request)")
		sd.want(t, p1, "READY=1\nSTATUS=serving generation 1, 2 workers")
		if body := get(t, m.addr); !strings.Contains(body, "two") {
			t.Fatalf("after the reload: %q", body)
		}

		// A bad reload: READY=1 with the error the master reports.
		m.writeConfig(t, upgradeConfig(m.addr, "watch_config = false\n", "use = egg:paddock#no_such_app\n"))
		before = monotonicUsec(t)
		if out, code := m.ctl(t, "reload"); code != 1 {
			t.Fatalf("ctl reload of a broken config: exit %d, want 1: %s", code, out)
		}
		sd.wantReloading(t, p1, before, "reloading (request)")
		st, err := m.client.Status(t.Context())
		if err != nil || st.LastReload == nil || st.LastReload.OK || !strings.Contains(st.LastReload.Error, "paste.ini:") {
			t.Fatalf("status after the bad reload: %+v %v", st, err)
		}
		sd.want(t, p1, "READY=1\nSTATUS=reload failed: "+strings.ReplaceAll(strings.TrimSpace(st.LastReload.Error), "\n", "; "))
		m.writeConfig(t, notifyConfig("two")(m.addr)) // what the new master will read

		// A failed upgrade: the old master keeps serving, READY=1 says so.
		installFile(t, m.exe, []byte("#!/bin/sh\nexit 3\n"), 0o755)
		before = monotonicUsec(t)
		if _, out, errOut, code := m.ctlUpgrade(t, v1); code != 1 {
			t.Fatalf("ctl upgrade with a failing binary: exit %d: %s %s", code, out, errOut)
		}
		sd.wantReloading(t, p1, before, "upgrading: starting "+m.exe)
		sd.wantPrefix(t, p1, "READY=1\nSTATUS=upgrade failed: worker: upgrade: the new binary did not get ready", "exit status 3")

		// The upgrade: the old master names the new one, and sends no
		// STOPPING=1 while it drains; the new master no READY=1.
		installBinary(t, v2, m.exe)
		before = monotonicUsec(t)
		res, out, errOut, code := m.ctlUpgrade(t, m.exe)
		if code != 0 || !res.OK || res.OldPid != p1 || res.NewVersion != "v2" {
			t.Fatalf("ctl upgrade: exit %d %+v: %s %s", code, res, out, errOut)
		}
		p2 := res.NewPid
		m.track(p2)
		sd.wantReloading(t, p1, before, "upgrading: starting "+m.exe)
		sd.want(t, p1, fmt.Sprintf("MAINPID=%d\nREADY=1\nSTATUS=upgraded: pid %d (v2) serves", p2, p2))
		waitFor(t, "the old master to exit", 20*time.Second, func() bool { return m.exited(p1) })
		sd.quiet(t, 300*time.Millisecond, true)

		// The new master's reloads and stop.
		before = monotonicUsec(t)
		if err := syscall.Kill(p2, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		sd.wantReloading(t, p2, before, "reloading (signal HUP)")
		sd.want(t, p2, "READY=1\nSTATUS=serving generation 1, 2 workers")
		if err := syscall.Kill(p2, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		sd.want(t, p2, "STOPPING=1\nSTATUS=stopping gracefully")
		waitFor(t, "the new master to exit", 20*time.Second, func() bool { return procGone(p2) })
		sd.quiet(t, 300*time.Millisecond, true)
	})

	// WATCHDOG_USEC: pings every WATCHDOG_USEC/2 from the master, then
	// from the new master after an upgrade, though WATCHDOG_PID names the
	// first one; none after the stop.
	t.Run("watchdog", func(t *testing.T) {
		sd := listenSD(t, filepath.Join(t.TempDir(), "notify.sock"))
		notifyEnv(t, sd.addr, "200000", "")
		m := startUpgradeMasterConfig(t, v1, notifyConfig("one"))
		p1 := m.first.Process.Pid
		sd.want(t, p1, "READY=1\nSTATUS=serving generation 0, 2 workers")
		if n := sd.pings(t, 2*time.Second); n[p1] < 8 || n[p1] > 24 || len(n) != 1 {
			t.Fatalf("pings in 2s by pid: %v; want about 20 from the master %d only", n, p1)
		}
		installBinary(t, v2, m.exe)
		res, out, errOut, code := m.ctlUpgrade(t, m.exe)
		if code != 0 || !res.OK {
			t.Fatalf("ctl upgrade: exit %d %+v: %s %s", code, res, out, errOut)
		}
		p2 := res.NewPid
		m.track(p2)
		sd.wantReloading(t, p1, 0, "upgrading: starting "+m.exe)
		sd.want(t, p1, fmt.Sprintf("MAINPID=%d\nREADY=1\nSTATUS=upgraded: pid %d (v2) serves", p2, p2))
		waitFor(t, "the old master to exit", 20*time.Second, func() bool { return m.exited(p1) })
		sd.pings(t, 200*time.Millisecond) // the old master's last ones
		if n := sd.pings(t, 2*time.Second); n[p2] < 8 || n[p2] > 24 || len(n) != 1 {
			t.Fatalf("pings in 2s after the upgrade by pid: %v; want about 20 from the new master %d only", n, p2)
		}
		// A second upgrade: WATCHDOG_PID still names p1 in the
		// environment p2 inherited; p2 named itself for its child.
		installBinary(t, v1, m.exe)
		res, out, errOut, code = m.ctlUpgrade(t, m.exe)
		if code != 0 || !res.OK {
			t.Fatalf("second ctl upgrade: exit %d %+v: %s %s", code, res, out, errOut)
		}
		p3 := res.NewPid
		m.track(p3)
		sd.wantReloading(t, p2, 0, "upgrading: starting "+m.exe)
		sd.want(t, p2, fmt.Sprintf("MAINPID=%d\nREADY=1\nSTATUS=upgraded: pid %d (v1) serves", p3, p3))
		waitFor(t, "the second master to exit", 20*time.Second, func() bool { return procGone(p2) })
		sd.pings(t, 200*time.Millisecond)
		if n := sd.pings(t, 2*time.Second); n[p3] < 8 || len(n) != 1 {
			t.Fatalf("pings in 2s after the second upgrade by pid: %v; want about 20 from %d only", n, p3)
		}
		if err := syscall.Kill(p3, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		sd.want(t, p3, "STOPPING=1\nSTATUS=stopping gracefully")
		waitFor(t, "the last master to exit", 20*time.Second, func() bool { return procGone(p3) })
		sd.pings(t, 100*time.Millisecond)
		sd.quiet(t, 500*time.Millisecond, true)
	})

	// WATCHDOG_PID naming another process: that process's watchdog.
	t.Run("watchdog-other-pid", func(t *testing.T) {
		sd := listenSD(t, filepath.Join(t.TempDir(), "notify.sock"))
		notifyEnv(t, sd.addr, "200000", "1")
		m := startUpgradeMasterConfig(t, v1, notifyConfig("one"))
		sd.want(t, m.first.Process.Pid, "READY=1\nSTATUS=serving generation 0, 2 workers")
		sd.quiet(t, time.Second, true)
	})

	// An abstract socket (@name).
	t.Run("abstract", func(t *testing.T) {
		sd := listenSD(t, fmt.Sprintf("@paddock-notify-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
		notifyEnv(t, sd.addr, "", "")
		m := startUpgradeMasterConfig(t, v1, notifyConfig("one"))
		p1 := m.first.Process.Pid
		sd.want(t, p1, "READY=1\nSTATUS=serving generation 0, 2 workers")
		if err := syscall.Kill(p1, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		sd.want(t, p1, "STOPPING=1\nSTATUS=stopping immediately")
	})

	// NOTIFY_SOCKET pointing nowhere: one warning, and the master serves,
	// reloads and stops as usual.
	t.Run("nowhere", func(t *testing.T) {
		addr := filepath.Join(t.TempDir(), "nobody.sock")
		notifyEnv(t, addr, "200000", "") // pings fail too, often
		m := startUpgradeMasterConfig(t, v1, notifyConfig("one"))
		if body := get(t, m.addr); !strings.Contains(body, "one") {
			t.Fatalf("body %q", body)
		}
		m.writeConfig(t, notifyConfig("two")(m.addr))
		if out, code := m.ctl(t, "reload"); code != 0 {
			t.Fatalf("ctl reload: exit %d: %s", code, out)
		}
		if body := get(t, m.addr); !strings.Contains(body, "two") {
			t.Fatalf("after the reload: %q", body)
		}
		time.Sleep(500 * time.Millisecond) // a few failed pings more
		if err := syscall.Kill(m.first.Process.Pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-m.firstDone:
		case <-time.After(20 * time.Second):
			t.Fatal("the master did not stop")
		}
		if code := m.first.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit status %d after TERM, want 0", code)
		}
		b, err := os.ReadFile(m.log.Name())
		if err != nil {
			t.Fatal(err)
		}
		log := string(b)
		if n := strings.Count(log, "cannot notify systemd"); n != 1 || !strings.Contains(log, "[WARN]") || !strings.Contains(log, addr) {
			t.Fatalf("%d warnings about the notify socket, want 1 naming %s:\n%s", n, addr, log)
		}
	})

	// workers = 0: READY=1 once serving, STOPPING=1 on TERM.
	t.Run("in-process", func(t *testing.T) {
		sd := listenSD(t, filepath.Join(t.TempDir(), "notify.sock"))
		dir := t.TempDir()
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg := filepath.Join(dir, "paste.ini")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = 0\n\n[app:main]\nuse = egg:paddock#hello\nbody = solo\n", addr)), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(v1, "serve", cfg)
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sd.addr, "WATCHDOG_USEC=", "WATCHDOG_PID=")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-waited
			if t.Failed() {
				t.Logf("stderr:\n%s", stderr.String())
			}
		})
		pid := cmd.Process.Pid
		sd.want(t, pid, "READY=1\nSTATUS=serving in-process (workers = 0)")
		if body := get(t, addr); !strings.Contains(body, "solo") {
			t.Fatalf("body %q", body)
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		sd.want(t, pid, "STOPPING=1\nSTATUS=stopping")
		select {
		case err := <-waited:
			waited <- err
			if err != nil {
				t.Fatalf("exit: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("did not stop")
		}
		sd.quiet(t, 200*time.Millisecond, true)
	})
}
