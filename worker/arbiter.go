package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/control"
	"paddock/listener"
	"paddock/logname"
	"paddock/pipeline"
)

// Timing of the arbiter.
const (
	// quickStopTimeout is how long an immediate stop (INT, QUIT) waits
	// for workers before SIGKILL (gunicorn: 2 s).
	quickStopTimeout = 2 * time.Second
	// drainMargin is added to graceful_timeout before a draining worker
	// is killed: the worker enforces graceful_timeout itself and needs a
	// moment to close what is left and exit.
	drainMargin = time.Second
	// tickInterval is how often the arbiter checks heartbeats and
	// deadlines.
	tickInterval = 100 * time.Millisecond
)

// BootError is returned by Run when, at first start, no worker could
// boot (gunicorn's WORKER_BOOT_ERROR): the service would never serve.
type BootError struct {
	// Msg is the worker's boot_error text, or how it exited.
	Msg string
}

func (e *BootError) Error() string { return "worker failed to boot: " + e.Msg }

// ArbiterOptions is what an Arbiter needs.
type ArbiterOptions struct {
	// ConfigPath, AppName and ServerName are what workers load ("" names
	// main).
	ConfigPath, AppName, ServerName string
	// StartFiles are config file contents by name, as the command read
	// them for the settings (pipeline.LoadOptions.Files): the start
	// validates the pipeline from the same bytes. Nil reads the files.
	StartFiles map[string][]byte
	// Settings are the master's resolved settings; workers get them as
	// they are (flag and environment overrides included). Required.
	Settings *Settings
	// Logger is the root logger; nil discards.
	Logger hclog.Logger
	// LogJSON makes workers log JSON, like the master.
	LogJSON bool
	// Registry validates the pipeline in the master; nil means
	// pipeline.NewDefaultRegistry. (Workers use the default registry.)
	Registry *pipeline.Registry
	// Opener is where the listeners come from. Nil opens them directly;
	// the binary-upgrade work passes a *tableflip.Fds here. This is the
	// one place the master's sockets are created.
	Opener listener.Opener
	// Executable is the binary re-executed as a worker; "" means the
	// master's own binary: /proc/self/exe where there is a /proc, which
	// names the master's inode even after the file at its path was
	// replaced for an upgrade (workers must speak the master's protocol
	// version), else os.Executable() (docs/pitfalls.md D10).
	Executable string
	// Argv0 is the workers' argv[0]; "" means os.Args[0].
	Argv0 string
	// Stderr is where workers write their logs; nil means os.Stderr. When
	// it is not a file (the errorlog writer), the master copies each
	// worker's stderr into it line by line (logs.go).
	Stderr io.Writer
	// Stdout is the workers' stdout (accesslog = -); nil means os.Stdout.
	Stdout io.Writer
	// ReopenLogs, if set, reopens the master's own log files (the
	// errorlog file) on USR1 and ReopenLogs, before the workers are told
	// to reopen theirs (logs.go).
	ReopenLogs func() error
	// Reload re-reads the settings for a reload from files, the config
	// contents the arbiter's validation of the pipeline read (by the
	// loader's names; LoadServerFrom), so both come from one read: it
	// returns the new settings or an error (file:line) that leaves the
	// running workers alone. Nil makes HUP roll the workers on the
	// current settings.
	Reload func(files map[string][]byte) (*Settings, error)
	// OnReady, if set, is called once, when the first worker is ready,
	// with the listeners' addresses.
	OnReady func(addrs []net.Addr)
	// StopListening, if set, is called once when a stop begins, right
	// after the master closed its listeners: whoever else holds the
	// sockets (tableflip keeps a copy for upgrades) must let go too, or
	// new connections would queue where nobody accepts them.
	StopListening func()
	// Signals delivers the process's signals; nil means Run subscribes
	// to gunicorn's master table itself.
	Signals <-chan os.Signal
	// OnListening, if set, is called once the listeners are open and the
	// pidfile written, before any worker starts: the control socket is
	// created there (after the data sockets, through the same opener). An
	// error stops Run before any worker starts.
	OnListening func() error
	// Version is the binary's version, shown in Status.
	Version string
	// Upgrader, if set, is the socket hand-off for binary upgrades (USR2,
	// Upgrade): tableflip through internal/command/cmd_serve.go's lazyUpgrader, the
	// Opener above. Nil makes Upgrade answer control.ErrNotImplemented.
	// When it HasParent (this master is the new one of an upgrade), the
	// pidfile is written once every worker is ready, right before
	// OnReady tells the old master (never naming a master that may
	// still fail).
	Upgrader Upgrader
	// UpgradeExecutable is the binary an upgrade starts: "" means
	// os.Args[0] resolved at NewArbiter, as tableflip resolves it
	// (ResolveExecutable). It is checked before each upgrade.
	UpgradeExecutable string
	// AfterUpgrade, if set, runs once the new master is ready (outside
	// the Run goroutine, bounded by ctx): it must stop this master
	// serving the shared control socket (requests in flight are still
	// answered) and return the new master's pid and version.
	AfterUpgrade func(ctx context.Context) (pid int, version string, err error)

	// spawn replaces process creation in tests.
	spawn spawner
	// now replaces time.Now in tests.
	now func() time.Time
	// getenv replaces os.Getenv for systemd's variables in tests.
	getenv func(string) string
}

// Arbiter is the master of the pre-fork model: it owns the listeners and
// keeps the configured number of worker processes serving them. One
// goroutine (Run's) owns all of its state; the methods below send it
// requests.
type Arbiter struct {
	opts ArbiterOptions

	stoppedListening bool // StopListening was called (Run's goroutine only)
	log              hclog.Logger
	reqC             chan request
	done             chan struct{} // closed when Run returns

	// Owned by the Run goroutine.
	settings *Settings
	set      *listener.Set
	// retiring are listener sets a reload removed from the config: they
	// are retired (listener.Set.Retire) once every worker runs generation
	// gen or later, so a removed bind accepts until the new workers serve.
	retiring []retiringSet
	// metrics are the master's metrics and its workers' snapshots
	// (metrics_master.go).
	metrics    masterMetrics
	upstreams  masterUpstreams // GET /v1/upstreams in progress (upstreams.go)
	events     chan event
	workers    map[int]*wproc // by pid
	nextID     int
	generation int
	target     int
	mode       arbiterMode
	everReady  bool
	boot       backoff
	bootErr    error
	readyOnce  bool
	eventsDone chan struct{}
	started    time.Time
	stopGrace  time.Duration // a Stop's own grace (0: graceful_timeout)
	// cfg is the running config, as validated at start or by the last
	// good reload: workers build from it (spawn, reload), never from the
	// files as they are now. A good reload replaces it as one value.
	cfg        runningConfig
	lastReload *control.ReloadOutcome
	waiters    []*rollWaiter // Reload calls waiting for their roll
	// Binary upgrade (upgrade.go).
	upgrading      bool                // an upgrade goroutine runs
	upgraded       bool                // a new master took over
	upgradeWaiters []*upgradeWaiter    // Upgrade calls waiting for it
	upgradeC       chan upgradeOutcome // from the upgrade goroutine (1 slot)
	reopenWaiters  []*reopenWaiter     // ReopenLogs calls waiting for acks (logs.go)
	pidfileDone    bool                // the pidfile names this master
	// systemd (notify.go).
	notify    *notifier
	notifyGen int          // a good reload's generation awaiting READY=1 (0: none)
	created   time.Time    // monotonic base of loopBeat
	loopBeat  atomic.Int64 // when the Run loop last went round, since created (0: not yet)
}

type retiringSet struct {
	gen int
	set *listener.Set
}

type arbiterMode int

const (
	modeRunning arbiterMode = iota
	modeGraceful
	modeImmediate
)

func (m arbiterMode) String() string {
	return [...]string{"running", "stopping", "stopping_immediately"}[m]
}

type wstate int

const (
	stateBooting wstate = iota
	stateReady
	stateDraining
)

func (s wstate) String() string { return [...]string{"booting", "ready", "draining"}[s] }

// wproc is the master's record of one worker.
type wproc struct {
	id, generation int
	proc           childProc
	state          wstate
	started        time.Time
	lastBeat       time.Time
	retiring       bool      // asked to retire (max_requests)
	deadline       time.Time // draining: SIGKILL at
	killed         bool      // SIGKILL sent
	reason         string    // why it is stopping
	bootError      string
	requests       uint64
	inFlight       int64
	log            hclog.Logger
	// reloadGen is the generation an in-place reload was sent for and
	// reloadDeadline when the worker must have answered (0: none
	// pending).
	reloadGen      int
	reloadDeadline time.Time
}

// request is a call into the Run goroutine; fn runs there and its result
// goes back on reply.
type request struct {
	fn   func()
	done chan struct{} // closed once fn returned
}

// NewArbiter checks opts and resolves the executable now, before anything
// can replace it.
func NewArbiter(opts ArbiterOptions) (*Arbiter, error) {
	if opts.Settings == nil {
		return nil, errors.New("worker: NewArbiter: no settings")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.getenv == nil {
		opts.getenv = os.Getenv
	}
	if opts.spawn == nil && opts.Executable == "" {
		exe, err := ownExecutable()
		if err != nil {
			return nil, fmt.Errorf("worker: find own executable: %w", err)
		}
		opts.Executable = exe
	}
	if opts.Argv0 == "" && len(os.Args) > 0 {
		opts.Argv0 = os.Args[0]
	}
	if opts.Upgrader != nil && opts.UpgradeExecutable == "" && len(os.Args) > 0 {
		exe, err := ResolveExecutable(os.Args[0])
		if err != nil {
			return nil, err
		}
		opts.UpgradeExecutable = exe
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	return &Arbiter{
		opts:     opts,
		log:      opts.Logger.Named(logname.Master),
		reqC:     make(chan request),
		done:     make(chan struct{}),
		settings: opts.Settings,
		events:   make(chan event, 16),
		workers:  make(map[int]*wproc),
		target:   opts.Settings.Workers,
		upgradeC: make(chan upgradeOutcome, 1),
		metrics:  newMasterMetrics(opts.Version),
		notify:   newNotifier(opts.getenv, opts.Logger.Named(logname.Master)),
		created:  time.Now(),
	}, nil
}

// Run validates the pipeline, opens the listeners, writes the pidfile and
// supervises workers until stopped: TERM (or ctx done) gracefully, INT or
// QUIT at once. It returns nil after a requested stop, the
// *pipeline.Error/ErrorList of a broken config, or a *BootError when no
// worker could boot at first start.
func (a *Arbiter) Run(ctx context.Context) error {
	defer close(a.done)
	defer a.failGathers(ErrNotRunning) // before done closes: scrapes in progress get an answer
	defer a.failUpstreams(ErrNotRunning)
	s := a.settings
	if a.target < 1 {
		return errors.New("worker: Run: workers must be at least 1 (0 serves in-process)")
	}
	// Catch signals before the slow part, so a TERM during startup is a
	// clean stop rather than the default kill.
	sigC := a.opts.Signals
	if sigC == nil {
		c := make(chan os.Signal, 8)
		signal.Notify(c, masterSignals...)
		defer signal.Stop(c)
		sigC = c
	}
	cred, err := credential(s.User, s.Group)
	if err != nil {
		return err
	}
	if a.opts.spawn == nil {
		// Validate in the master, so a broken config prints file:line and
		// exits 1 before any process starts.
		v, err := a.validatePipeline(a.opts.StartFiles)
		if err != nil {
			return err
		}
		// The master reads the TLS pair (root, when workers run as
		// user): a root-only key must not stop them from booting.
		pair, err := readTLS(s)
		if err != nil {
			return err
		}
		a.cfg = a.newRunningConfig(v, pair)

		set, err := listener.Open(ctx, s.Bind, listener.Options{Backlog: s.Backlog, ReusePort: s.ReusePort}, a.opts.Opener)
		if err != nil {
			return fmt.Errorf("worker: open listeners: %w", err)
		}
		a.set = set
		defer a.closeListeners()
		llog := a.opts.Logger.Named(logname.Listener)
		for i, ln := range set.Listeners() {
			spec := set.Specs()[i]
			llog.Info("listening", "addr", ln.Addr().String(), "network", spec.Network, "bind", spec.String())
		}
		if s.MetricsBind != nil {
			stop, err := serveMetrics(ctx, *s.MetricsBind, a.opts.Opener, a.Metrics, llog)
			if err != nil {
				return err
			}
			defer stop()
		}
		a.opts.spawn = &execSpawner{
			exe: a.opts.Executable, argv0: a.opts.Argv0, set: set, stderr: a.opts.Stderr, stdout: a.opts.Stdout,
			baseEnv: workerEnv(os.Environ()), config: a.opts.ConfigPath, app: a.opts.AppName,
			serverName: a.opts.ServerName, logJSON: a.opts.LogJSON, cred: cred,
		}
	}
	pid := os.Getpid()
	if s.Pidfile != "" {
		// The new master of an upgrade writes it once ready (OnReady).
		if a.opts.Upgrader == nil || !a.opts.Upgrader.HasParent() {
			if err := writePidfile(s.Pidfile, pid); err != nil {
				return fmt.Errorf("worker: %w", err)
			}
			a.pidfileDone = true
		}
		defer func() {
			if err := removePidfile(s.Pidfile, pid); err != nil {
				a.log.Warn("cannot remove pidfile", "path", s.Pidfile, "error", err)
			}
		}()
	}
	if a.opts.OnListening != nil {
		if err := a.opts.OnListening(); err != nil {
			return err
		}
	}
	a.started = a.opts.now()
	a.log.Info("master started", "pid", pid, "config", a.opts.ConfigPath, "workers", a.target)
	stopWatchdog := a.startWatchdog()
	defer stopWatchdog()
	err = a.loop(ctx, sigC)
	a.log.Info("stopped")
	return err
}

// masterSignals is gunicorn's master table; CHLD is not needed (one
// goroutine waits for each worker).
var masterSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP,
	syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGPIPE}

// loop is the arbiter's state machine; it returns once stopping and every
// worker has exited.
func (a *Arbiter) loop(ctx context.Context, sigC <-chan os.Signal) error {
	stopEvents := make(chan struct{})
	defer close(stopEvents) // releases event senders of workers that outlived us
	a.eventsDone = stopEvents
	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	ctxDone := ctx.Done()
	a.manage()
	for {
		a.beat()
		if a.mode != modeRunning && len(a.workers) == 0 {
			return a.bootErr
		}
		select {
		case ev := <-a.events:
			a.handleEvent(ev)
		case sig := <-sigC:
			a.handleSignal(sig)
		case <-tick.C:
			a.checkDeadlines()
		case r := <-a.reqC:
			r.fn()
			close(r.done)
		case out := <-a.upgradeC:
			a.upgradeDone(out)
		case <-ctxDone:
			ctxDone = nil
			a.log.Info("context done; stopping gracefully")
			a.stop(true, 0)
		}
		a.manage()
		a.notifyWaiters()
		a.notifyRolled()
		a.retireListeners()
		a.finishGathers()
		a.finishUpstreams()
	}
}

// closeListeners closes the master's descriptors of every listener,
// retiring ones included (Close may run twice).
func (a *Arbiter) closeListeners() {
	if a.set != nil {
		if err := a.set.Close(); err != nil {
			a.log.Warn("close listeners", "error", err)
		}
	}
	for _, r := range a.retiring {
		if err := r.set.Close(); err != nil {
			a.log.Warn("close listeners", "error", err)
		}
	}
}

// retireListeners retires the binds a reload removed once no worker of
// an older generation accepts on them any more.
func (a *Arbiter) retireListeners() {
	// Not while an upgrade runs, nor after one succeeded: the new master
	// inherits every socket this one holds and may serve on a retiring
	// one its config names again; shutdown(2) would stop it there too. A
	// failed upgrade retires them afterwards.
	if a.mode != modeRunning || a.upgrading || a.upgraded {
		return
	}
	keep := a.retiring[:0]
	for _, r := range a.retiring {
		// Draining workers count: until one exits it may be blocked in
		// accept on the bind, and shutdown(2) would fail that accept
		// (EINVAL) in every process sharing the socket.
		if !a.rolled(r.gen) || a.olderAlive(r.gen) {
			keep = append(keep, r)
			continue
		}
		for _, spec := range r.set.Specs() {
			a.log.Info("bind removed; no longer listening", "bind", spec.String())
		}
		if err := r.set.Retire(); err != nil {
			a.log.Warn("retire listeners", "error", err)
		}
	}
	clear(a.retiring[len(keep):])
	a.retiring = keep
}

// olderAlive reports whether a worker of a generation before gen is still
// running, draining or killed but not yet reaped included.
func (a *Arbiter) olderAlive(gen int) bool {
	for _, w := range a.workers {
		if w.generation < gen {
			return true
		}
	}
	return false
}

func (a *Arbiter) handleEvent(ev event) {
	w := a.workers[ev.pid]
	if w == nil {
		return
	}
	now := a.opts.now()
	switch {
	case ev.exited:
		delete(a.workers, ev.pid)
		w.proc.Close()
		a.metricsWorkerGone(ev.pid)
		a.upstreamsWorkerGone(ev.pid)
		reason := w.reason
		if reason == "" {
			reason = "died unexpectedly"
		}
		w.log.Info("worker exited", "reason", reason, "status", ev.status, "requests", w.requests)
		if w.state == stateBooting || w.bootError != "" {
			msg := w.bootError
			if msg == "" {
				msg = "exited during boot: " + ev.status
				if w.reason != "" {
					msg += " (" + w.reason + ")"
				}
			}
			if !a.everReady && a.mode == modeRunning {
				a.log.Error("no worker could boot; stopping", "error", msg)
				a.bootErr = &BootError{Msg: msg}
				a.stopAll(modeImmediate)
				return
			}
			d := a.boot.fail(now)
			a.log.Warn("worker failed to boot; retrying after backoff", "error", msg, "backoff", d.String(), "failures", a.boot.failures)
		}
	case ev.err != nil:
		w.log.Error("garbage from worker; killing it", "error", ev.err)
		a.kill(w, "garbage on its channel")
	case ev.msg != nil:
		w.lastBeat = now
		m := ev.msg
		switch m.Type {
		case MsgReady:
			if w.state == stateBooting {
				w.state = stateReady
			}
			a.everReady = true
			a.boot.reset()
			w.log.Info("worker booted", "boot_time", now.Sub(w.started).Round(time.Millisecond).String())
			if !a.readyOnce && a.upgradeReady() {
				a.readyOnce = true
				a.log.Info("ready", "pid", os.Getpid(), "workers", a.target)
				a.notifyStarted()
				a.writeUpgradePidfile()
				if a.opts.OnReady != nil && a.set != nil {
					addrs := []net.Addr{}
					for _, ln := range a.set.Listeners() {
						addrs = append(addrs, ln.Addr())
					}
					a.opts.OnReady(addrs)
				}
			}
		case MsgBootError:
			w.bootError = m.Error
			w.log.Error("worker boot error", "error", m.Error)
		case MsgHeartbeat:
			w.requests, w.inFlight = m.Requests, m.InFlight
		case MsgRetire:
			w.requests, w.inFlight = m.Requests, m.InFlight
			if !w.retiring && w.state != stateDraining {
				w.retiring = true
				w.log.Info("worker reached max_requests; replacing it", "requests", m.Requests)
			}
		case MsgReloaded, MsgReloadFailed:
			a.reloadAnswered(w, m)
		case MsgMetrics:
			a.metricsFrom(w, m) // metrics_master.go
		case MsgMetricsGather:
			a.metricsGather(w, m)
		case MsgUpstreams:
			a.upstreamsFrom(w, m) // upstreams.go
		case MsgAck, MsgUnsupported:
			w.log.Debug("worker answered", "type", m.Type, "command", m.Command)
			if m.Command == MsgReopenLogs {
				a.reopenAnswered(w, m) // logs.go
			}
		}
	}
}

func (a *Arbiter) handleSignal(sig os.Signal) {
	name := signalName(sig)
	switch sig {
	case syscall.SIGPIPE:
		return
	// Each signal runs the same function as its control endpoint
	// (control.go): TERM ≡ Stop graceful, INT/QUIT ≡ Stop immediate,
	// TTIN ≡ AddWorkers(1), TTOU ≡ RemoveWorkers(1), HUP ≡ Reload,
	// USR1 ≡ ReopenLogs.
	case syscall.SIGTERM:
		a.log.Info("signal received", "signal", name, "stop", StopGraceful.String())
		a.stop(true, 0)
	case syscall.SIGINT, syscall.SIGQUIT:
		a.log.Info("signal received", "signal", name, "stop", StopImmediate.String())
		a.stop(false, 0)
	case syscall.SIGTTIN:
		_, _, _ = a.changeTarget(1, "signal TTIN")
	case syscall.SIGTTOU:
		_, _, _ = a.changeTarget(-1, "signal TTOU")
	case syscall.SIGHUP:
		a.log.Info("signal received", "signal", name, "action", "reload")
		_, _ = a.reload(reloadRequest{by: "signal HUP"})
	case syscall.SIGUSR1:
		a.log.Info("signal received", "signal", name, "action", "reopen logs")
		a.reopenLogs()
	case syscall.SIGUSR2:
		a.log.Info("signal received", "signal", name, "action", "upgrade")
		if err := a.startUpgrade("signal USR2", nil); err != nil {
			a.log.Error("upgrade not started", "error", err)
		}
	case syscall.SIGWINCH:
		a.log.Info("signal received; ignored (not daemonised)", "signal", name)
	default:
		a.log.Warn("signal not supported yet; ignored", "signal", name)
	}
}

// stopAll stops every worker, gracefully (drain within graceful_timeout)
// or at once; an immediate stop during a graceful one shortens it.
func (a *Arbiter) stopAll(mode arbiterMode) {
	if mode <= a.mode {
		return
	}
	a.mode = mode
	a.notifyStopping(mode)
	// Stop accepting at once: the workers' own descriptors close as they
	// drain, and the master's copy must not keep the socket listening
	// (connections would queue where nobody accepts, then be reset).
	a.closeListeners()
	if a.opts.StopListening != nil && !a.stoppedListening {
		a.stoppedListening = true
		a.opts.StopListening()
	}
	now := a.opts.now()
	for _, w := range a.sorted() {
		if mode == modeImmediate {
			w.state = stateDraining
			if w.reason == "" {
				// One already draining (retired, replaced) keeps
				// its reason: the stop only hurries it.
				w.reason = "stop"
			}
			if dl := now.Add(quickStopTimeout); w.deadline.IsZero() || dl.Before(w.deadline) {
				w.deadline = dl
			}
			if err := w.proc.Send(Message{Type: MsgStop, Mode: StopImmediate.String()}); err != nil {
				_ = w.proc.Signal(syscall.SIGQUIT)
			}
			continue
		}
		if w.state != stateDraining {
			a.drain(w, "stop")
		}
	}
}

// drain asks w to stop gracefully; it is killed if it has not exited by
// graceful_timeout (plus a margin).
func (a *Arbiter) drain(w *wproc, reason string) {
	w.state = stateDraining
	w.reason = reason
	grace := a.settings.GracefulTimeout
	if a.mode == modeGraceful && a.stopGrace > 0 {
		grace = a.stopGrace
	}
	w.deadline = a.opts.now().Add(grace + drainMargin)
	w.log.Info("stopping worker gracefully", "reason", reason)
	if err := w.proc.Send(Message{Type: MsgStop, Mode: StopGraceful.String()}); err != nil {
		_ = w.proc.Signal(syscall.SIGTERM)
	}
}

func (a *Arbiter) kill(w *wproc, reason string) {
	if w.killed {
		return
	}
	w.killed = true
	if w.reason == "" || w.state != stateDraining {
		w.reason = reason
	} else {
		w.reason += "; " + reason
	}
	w.log.Warn("killing worker", "reason", reason)
	if err := w.proc.Signal(syscall.SIGKILL); err != nil {
		w.log.Debug("kill", "error", err)
	}
}

// checkDeadlines kills workers silent past timeout and draining ones past
// their deadline.
func (a *Arbiter) checkDeadlines() {
	now := a.opts.now()
	timeout := a.settings.Timeout
	for _, w := range a.sorted() {
		if w.killed {
			continue
		}
		if w.reloadGen != 0 && now.After(w.reloadDeadline) {
			w.log.Warn("worker did not answer the reload in time; replacing it", "generation", w.reloadGen, "timeout", reloadAckTimeout.String())
			w.reloadGen = 0
		}
		switch {
		case w.state == stateDraining:
			if now.After(w.deadline) {
				a.kill(w, "did not stop in time")
			}
		case timeout > 0 && now.Sub(w.lastBeat) > timeout:
			a.kill(w, fmt.Sprintf("timeout: silent for %s", now.Sub(w.lastBeat).Round(time.Millisecond)))
		}
	}
}

// sorted returns the workers oldest first.
func (a *Arbiter) sorted() []*wproc {
	out := make([]*wproc, 0, len(a.workers))
	for _, w := range a.workers {
		out = append(out, w)
	}
	slices.SortFunc(out, func(x, y *wproc) int { return cmp.Compare(x.id, y.id) })
	return out
}

// manage brings the workers to the target: it replaces dead ones at once,
// drains the oldest surplus, and rolls retiring and outdated workers one
// at a time (a replacement is ready before the old one drains).
func (a *Arbiter) manage() {
	if a.mode != modeRunning {
		return
	}
	var wanted, replaceable []*wproc
	readyWanted, bootingWanted := 0, 0
	for _, w := range a.sorted() {
		if w.state == stateDraining || w.killed {
			continue
		}
		// A worker swapping to the current generation in place is not
		// replaced while it does.
		if (w.generation == a.generation || (w.reloadGen != 0 && w.reloadGen == a.generation)) && !w.retiring {
			wanted = append(wanted, w)
			if w.state == stateReady {
				readyWanted++
			} else {
				bootingWanted++
			}
		} else {
			replaceable = append(replaceable, w)
		}
	}
	for len(wanted) > a.target {
		a.drain(wanted[0], "worker count lowered")
		if wanted[0].state == stateReady {
			readyWanted--
		}
		wanted = wanted[1:]
	}
	// One old worker drains for each new one ready: capacity never dips
	// below the target, and never exceeds it by more than the workers
	// still booting.
	for len(replaceable) > 0 && readyWanted+len(replaceable) > a.target {
		w := replaceable[0]
		reason := "replaced after max_requests"
		if !w.retiring {
			reason = "replaced by generation " + fmt.Sprint(a.generation)
		}
		a.drain(w, reason)
		replaceable = replaceable[1:]
	}
	now := a.opts.now()
	for n := len(wanted); n < a.target; n++ {
		deficit := a.target - n
		if len(replaceable) >= deficit && bootingWanted > 0 {
			break // rolling: one replacement at a time
		}
		if !a.boot.ready(now) {
			break
		}
		if !a.spawnOne() {
			break
		}
		bootingWanted++
	}
}

func (a *Arbiter) spawnOne() bool {
	a.nextID++
	id := a.nextID
	s := a.settings
	maxReq := 0
	if s.MaxRequests > 0 {
		maxReq = s.MaxRequests
		if s.MaxRequestsJitter > 0 {
			maxReq += rand.IntN(s.MaxRequestsJitter + 1)
		}
	}
	p, err := a.opts.spawn.spawn(spawnRequest{ID: id, Generation: a.generation, MaxRequests: maxReq, Settings: s, Files: a.cfg.contents, TLS: a.cfg.tls}, a.events, a.eventsDone)
	if err != nil {
		d := a.boot.fail(a.opts.now())
		a.log.Error("cannot start a worker", "worker_id", id, "error", err, "backoff", d.String())
		if !a.everReady {
			a.bootErr = &BootError{Msg: err.Error()}
			a.stopAll(modeImmediate)
		}
		return false
	}
	now := a.opts.now()
	w := &wproc{id: id, generation: a.generation, proc: p, started: now, lastBeat: now,
		log: a.log.With("pid", p.Pid(), "worker_id", id, "generation", a.generation)}
	a.workers[p.Pid()] = w
	w.log.Info("worker spawned", "max_requests", maxReq)
	return true
}

// ErrNotRunning is returned by requests to an arbiter whose Run has
// returned (or not started).
var ErrNotRunning = errors.New("worker: arbiter is not running")

// do runs fn in the Run goroutine.
func (a *Arbiter) do(ctx context.Context, fn func()) error {
	r := request{fn: fn, done: make(chan struct{})}
	select {
	case a.reqC <- r:
	case <-a.done:
		return ErrNotRunning
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	<-r.done
	return nil
}

// call is do for a function with a result: fn runs in the Run goroutine
// and its value comes back typed.
func call[T any](a *Arbiter, ctx context.Context, fn func() T) (T, error) {
	var out T
	err := a.do(ctx, func() { out = fn() })
	return out, err
}

// Done is closed when Run has returned.
func (a *Arbiter) Done() <-chan struct{} { return a.done }

// selfExe is the kernel's link to the running binary's inode.
const selfExe = "/proc/self/exe"

// ownExecutable is what workers are started from: the running binary
// itself, not whatever file is at its path now.
func ownExecutable() (string, error) {
	if _, err := os.Stat(selfExe); err == nil {
		return selfExe, nil
	}
	return os.Executable()
}
