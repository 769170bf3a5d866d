package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/pipeline"
)

func TestNotifyMessages(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{readyMsg(servingStatus(0, 2)), "READY=1\nSTATUS=serving generation 0, 2 workers"},
		{readyMsg(servingStatus(3, 1)), "READY=1\nSTATUS=serving generation 3, 1 worker"},
		{readyMsg("reload failed: " + pipeline.ErrorList{
			{Pos: pipeline.Pos{File: "paste.ini", Line: 7}, Section: "app:main", Msg: "boom"},
			{Pos: pipeline.Pos{File: "paste.ini", Line: 9}, Section: "filter:x", Msg: "bang"},
		}.Error()), "READY=1\nSTATUS=reload failed: paste.ini:7: [app:main]: boom; paste.ini:9: [filter:x]: bang"},
		{reloadingMsg(1234567, "reloading (signal HUP)"), "RELOADING=1\nMONOTONIC_USEC=1234567\nSTATUS=reloading (signal HUP)"},
		{stoppingMsg("stopping gracefully"), "STOPPING=1\nSTATUS=stopping gracefully"},
		{mainPIDMsg(4242, "upgraded: pid 4242 (v2) serves"), "MAINPID=4242\nREADY=1\nSTATUS=upgraded: pid 4242 (v2) serves"},
		{oneLine("a\n\n  b\r\nc\n"), "a; b; c"},
		{watchdogMsg, "WATCHDOG=1"},
	} {
		if c.got != c.want {
			t.Errorf("got %q\nwant %q", c.got, c.want)
		}
	}
}

func TestMonotonicUsec(t *testing.T) {
	a := monotonicUsec()
	time.Sleep(20 * time.Millisecond)
	b := monotonicUsec()
	if a == 0 || b < a+20_000 || b > a+5_000_000 {
		t.Fatalf("CLOCK_MONOTONIC µs %d then %d, 20ms apart", a, b)
	}
}

func TestWatchdogInterval(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, c := range []struct {
		name    string
		getenv  func(string) string
		child   bool
		want    time.Duration
		wantErr bool
	}{
		{"unset", env(), false, 0, false},
		{"no pid", env("WATCHDOG_USEC", "200000"), false, 100 * time.Millisecond, false},
		{"our pid", env("WATCHDOG_USEC", "30000000", "WATCHDOG_PID", "100"), false, 15 * time.Second, false},
		{"another pid", env("WATCHDOG_USEC", "200000", "WATCHDOG_PID", "7"), false, 0, false},
		{"parent, not an upgrade", env("WATCHDOG_USEC", "200000", "WATCHDOG_PID", "50"), false, 0, false},
		{"parent of an upgrade", env("WATCHDOG_USEC", "200000", "WATCHDOG_PID", "50"), true, 100 * time.Millisecond, false},
		{"other, upgrade", env("WATCHDOG_USEC", "200000", "WATCHDOG_PID", "7"), true, 0, false},
		{"garbage", env("WATCHDOG_USEC", "soon"), false, 0, true},
		{"zero", env("WATCHDOG_USEC", "0"), false, 0, true},
		{"bad pid", env("WATCHDOG_USEC", "200000", "WATCHDOG_PID", "x"), false, 0, true},
	} {
		got, err := watchdogInterval(c.getenv, 100, 50, c.child)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("%s: %v, %v; want %v (error: %v)", c.name, got, err, c.want, c.wantErr)
		}
	}
}

// notifySocket is a test's systemd: a unixgram socket whose datagrams
// arrive on msgs. The reader goroutine ends when the test does.
type notifySocket struct {
	addr string
	msgs chan string
}

func listenNotify(t *testing.T, addr string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ns := &notifySocket{addr: addr, msgs: make(chan string, 256)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ns.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return ns
}

// next returns the next message that is not a watchdog ping.
func (ns *notifySocket) next(t *testing.T) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-ns.msgs:
			if m != watchdogMsg {
				return m
			}
		case <-timeout:
			t.Fatal("no notification within 10s")
			return ""
		}
	}
}

func (ns *notifySocket) want(t *testing.T, want string) {
	t.Helper()
	if got := ns.next(t); got != want {
		t.Fatalf("notification %q, want %q", got, want)
	}
}

// wantReloading checks a RELOADING=1 message with a MONOTONIC_USEC taken
// between before and now.
func (ns *notifySocket) wantReloading(t *testing.T, before uint64, status string) {
	t.Helper()
	got := ns.next(t)
	after := monotonicUsec()
	f := strings.Split(got, "\n")
	if len(f) != 3 || f[0] != "RELOADING=1" || !strings.HasPrefix(f[1], "MONOTONIC_USEC=") || f[2] != "STATUS="+status {
		t.Fatalf("notification %q, want RELOADING=1, MONOTONIC_USEC, STATUS=%s", got, status)
	}
	usec, err := strconv.ParseUint(strings.TrimPrefix(f[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before || usec > after {
		t.Fatalf("MONOTONIC_USEC %s not between %d and %d", f[1], before, after)
	}
}

func (ns *notifySocket) none(t *testing.T, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m := <-ns.msgs:
			if m != watchdogMsg {
				t.Fatalf("unexpected notification %q", m)
			}
		case <-timeout:
			return
		}
	}
}

func TestSendNotify(t *testing.T) {
	for _, addr := range []string{
		filepath.Join(t.TempDir(), "notify.sock"),
		fmt.Sprintf("@paddock-test-%d-%d", os.Getpid(), time.Now().UnixNano()), // abstract
	} {
		ns := listenNotify(t, addr)
		n := newNotifier(func(k string) string {
			if k == "NOTIFY_SOCKET" {
				return addr
			}
			return ""
		}, hclog.NewNullLogger())
		n.notify("READY=1\nSTATUS=x")
		ns.want(t, "READY=1\nSTATUS=x")
	}
	if err := sendNotify("vsock:2:1", "READY=1"); err == nil || !strings.Contains(err.Error(), "vsock:2:1") {
		t.Errorf("vsock address: %v", err)
	}
}

// A NOTIFY_SOCKET pointing nowhere is one warning, however many messages
// fail; nothing is sent without one.
func TestNotifyNowhereWarnsOnce(t *testing.T) {
	var buf syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
	addr := filepath.Join(t.TempDir(), "nobody.sock")
	n := newNotifier(func(string) string { return addr }, log)
	for range 5 {
		n.notify("WATCHDOG=1")
	}
	if got := strings.Count(buf.String(), "cannot notify systemd"); got != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "[WARN]") || !strings.Contains(buf.String(), addr) {
		t.Fatalf("warning does not name the socket: %s", buf.String())
	}
	off := newNotifier(func(string) string { return "" }, log)
	off.notify("READY=1") // no socket, no work, no log
	if got := strings.Count(buf.String(), "\n"); got != 1 {
		t.Fatalf("log grew without NOTIFY_SOCKET:\n%s", buf.String())
	}
}

// fakeUpgrader plays tableflip for the arbiter.
type fakeUpgrader struct {
	parent bool
	err    error
	exit   chan struct{}
}

func (u *fakeUpgrader) Upgrade() error        { return u.err }
func (u *fakeUpgrader) Ready() error          { return nil }
func (u *fakeUpgrader) Stop()                 {}
func (u *fakeUpgrader) Exit() <-chan struct{} { return u.exit }
func (u *fakeUpgrader) HasParent() bool       { return u.parent }

// startNotifyArbiter starts an arbiter of fake workers whose systemd
// variables are env.
func startNotifyArbiter(t *testing.T, env map[string]string, upg Upgrader, reload func(map[string][]byte) (*Settings, error)) *harness {
	t.Helper()
	opts := ArbiterOptions{Settings: harnessSettings(), Reload: reload, getenv: func(k string) string { return env[k] }}
	if upg != nil {
		opts.Upgrader = upg
		opts.UpgradeExecutable = "/bin/sh" // exists and is executable
		opts.AfterUpgrade = func(context.Context) (int, string, error) { return 4242, "v9", nil }
	}
	return runHarness(t, opts)
}

// The arbiter's messages for start, a rolled reload (READY=1 only once
// the new generation serves), a failed reload and a stop.
func TestArbiterNotifySequence(t *testing.T) {
	ns := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
	var mu sync.Mutex
	fail := false
	reload := func(map[string][]byte) (*Settings, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return nil, &pipeline.Error{Pos: pipeline.Pos{File: "paste.ini", Line: 7}, Section: "app:main", Msg: "boom"}
		}
		// A new timeout: the workers are rolled.
		return &Settings{Workers: 2, Timeout: 20 * time.Second, GracefulTimeout: 5 * time.Second, Umask: -1}, nil
	}
	h := startNotifyArbiter(t, map[string]string{"NOTIFY_SOCKET": ns.addr}, nil, reload)
	p1 := h.spawned()
	p2 := h.spawned()
	p1.say(Message{Type: MsgReady})
	ns.want(t, "READY=1\nSTATUS=serving generation 0, 2 workers")
	p2.say(Message{Type: MsgReady})
	ns.none(t, 100*time.Millisecond) // once

	before := monotonicUsec()
	h.sigs <- syscall.SIGHUP
	ns.wantReloading(t, before, "reloading (signal HUP)")
	n1 := h.spawned()
	n1.say(Message{Type: MsgReady})
	wantSent(t, p1, MsgStop)
	n2 := h.spawned()
	ns.none(t, 150*time.Millisecond) // generation 1 is not rolled out yet
	n2.say(Message{Type: MsgReady})
	ns.want(t, "READY=1\nSTATUS=serving generation 1, 2 workers")

	mu.Lock()
	fail = true
	mu.Unlock()
	before = monotonicUsec()
	if _, err := h.a.Reload(t.Context()); err == nil {
		t.Fatal("a broken reload succeeded")
	}
	ns.wantReloading(t, before, "reloading (request)")
	ns.want(t, "READY=1\nSTATUS=reload failed: paste.ini:7: [app:main]: boom")

	h.sigs <- syscall.SIGTERM
	ns.want(t, "STOPPING=1\nSTATUS=stopping gracefully")
	if err := <-h.errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	ns.none(t, 100*time.Millisecond)
}

// The old master of an upgrade: RELOADING=1 when it begins, then
// MAINPID=<new> with READY=1, and no STOPPING=1 while it drains; a failed
// upgrade is READY=1 with the error. The new master sends no READY.
func TestArbiterNotifyUpgrade(t *testing.T) {
	t.Run("done", func(t *testing.T) {
		ns := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
		h := startNotifyArbiter(t, map[string]string{"NOTIFY_SOCKET": ns.addr}, &fakeUpgrader{exit: make(chan struct{})}, nil)
		h.bootTwo()
		ns.want(t, "READY=1\nSTATUS=serving generation 0, 2 workers")
		before := monotonicUsec()
		res, err := h.a.Upgrade(t.Context())
		if err != nil || !res.OK || res.NewPid != 4242 {
			t.Fatalf("Upgrade = %+v, %v", res, err)
		}
		ns.wantReloading(t, before, "upgrading: starting /bin/sh")
		ns.want(t, "MAINPID=4242\nREADY=1\nSTATUS=upgraded: pid 4242 (v9) serves")
		if err := <-h.errc; err != nil { // drained and stopped
			t.Fatalf("Run = %v", err)
		}
		ns.none(t, 100*time.Millisecond)
	})
	t.Run("failed", func(t *testing.T) {
		ns := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
		h := startNotifyArbiter(t, map[string]string{"NOTIFY_SOCKET": ns.addr}, &fakeUpgrader{err: errors.New("child exited: exit status 3")}, nil)
		h.bootTwo()
		ns.want(t, "READY=1\nSTATUS=serving generation 0, 2 workers")
		before := monotonicUsec()
		if _, err := h.a.Upgrade(t.Context()); err == nil {
			t.Fatal("a failed upgrade succeeded")
		}
		ns.wantReloading(t, before, "upgrading: starting /bin/sh")
		ns.want(t, "READY=1\nSTATUS=upgrade failed: worker: upgrade: the new binary did not get ready (its own log lines, if any, are above: it shares this master's stderr): child exited: exit status 3")
		h.sigs <- syscall.SIGINT
		ns.want(t, "STOPPING=1\nSTATUS=stopping immediately")
	})
	t.Run("new master", func(t *testing.T) {
		ns := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
		h := startNotifyArbiter(t, map[string]string{"NOTIFY_SOCKET": ns.addr}, &fakeUpgrader{parent: true}, nil)
		h.bootTwo()
		waitReadyCount(t, h.a, 2)
		ns.none(t, 150*time.Millisecond) // the old master speaks for it
		h.sigs <- syscall.SIGTERM
		ns.want(t, "STOPPING=1\nSTATUS=stopping gracefully")
	})
}

// WATCHDOG=1 every WATCHDOG_USEC/2 while the Run loop goes round; none
// while it is stuck; none after Run returned.
func TestArbiterWatchdog(t *testing.T) {
	t.Setenv("WATCHDOG_PID", os.Getenv("WATCHDOG_PID")) // Run sets it; restored after
	ns := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
	h := startNotifyArbiter(t, map[string]string{"NOTIFY_SOCKET": ns.addr, "WATCHDOG_USEC": "200000"}, nil, nil)
	h.bootTwo()
	pings := func(d time.Duration) int {
		n := 0
		timeout := time.After(d)
		for {
			select {
			case m := <-ns.msgs:
				if m == watchdogMsg {
					n++
				}
			case <-timeout:
				return n
			}
		}
	}
	if n := pings(time.Second); n < 5 || n > 12 {
		t.Fatalf("%d pings in 1s with WATCHDOG_USEC=200000, want about 10", n)
	}
	// Hold the Run goroutine for 1.5s: pings stop once it has not gone
	// round for WATCHDOG_USEC (200ms), then resume.
	stuck := make(chan struct{})
	go func() {
		_ = h.a.do(context.Background(), func() { close(stuck); time.Sleep(1500 * time.Millisecond) })
	}()
	<-stuck
	pings(500 * time.Millisecond) // the last ones, within WATCHDOG_USEC of the stall
	if n := pings(800 * time.Millisecond); n != 0 {
		t.Fatalf("%d pings while the master loop was stuck", n)
	}
	pings(300 * time.Millisecond) // the loop gets going again
	if n := pings(time.Second); n < 5 {
		t.Fatalf("%d pings in 1s after the loop recovered", n)
	}
	h.sigs <- syscall.SIGTERM
	if err := <-h.errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	pings(50 * time.Millisecond) // one may have been in flight
	if n := pings(400 * time.Millisecond); n != 0 {
		t.Fatalf("%d pings after Run returned", n)
	}
	if got := os.Getenv("WATCHDOG_PID"); got != strconv.Itoa(os.Getpid()) {
		t.Errorf("WATCHDOG_PID = %q for the next master, want this pid", got)
	}
}

// Only the master notifies: workers do not get systemd's variables.
func TestWorkerEnvDropsNotify(t *testing.T) {
	got := workerEnv([]string{"PATH=/bin", "NOTIFY_SOCKET=/run/systemd/notify", "WATCHDOG_USEC=30000000", "WATCHDOG_PID=1", "NOTIFY_SOCKETS=x", "HOME=/"})
	want := []string{"PATH=/bin", "NOTIFY_SOCKETS=x", "HOME=/"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("workerEnv = %q, want %q", got, want)
	}
}
