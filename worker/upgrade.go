package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"paddock/control"
)

// Upgrader is the binary-upgrade half of tableflip's Upgrader, as the
// master uses it (internal/command/cmd_serve.go's lazyUpgrader satisfies it):
//
//   - Upgrade starts the executable the master was started from (tableflip
//     runs os.Args[0] in the initial working directory) with every socket
//     created through its Fds, and blocks until that new master called
//     Ready (nil), exited, or missed tableflip's UpgradeTimeout (the child
//     is killed; an error).
//   - Ready tells the parent master, if any, that this one serves.
//   - Stop is a real shutdown (it unlinks the unix sockets unless an
//     Upgrade succeeded: they then belong to the new master).
//   - Exit is closed when this process should exit (after a successful
//     Upgrade, or Stop).
//   - HasParent reports whether this process is the new master of an
//     upgrade.
type Upgrader interface {
	Upgrade() error
	Ready() error
	Stop()
	Exit() <-chan struct{}
	HasParent() bool
}

// Timing of an upgrade.
const (
	// newMasterQueryTimeout bounds the question to the new master (its
	// pid and version) once it is ready.
	newMasterQueryTimeout = 5 * time.Second
)

// upgradeOutcome is what the upgrade goroutine reports to the Run
// goroutine.
type upgradeOutcome struct {
	res control.UpgradeResult
	err error
}

// upgradeWaiter is an Upgrade call waiting for the outcome.
type upgradeWaiter struct {
	out  upgradeOutcome
	done chan struct{} // closed by the Run goroutine
}

// ResolveExecutable returns the absolute path tableflip will re-execute
// for an upgrade: argv0 looked up in PATH when it has no slash (as
// exec.LookPath does), else made absolute against the working directory,
// which the master never changes (tableflip resolves it against its
// initial working directory). It is resolved once, at start, so the error
// of a later upgrade names the path the master was started from
// (docs/pitfalls.md D10).
func ResolveExecutable(argv0 string) (string, error) {
	if argv0 == "" {
		return "", errors.New("worker: no argv[0] to re-execute for an upgrade")
	}
	if !strings.Contains(argv0, "/") {
		p, err := exec.LookPath(argv0)
		if err != nil {
			return "", fmt.Errorf("worker: find %s in PATH for upgrades: %w", argv0, err)
		}
		argv0 = p
	}
	abs, err := filepath.Abs(argv0)
	if err != nil {
		return "", fmt.Errorf("worker: resolve %s for upgrades: %w", argv0, err)
	}
	return abs, nil
}

// checkExecutable refuses an upgrade whose binary is missing or not
// executable, with an error that says which path was tried.
func checkExecutable(path string) error {
	if path == "" {
		return errors.New("worker: upgrade: the executable path is unknown")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("worker: upgrade: the executable %s (the path this master was started from) is not usable: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("worker: upgrade: the executable %s (the path this master was started from) is not a regular file (mode %v)", path, fi.Mode())
	}
	if err := syscall.Access(path, 0o1 /* X_OK */); err != nil {
		return fmt.Errorf("worker: upgrade: the executable %s (the path this master was started from) is not executable: %w", path, err)
	}
	return nil
}

// Upgrade is USR2: it starts the binary at the path the master was
// started from, which inherits every listener and the control socket,
// and returns once that new master's workers serve, with both masters'
// pids and versions. This master then drains its workers and exits.
// One upgrade runs at a time (control.ErrBusy); a new binary that fails or
// is not ready within upgrade_timeout leaves this master serving, and the
// error says why. When ctx ends first, the upgrade goes on and its outcome
// is logged.
func (a *Arbiter) Upgrade(ctx context.Context) (control.UpgradeResult, error) {
	w := &upgradeWaiter{done: make(chan struct{})}
	started, err := call(a, ctx, func() error { return a.startUpgrade("request", w) })
	if err != nil {
		return control.UpgradeResult{}, err
	}
	if started != nil {
		return control.UpgradeResult{}, started
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return control.UpgradeResult{}, fmt.Errorf("worker: upgrade: still running (the outcome will be logged): %w", context.Cause(ctx))
	case <-a.done:
		return control.UpgradeResult{}, fmt.Errorf("worker: upgrade: %w", ErrNotRunning)
	}
	return w.out.res, w.out.err
}

// startUpgrade begins an upgrade in a goroutine (tableflip's Upgrade
// blocks until the new master is ready); the outcome comes back to the
// Run goroutine on a.upgradeC. w, if not nil, is answered then. It runs in
// the Run goroutine and returns an error when no upgrade can start.
func (a *Arbiter) startUpgrade(why string, w *upgradeWaiter) error {
	up := a.opts.Upgrader
	switch {
	case up == nil:
		return fmt.Errorf("worker: upgrade: this master has no socket hand-off: %w", control.ErrNotImplemented)
	case a.mode != modeRunning:
		return errStopping
	case a.upgrading:
		return fmt.Errorf("worker: upgrade: another upgrade is running: %w", control.ErrBusy)
	case !a.readyOnce:
		return fmt.Errorf("worker: upgrade: this master is not ready yet: %w", control.ErrBusy)
	}
	if err := checkExecutable(a.opts.UpgradeExecutable); err != nil {
		a.log.Error("upgrade refused", "by", why, "error", err)
		return err
	}
	a.upgrading = true
	if w != nil {
		a.upgradeWaiters = append(a.upgradeWaiters, w)
	}
	a.log.Info("upgrading: starting the new binary", "by", why, "executable", a.opts.UpgradeExecutable)
	// systemd is in the reload state until the new master is main
	// (MAINPID=, READY=1) or the upgrade failed (READY=1).
	a.notify.notify(reloadingMsg(monotonicUsec(), "upgrading: starting "+a.opts.UpgradeExecutable))
	oldPid, oldVersion, after, done := os.Getpid(), a.opts.Version, a.opts.AfterUpgrade, a.upgradeC
	timeout := a.settings.UpgradeTimeout
	if timeout <= 0 {
		timeout = time.Minute // tableflip's default
	}
	go func() {
		// Bounded: tableflip kills a child not ready within its
		// UpgradeTimeout, and Stop interrupts it; done has room for
		// the one outcome, so this never blocks past Run.
		done <- runUpgrade(up, after, oldPid, oldVersion, timeout)
	}()
	return nil
}

// runUpgrade is the upgrade goroutine's work: tableflip's Upgrade, then
// (on success) the AfterUpgrade hook that hands the control socket over
// and asks the new master who it is, then systemd's MAINPID.
func runUpgrade(up Upgrader, after func(context.Context) (int, string, error), oldPid int, oldVersion string, timeout time.Duration) upgradeOutcome {
	out := upgradeOutcome{res: control.UpgradeResult{OldPid: oldPid, OldVersion: oldVersion}}
	if err := up.Upgrade(); err != nil {
		// tableflip kills a child that misses its deadline; its error
		// does not say which deadline.
		if strings.HasSuffix(err.Error(), "timed out") {
			err = fmt.Errorf("not ready within upgrade_timeout (%s), killed: %w", timeout, err)
		}
		out.err = fmt.Errorf("worker: upgrade: the new binary did not get ready (its own log lines, if any, are above: it shares this master's stderr): %w", err)
		return out
	}
	out.res.OK = true
	if after != nil {
		ctx, cancel := context.WithTimeout(context.Background(), newMasterQueryTimeout)
		pid, ver, err := after(ctx)
		cancel()
		if err != nil {
			// The new master is ready and owns the sockets: the upgrade
			// happened, only its identity is unknown.
			out.err = fmt.Errorf("worker: upgrade: the new master is ready but did not say its pid: %w", err)
		}
		out.res.NewPid, out.res.NewVersion = pid, ver
	}
	return out
}

// upgradeDone handles the upgrade goroutine's outcome in the Run
// goroutine: on success this master stops gracefully (its sockets now
// belong to the new master too, and are not unlinked), and systemd learns
// the new main pid; on failure it keeps serving.
func (a *Arbiter) upgradeDone(out upgradeOutcome) {
	a.upgrading = false
	a.metrics.reg.Upgraded(out.res.OK)
	if out.res.OK {
		a.upgraded = true
		a.log.Info("upgrade done: the new master serves; draining this one", "old_pid", out.res.OldPid, "new_pid", out.res.NewPid,
			"old_version", out.res.OldVersion, "new_version", out.res.NewVersion)
		if out.err != nil {
			a.log.Warn("upgrade: cannot identify the new master", "error", out.err)
		}
		if out.res.NewPid > 0 {
			// One datagram, before this master exits: systemd must know
			// the new main pid first, or it would stop the unit.
			a.notify.notify(mainPIDMsg(out.res.NewPid, upgradedStatus(out.res)))
		} else if a.notify.addr != "" {
			a.log.Error("upgrade: the new master's pid is unknown, so systemd cannot be told; it will consider the service stopped when this master exits")
		}
		// No STOPPING=1 (a.upgraded): the service goes on.
		a.stopAll(modeGraceful)
		out.err = nil // the upgrade happened; the answer carries what is known
	} else {
		a.log.Error("upgrade failed; this master keeps serving", "error", out.err)
		if a.mode == modeRunning {
			a.notify.notify(readyMsg("upgrade failed: " + out.err.Error()))
		}
	}
	for _, w := range a.upgradeWaiters {
		w.out = out
		close(w.done)
	}
	clear(a.upgradeWaiters)
	a.upgradeWaiters = a.upgradeWaiters[:0]
}

// upgradedStatus is the STATUS the old master sends with the new
// master's pid.
func upgradedStatus(r control.UpgradeResult) string {
	if r.NewVersion == "" {
		return fmt.Sprintf("upgraded: pid %d serves", r.NewPid)
	}
	return fmt.Sprintf("upgraded: pid %d (%s) serves", r.NewPid, r.NewVersion)
}

// upgradeEnvVar is the variable tableflip sets in the new master; it must
// not reach workers (a worker is no upgrade child).
const upgradeEnvVar = "TABLEFLIP_HAS_PARENT_7DIU3"

// upgradeReady reports whether the master may call itself ready: at first
// start, as soon as one worker serves; as the new master of an upgrade,
// once every worker does, since the old master starts draining its own at
// that moment.
func (a *Arbiter) upgradeReady() bool {
	if a.opts.Upgrader == nil || !a.opts.Upgrader.HasParent() {
		return true
	}
	ready := 0
	for _, w := range a.workers {
		if w.state == stateReady && !w.killed {
			ready++
		}
	}
	return ready >= a.target
}

// writeUpgradePidfile writes the pidfile of the new master of an upgrade,
// once it is ready: the old master named there is its parent, whose file
// it replaces (the old master leaves a pidfile that no longer names it).
func (a *Arbiter) writeUpgradePidfile() {
	path := a.opts.Settings.Pidfile // as Run wrote and removes it
	if path == "" || a.pidfileDone {
		return
	}
	if err := writePidfile(path, os.Getpid()); err != nil {
		a.log.Error("cannot write the pidfile", "path", path, "error", err)
		return
	}
	a.pidfileDone = true
}
