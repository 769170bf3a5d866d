package worker

// systemd's notification protocol (sd_notify(3)), spoken by the master
// only: workers never see NOTIFY_SOCKET (workerEnv), since systemd may
// drop messages of short-lived non-main processes and a worker has
// nothing to say that the master does not know.
//
// Hand-written rather than github.com/coreos/go-systemd/v22/daemon
// (v22.7.0, which would do): the protocol is one datagram of KEY=VALUE
// lines to $NOTIFY_SOCKET, which net.DialUnix sends (an @name is an
// abstract socket), and MONOTONIC_USEC is one clock_gettime. What the
// library adds is SdWatchdogEnabled, which is wrong for us: after an
// upgrade WATCHDOG_PID still names the old master, so it reports the
// watchdog off in the new one (ECOSYSTEM.md §1.3), and it has nothing
// for MAINPID, one-line STATUS texts or warning once when the socket is
// gone. We would wrap it anyway; these ~60 lines need no dependency.
//
// What is sent, and when:
//
//	start, first worker ready    READY=1, STATUS=serving generation 0, N workers
//	                             (not by the new master of an upgrade: the old one
//	                             sends MAINPID=<new> and READY=1 for it, see below)
//	reload begins (HUP, ctl      RELOADING=1, MONOTONIC_USEC=<now>, STATUS=reloading
//	reload, the file watcher)
//	reload rolled out            READY=1, STATUS=serving generation G, N workers
//	reload failed                READY=1, STATUS=reload failed: <error>
//	upgrade begins               RELOADING=1, MONOTONIC_USEC=<now>, STATUS=upgrading: starting <exe>
//	upgrade done (old master)    MAINPID=<new>, READY=1, STATUS=upgraded: pid <new> (<version>) serves
//	upgrade failed               READY=1, STATUS=upgrade failed: <error>
//	stop begins                  STOPPING=1, STATUS=stopping (graceful|immediately)
//	                             (not by an old master after an upgrade: the unit goes on)
//	every WATCHDOG_USEC/2        WATCHDOG=1
//
// The new master of an upgrade sends no READY of its own, before or
// after it takes over: before, systemd is in the reload state the old
// master opened with RELOADING=1, and a READY=1 from the new one would
// end it while MAINPID still names the old master (systemctl reload would
// return before the main pid moved); after, the old master's single
// datagram MAINPID+READY+STATUS has said everything. From then on the new
// master is main and notifies its reloads, its stop and the watchdog.

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"paddock/control"
)

// notifyEnv are the variables of the protocol; workers do not inherit
// them.
var notifyEnv = []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}

// notifier sends state to systemd when NOTIFY_SOCKET is set; it never
// fails the caller: a socket that is gone is one warning, then debug
// lines. Safe for concurrent use (Run's goroutine and the watchdog).
type notifier struct {
	addr   string // NOTIFY_SOCKET; "" sends nothing
	log    hclog.Logger
	warned atomic.Bool
}

func newNotifier(getenv func(string) string, log hclog.Logger) *notifier {
	return &notifier{addr: getenv("NOTIFY_SOCKET"), log: log}
}

// notify sends state in one datagram.
func (n *notifier) notify(state string) {
	if n == nil || n.addr == "" {
		return
	}
	err := sendNotify(n.addr, state)
	switch {
	case err == nil:
	case n.warned.CompareAndSwap(false, true):
		n.log.Warn("cannot notify systemd; serving goes on (further failures are logged at debug level)", "notify_socket", n.addr, "error", err)
	default:
		n.log.Debug("cannot notify systemd", "notify_socket", n.addr, "error", err)
	}
}

// sendNotify writes one datagram to addr: a path, or @name for an
// abstract socket (vsock: is not supported).
func sendNotify(addr, state string) error {
	if addr[0] != '/' && addr[0] != '@' {
		return fmt.Errorf("worker: NOTIFY_SOCKET %q: not a unix socket path or @abstract name", addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("worker: notify systemd: %w", err)
	}
	defer conn.Close()
	// systemd reads at once; a full queue must not hold the master.
	if err := conn.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return fmt.Errorf("worker: notify systemd: %w", err)
	}
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("worker: notify systemd: %w", err)
	}
	return nil
}

// The messages. STATUS is one line of free text (systemctl status).

func readyMsg(status string) string { return "READY=1\nSTATUS=" + oneLine(status) }

func stoppingMsg(status string) string { return "STOPPING=1\nSTATUS=" + oneLine(status) }

// reloadingMsg carries CLOCK_MONOTONIC, which Type=notify-reload needs to
// tell this reply from one to an older SIGHUP (older systemd ignores it).
func reloadingMsg(usec uint64, status string) string {
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=%s", usec, oneLine(status))
}

// mainPIDMsg is the old master's last word after an upgrade, in one
// datagram: systemd must learn the new main pid before this one exits.
func mainPIDMsg(pid int, status string) string {
	return fmt.Sprintf("MAINPID=%d\nREADY=1\nSTATUS=%s", pid, oneLine(status))
}

const watchdogMsg = "WATCHDOG=1"

func servingStatus(generation, workers int) string {
	if workers == 1 {
		return fmt.Sprintf("serving generation %d, 1 worker", generation)
	}
	return fmt.Sprintf("serving generation %d, %d workers", generation, workers)
}

// oneLine joins the lines of s (an error list has one problem a line)
// with "; ", since a newline would end the STATUS assignment.
func oneLine(s string) string {
	var parts []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// stamps its reload request with.
func monotonicUsec() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0 // cannot happen on Linux
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}

// watchdogInterval is how often to send WATCHDOG=1: half of
// WATCHDOG_USEC (sd_watchdog_enabled(3)), when it is set and meant for
// this process: WATCHDOG_PID unset or naming pid, or, in the new master
// of an upgrade (upgradeChild), naming the parent ppid: the variable
// still names the master systemd started, or the one before us, and we
// are about to become the main process (ECOSYSTEM.md §1.3). 0 means no
// watchdog.
func watchdogInterval(getenv func(string) string, pid, ppid int, upgradeChild bool) (time.Duration, error) {
	v := getenv("WATCHDOG_USEC")
	if v == "" {
		return 0, nil
	}
	usec, err := strconv.ParseUint(v, 10, 63)
	if err != nil || usec == 0 {
		return 0, fmt.Errorf("worker: WATCHDOG_USEC=%q: not a positive number of microseconds", v)
	}
	if p := getenv("WATCHDOG_PID"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("worker: WATCHDOG_PID=%q: not a pid", p)
		}
		if n != pid && (!upgradeChild || n != ppid) {
			return 0, nil // another process's watchdog
		}
	}
	return max(time.Duration(usec)*time.Microsecond/2, time.Millisecond), nil
}

// startWatchdog sends WATCHDOG=1 every interval from a goroutine until
// the returned stop is called (it waits for the goroutine). alive, if
// set, vetoes a ping while the process it stands for is stuck, so
// systemd's watchdog catches a hung master rather than a hung runtime
// only.
func startWatchdog(n *notifier, every time.Duration, alive func() bool) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		stuck := false
		for {
			if alive == nil || alive() {
				if stuck {
					n.log.Info("master loop running again; watchdog pings resume")
				}
				stuck = false
				n.notify(watchdogMsg)
			} else if !stuck {
				stuck = true
				n.log.Error("master loop stuck; not pinging systemd's watchdog")
			}
			select {
			case <-t.C:
			case <-quit:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}

// The arbiter's side.

// notifyStarted is READY=1 when the first worker serves, except in the
// new master of an upgrade (see the top of this file).
func (a *Arbiter) notifyStarted() {
	if a.opts.Upgrader != nil && a.opts.Upgrader.HasParent() {
		return
	}
	a.notify.notify(readyMsg(servingStatus(a.generation, a.target)))
}

// notifyReloadBegins is RELOADING=1; the READY=1 that ends it comes from
// notifyReloadEnded (failed) or notifyRolled (rolled out).
func (a *Arbiter) notifyReloadBegins(why string) {
	a.notify.notify(reloadingMsg(monotonicUsec(), "reloading ("+why+")"))
}

// notifyReloadEnded is deferred by reload: a failure is READY=1 with the
// error at once; a success waits for its roll (notifyRolled).
func (a *Arbiter) notifyReloadEnded(res control.ReloadResult, err error) {
	if err != nil {
		msg := err.Error()
		if r := a.lastReload; r != nil && !r.OK && r.Error != "" {
			msg = r.Error // with every file:line, which the ConfigError summarises
		}
		a.notify.notify(readyMsg("reload failed: " + msg))
		return
	}
	a.notifyGen = res.Generation
}

// notifyRolled sends the READY=1 of a good reload once its generation
// serves (every worker of it ready, none older left), as `ctl reload`
// answers then. Called after each event of the Run loop.
func (a *Arbiter) notifyRolled() {
	if a.notifyGen == 0 || a.mode != modeRunning || !a.rolled(a.notifyGen) {
		return
	}
	a.notifyGen = 0
	a.notify.notify(readyMsg(servingStatus(a.generation, a.target)))
}

// notifyStopping is STOPPING=1, except when this master stops because an
// upgrade succeeded: the service goes on under the new main pid, and a
// STOPPING=1 (final since systemd v259) would stop the unit.
func (a *Arbiter) notifyStopping(mode arbiterMode) {
	if a.upgraded {
		return
	}
	status := "stopping gracefully"
	if mode == modeImmediate {
		status = "stopping immediately"
	}
	a.notify.notify(stoppingMsg(status))
}

// startWatchdog starts the watchdog pings of Run when WATCHDOG_USEC asks
// for them; stop ends them. A ping is vetoed while the Run loop has not
// gone round for a whole WATCHDOG_USEC (it goes round at least every
// tickInterval): systemd then kills a master whose state machine hangs,
// within about twice WatchdogSec, while startup (before the loop) and a
// slow reload shorter than WatchdogSec never are.
func (a *Arbiter) startWatchdog() (stop func()) {
	pid := os.Getpid()
	child := a.opts.Upgrader != nil && a.opts.Upgrader.HasParent()
	every, err := watchdogInterval(a.opts.getenv, pid, os.Getppid(), child)
	if err != nil {
		a.log.Warn("systemd watchdog off", "error", err)
	}
	if every == 0 {
		return func() {}
	}
	// The master an upgrade starts inherits our environment: it must find
	// its parent named, as this process was.
	if err := os.Setenv("WATCHDOG_PID", strconv.Itoa(pid)); err != nil {
		a.log.Warn("cannot set WATCHDOG_PID for upgrades", "error", err)
	}
	a.log.Info("systemd watchdog on", "ping_every", every.String())
	limit := int64(2 * every)
	alive := func() bool {
		beat := a.loopBeat.Load()
		return beat == 0 || int64(time.Since(a.created))-beat < limit
	}
	return startWatchdog(a.notify, every, alive)
}

// beat records that the Run loop went round (for the watchdog).
func (a *Arbiter) beat() { a.loopBeat.Store(max(int64(time.Since(a.created)), 1)) }

// inProcessNotify is the notification of Serve (workers = 0): READY=1
// once every listener accepts, STOPPING=1 when a stop begins, and the
// watchdog in between (pinging while the process runs).
type inProcessNotify struct {
	n        *notifier
	stopDogs func()
}

func startInProcessNotify(log hclog.Logger) *inProcessNotify {
	p := &inProcessNotify{n: newNotifier(os.Getenv, log), stopDogs: func() {}}
	every, err := watchdogInterval(os.Getenv, os.Getpid(), os.Getppid(), false)
	if err != nil {
		log.Warn("systemd watchdog off", "error", err)
	}
	if every > 0 {
		log.Info("systemd watchdog on", "ping_every", every.String())
		p.stopDogs = startWatchdog(p.n, every, nil)
	}
	return p
}

func (p *inProcessNotify) ready() { p.n.notify(readyMsg("serving in-process (workers = 0)")) }

// stopping returns the server's onStop hook: STOPPING=1, then next (if
// set).
func (p *inProcessNotify) stopping(next func()) func() {
	return func() {
		p.n.notify(stoppingMsg("stopping"))
		if next != nil {
			next()
		}
	}
}

// close stops the watchdog.
func (p *inProcessNotify) close() { p.stopDogs() }
