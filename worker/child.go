package worker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"paddock/listener"
	"paddock/logname"
	"paddock/pipeline"
)

// The environment contract between a master and the worker it starts. The
// master sets every variable; a worker missing one exits ExitWorkerConfig.
const (
	// EnvWorker marks a worker process; its value is the worker id.
	EnvWorker = "PADDOCK_WORKER_ID"
	// EnvListeners: the bind specs, JSON list of strings, in the order of
	// the inherited descriptors (3, 4, ...).
	EnvListeners = "PADDOCK_WORKER_LISTENERS"
	// EnvChannelFD: the descriptor of the worker's end of the socketpair.
	EnvChannelFD = "PADDOCK_WORKER_CHANNEL_FD"
	EnvConfig    = "PADDOCK_WORKER_CONFIG"
	EnvApp       = "PADDOCK_WORKER_APP"
	EnvServer    = "PADDOCK_WORKER_SERVER"
	// EnvGeneration: the config generation the worker serves.
	EnvGeneration = "PADDOCK_WORKER_GENERATION"
	// EnvSettings: the master's resolved Settings as JSON, so flag and
	// environment overrides apply in workers too.
	EnvSettings = "PADDOCK_WORKER_SETTINGS"
	// EnvMaxRequests: this worker's max_requests with its jitter drawn
	// (0: never retire).
	EnvMaxRequests = "PADDOCK_WORKER_MAX_REQUESTS"
	// EnvLogJSON: "1" when the master logs JSON.
	EnvLogJSON = "PADDOCK_WORKER_LOG_JSON"
	// EnvConfigFD (optional): a descriptor holding the config files the
	// master validated and the TLS pair it read, JSON
	// {"files":{NAME:BASE64},"tls":{"cert":BASE64,"key":BASE64}}
	// (workerSnapshot); the worker builds from them rather than from the
	// files on disk, and never opens certfile or keyfile.
	EnvConfigFD = "PADDOCK_WORKER_CONFIG_FD"
)

// Exit statuses of a worker process.
const (
	// ExitWorkerOK: stopped as asked (or its master went away).
	ExitWorkerOK = 0
	// ExitWorkerConfig: the environment contract was broken (not started
	// by a paddock master, or a different version).
	ExitWorkerConfig = 2
	// ExitWorkerBootError: the pipeline or the listeners could not be
	// built (gunicorn's WORKER_BOOT_ERROR); the error was sent as
	// boot_error first.
	ExitWorkerBootError = 3
	// ExitWorkerServeError: a listener failed while serving.
	ExitWorkerServeError = 4
)

// WorkerHeader is the debug response header naming the worker's pid
// (debug_worker_header).
const WorkerHeader = "X-Paddock-Worker"

// IsWorker reports whether this process was started as a worker.
func IsWorker(lookupEnv func(string) (string, bool)) bool {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	_, ok := lookupEnv(EnvWorker)
	return ok
}

// ChildOptions is what RunWorker needs besides the environment contract.
type ChildOptions struct {
	// Stderr receives the worker's logs (the master's stderr, inherited;
	// a pipe into the master's error log when errorlog is a file).
	Stderr io.Writer
	// Stdout is where accesslog = - writes; nil means os.Stdout.
	Stdout io.Writer
	// Registry holds the factories; nil means pipeline.NewDefaultRegistry.
	Registry *pipeline.Registry
	// LookupEnv reads the contract; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// childEnv is the environment contract as values: the master writes it
// (environ), the worker reads it back (parseChildEnv); the snapshot's
// contents (files, tls) travel in the descriptor configFD names.
type childEnv struct {
	id, generation, maxRequests int
	specs                       []listener.Spec
	channelFD                   int
	configFD                    int // -1: no snapshot
	config, app, server         string
	settings                    *Settings
	logJSON                     bool
	files                       map[string][]byte // EnvConfigFD's contents
	tls                         *TLSPair          // EnvConfigFD's TLS pair
}

// environ is the contract's variables for the worker's environment.
func (e *childEnv) environ() ([]string, error) {
	settingsJSON, err := json.Marshal(e.settings)
	if err != nil {
		return nil, fmt.Errorf("encode settings: %w", err)
	}
	binds := make([]string, 0, len(e.specs))
	for _, s := range e.specs {
		binds = append(binds, s.String())
	}
	bindsJSON, err := json.Marshal(binds)
	if err != nil {
		return nil, fmt.Errorf("encode binds: %w", err)
	}
	logJSON := "0"
	if e.logJSON {
		logJSON = "1"
	}
	env := []string{
		EnvWorker + "=" + strconv.Itoa(e.id),
		EnvGeneration + "=" + strconv.Itoa(e.generation),
		EnvMaxRequests + "=" + strconv.Itoa(e.maxRequests),
		EnvListeners + "=" + string(bindsJSON),
		EnvChannelFD + "=" + strconv.Itoa(e.channelFD),
		EnvConfig + "=" + e.config,
		EnvApp + "=" + e.app,
		EnvServer + "=" + e.server,
		EnvSettings + "=" + string(settingsJSON),
		EnvLogJSON + "=" + logJSON,
	}
	if e.configFD >= 0 {
		env = append(env, EnvConfigFD+"="+strconv.Itoa(e.configFD))
	}
	return env, nil
}

// readChildEnv is parseChildEnv, then the snapshot read from configFD.
func readChildEnv(lookupEnv func(string) (string, bool)) (*childEnv, error) {
	e, err := parseChildEnv(lookupEnv)
	if err != nil {
		return nil, err
	}
	if e.configFD >= 0 {
		snap, err := readConfigSnapshot(e.configFD)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvConfigFD, err)
		}
		e.files, e.tls = snap.Files, snap.TLS
	}
	return e, nil
}

// parseChildEnv reads the contract's variables back (environ's inverse).
func parseChildEnv(lookupEnv func(string) (string, bool)) (*childEnv, error) {
	get := func(k string) (string, error) {
		v, ok := lookupEnv(k)
		if !ok {
			return "", fmt.Errorf("%s is not set", k)
		}
		return v, nil
	}
	atoi := func(k string) (int, error) {
		v, err := get(k)
		if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", k, err)
		}
		return n, nil
	}
	e := childEnv{configFD: -1}
	var err error
	for _, k := range []struct {
		name string
		dst  *int
	}{{EnvWorker, &e.id}, {EnvGeneration, &e.generation}, {EnvMaxRequests, &e.maxRequests}, {EnvChannelFD, &e.channelFD}} {
		if *k.dst, err = atoi(k.name); err != nil {
			return nil, err
		}
	}
	for _, k := range []struct {
		name string
		dst  *string
	}{{EnvConfig, &e.config}, {EnvApp, &e.app}, {EnvServer, &e.server}} {
		if *k.dst, err = get(k.name); err != nil {
			return nil, err
		}
	}
	v, err := get(EnvListeners)
	if err != nil {
		return nil, err
	}
	var binds []string
	if err := json.Unmarshal([]byte(v), &binds); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvListeners, err)
	}
	if e.specs, err = listener.ParseList(binds); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvListeners, err)
	}
	v, err = get(EnvSettings)
	if err != nil {
		return nil, err
	}
	e.settings = new(Settings)
	if err := json.Unmarshal([]byte(v), e.settings); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvSettings, err)
	}
	j, _ := lookupEnv(EnvLogJSON)
	e.logJSON = j == "1"
	if v, ok := lookupEnv(EnvConfigFD); ok {
		if e.configFD, err = strconv.Atoi(v); err != nil || e.configFD < 0 {
			return nil, fmt.Errorf("%s: not a descriptor: %q", EnvConfigFD, v)
		}
	}
	return &e, nil
}

// readConfigSnapshot reads and closes the config snapshot descriptor.
func readConfigSnapshot(fd int) (workerSnapshot, error) {
	var snap workerSnapshot
	f := os.NewFile(uintptr(fd), "paddock-config")
	if f == nil {
		return snap, fmt.Errorf("descriptor %d is not open", fd)
	}
	defer f.Close()
	// The master wrote through a descriptor sharing this one's offset.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return snap, fmt.Errorf("rewind: %w", err)
	}
	if err := json.NewDecoder(f).Decode(&snap); err != nil {
		return snap, fmt.Errorf("decode: %w", err)
	}
	return snap, nil
}

// workerSignals is how a worker treats signals: TERM drains, QUIT stops at
// once, USR1 reopens logs; the rest of the master's table (HUP, INT, TTIN,
// TTOU, USR2, WINCH) is ignored, since a terminal's Ctrl-C or a
// kill -HUP of the process group is the master's to act on.
var workerIgnored = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGPIPE}

// inheritedListeners turns the descriptors the master passed (3, 4, ...,
// in env.specs order) into the worker's listeners, wrapped for the PROXY
// protocol and then TLS from the pair the master read; certs is what an
// in-place reload swaps.
func inheritedListeners(env *childEnv, log hclog.Logger) ([]net.Listener, *listener.Certificate, error) {
	files := make([]*os.File, len(env.specs))
	for i, spec := range env.specs {
		files[i] = os.NewFile(uintptr(3+i), spec.String())
	}
	lns, err := listener.FromFiles(files, env.specs)
	if err != nil {
		return nil, nil, err
	}
	return wrapListenersPair(lns, env.settings, env.tls, log)
}

// orphanGrace is how long a worker whose master is gone drains: timeout,
// not graceful_timeout, when shorter (0: graceful_timeout). Nobody
// supervises it any more, and it must not keep serving a config nobody
// can reload.
func orphanGrace(s *Settings) time.Duration {
	if s.Timeout > 0 && s.Timeout < s.GracefulTimeout {
		return s.Timeout
	}
	return 0
}

// RunWorker is the worker process: it rebuilds the listeners its master
// passed, loads the pipeline, reports ready (or boot_error), heartbeats,
// obeys the master's commands and returns the process exit status.
func RunWorker(ctx context.Context, opts ChildOptions) int {
	lookupEnv := opts.LookupEnv
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	stderr := opts.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	signal.Ignore(workerIgnored...)
	env, err := readChildEnv(lookupEnv)
	if err != nil {
		fmt.Fprintf(stderr, "paddock worker: %v (workers are started by paddock serve)\n", err)
		return ExitWorkerConfig
	}
	s := env.settings
	pid := os.Getpid()
	baseLog := hclog.New(&hclog.LoggerOptions{Level: s.LogLevel, Output: stderr, JSONFormat: env.logJSON}).
		Named(logname.Worker).With("pid", pid, "worker_id", env.id)
	log := baseLog.With("generation", env.generation)

	chf := os.NewFile(uintptr(env.channelFD), "paddock-channel")
	conn, err := net.FileConn(chf)
	chf.Close()
	if err != nil {
		log.Error("cannot use the channel to the master", "error", err)
		return ExitWorkerConfig
	}
	defer conn.Close()
	enc := NewEncoder(conn)
	wm := newWorkerMetrics(env.id, enc)
	defer wm.close()

	bootErr := func(err error) int {
		log.Error("boot failed", "error", err)
		if serr := enc.Send(Message{Type: MsgBootError, Error: err.Error()}); serr != nil {
			log.Warn("cannot report the boot error", "error", serr)
		}
		return ExitWorkerBootError
	}
	lns, certs, err := inheritedListeners(env, log)
	if err != nil {
		return bootErr(err)
	}
	if s.Umask >= 0 {
		unix.Umask(s.Umask)
	}
	// The access log's generation is the one serving (swap, set below
	// before any request).
	var swap *swapHandler
	access, err := openAccessLog(s, env.logJSON, opts.Stdout,
		serverVars(env.app, env.id, func() int { return swap.Current().gen }), baseLog)
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return bootErr(err)
	}
	defer access.close() // after the goroutines below: flushes what is buffered
	p, err := pipeline.Load(pipeline.LoadOptions{Path: env.config, Name: env.app, Kind: pipeline.ObjectApp, Registry: opts.Registry, Logger: log, Files: env.files, Metrics: wm.source})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return bootErr(err)
	}
	// The pipeline is served through a swapHandler, so a reload swaps it
	// in place; each generation is closed after its last request.
	onClose := func(gen int, err error) {
		if err != nil {
			baseLog.Warn("close retired pipeline", "generation", gen, "error", err)
		}
	}
	swap = newSwapHandler(newHandlerGen(env.generation, p.Handler, p, onClose))
	defer swap.Close()
	p.Start() // installed: its background work (health probes) begins

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &stats{}
	retire := make(chan struct{})
	h := st.wrap(swap, uint64(env.maxRequests), retire)
	if s.DebugWorkerHeader {
		h = workerHeader(h, pid)
	}
	h = observe(h, access, wm.http) // metrics and the access log, outermost (logs.go)
	srv := newServer(ctx, h, s, log)
	srv.start(lns)

	stop := make(chan Stop, 2)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: ends the goroutines below
	// USR1 and reopen_logs (true: the master waits for an ack).
	reopens := make(chan bool, 4)
	wg.Go(func() { childSignals(ctx, stop, reopens, baseLog) })
	wg.Go(func() { reopenLoop(ctx, access, enc, reopens, baseLog) })
	reloads := make(chan Message, 4)
	rl := &reloader{swap: swap, enc: enc, env: env, registry: opts.Registry, log: baseLog, onClose: onClose, metrics: wm.source, certs: certs}
	wg.Go(func() { rl.run(ctx, reloads) })
	ups := &workerUpstreams{swap: swap, enc: enc} // GET /v1/upstreams (upstreams.go)
	wg.Go(func() { readCommands(ctx, conn, enc, stop, reloads, reopens, wm, ups, orphanGrace(s), baseLog) })
	if err := enc.Send(Message{Type: MsgReady, Pid: pid}); err != nil {
		log.Warn("cannot report ready; draining", "error", err)
		stop <- StopGraceful
	}
	log.Info("booted", "listeners", len(lns))
	// After boot the generation changes with in-place reloads: lines
	// name the one serving.
	log = baseLog
	wg.Go(func() { heartbeat(ctx, enc, st, retire, s.Timeout, log) })

	if err := srv.run(ctx, stop, s.GracefulTimeout); err != nil {
		log.Error("serving failed", "error", err, "generation", swap.Current().gen)
		return ExitWorkerServeError
	}
	// The master keeps this worker's counts in its sums after it exits.
	if err := wm.sendSnapshot(0); err != nil {
		log.Debug("cannot send the last metrics", "error", err)
	}
	log.Info("exiting", "requests", st.requests.Load(), "generation", swap.Current().gen)
	return ExitWorkerOK
}

// childSignals turns TERM into a graceful stop and QUIT into an immediate
// one until ctx is done; USR1 reopens the log files (reopenLoop).
func childSignals(ctx context.Context, stop chan<- Stop, reopens chan<- bool, log hclog.Logger) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				log.Info("signal received", "signal", "USR1", "action", "reopen logs")
				select {
				case reopens <- false:
				default: // reopens already queued do it
				}
				continue
			case syscall.SIGQUIT:
				log.Info("signal received", "signal", "QUIT", "stop", StopImmediate.String())
				trySend(stop, StopImmediate)
			default:
				log.Info("signal received", "signal", "TERM", "stop", StopGraceful.String())
				trySend(stop, StopGraceful)
			}
		}
	}
}

func trySend(c chan<- Stop, st Stop) {
	select {
	case c <- st:
	default:
	}
}

// readCommands obeys the master until the channel ends. EOF means the
// master is gone: drain, so no orphan keeps serving a stale config; when
// orphanGrace (> 0) passes before the drain is done, stop at once.
func readCommands(ctx context.Context, conn net.Conn, enc *Encoder, stop chan<- Stop, reloads chan<- Message, reopens chan<- bool, wm *workerMetrics, ups *workerUpstreams, orphanGrace time.Duration, log hclog.Logger) {
	go func() { // unblock the read below when the worker is done
		<-ctx.Done()
		conn.SetReadDeadline(time.Now())
	}()
	dec := NewDecoder(conn, FromMaster)
	for {
		m, err := dec.Next()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, io.EOF) {
				log.Warn("master is gone; draining")
			} else {
				log.Error("bad message from the master; draining", "error", err)
			}
			trySend(stop, StopGraceful)
			if orphanGrace > 0 {
				cutDrain(ctx, stop, orphanGrace, log)
			}
			return
		}
		switch m.Type {
		case MsgStop:
			st := StopGraceful
			if m.Mode == StopImmediate.String() {
				st = StopImmediate
			}
			log.Debug("stop requested", "mode", st.String())
			trySend(stop, st)
		case MsgReopenLogs:
			select {
			case reopens <- true:
			default:
				_ = enc.Send(Message{Type: MsgAck, Command: MsgReopenLogs, Error: "too many reopens queued"})
			}
		case MsgReload:
			select {
			case reloads <- m:
			default:
				_ = enc.Send(Message{Type: MsgReloadFailed, Generation: m.Generation, Error: "too many reloads queued"})
			}
		case MsgMetricsRequest, MsgMetricsResult:
			if err := wm.handle(m); err != nil {
				log.Warn("cannot send metrics", "error", err)
			}
		case MsgUpstreamsRequest:
			if err := ups.handle(m); err != nil {
				log.Warn("cannot send the upstream state", "error", err)
			}
		}
	}
}

// cutDrain stops the worker at once if it is still draining (ctx not
// done) after grace.
func cutDrain(ctx context.Context, stop chan<- Stop, grace time.Duration, log hclog.Logger) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
		log.Warn("master is gone and requests are still running after timeout; stopping at once", "timeout", grace.String())
		trySend(stop, StopImmediate)
	}
}

// reopenLoop reopens the access log file at its path (USR1, or the
// master's reopen_logs, answered with an ack naming any error) until ctx
// is done, in its own goroutine so that a slow disk never holds the
// master's commands. When the path cannot be opened the old file is
// kept. (The error log is the master's: a worker's stderr needs no
// reopening.)
func reopenLoop(ctx context.Context, access *accessLog, enc *Encoder, reopens <-chan bool, log hclog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case ack := <-reopens:
			ans := Message{Type: MsgAck, Command: MsgReopenLogs}
			if err := access.reopen(); err != nil {
				log.Error("cannot reopen the access log; still writing to the old file", "error", err)
				ans.Error = err.Error()
			} else if access != nil {
				log.Info("log files reopened", "accesslog", access.file.Path())
			}
			if ack {
				if err := enc.Send(ans); err != nil {
					log.Warn("cannot answer reopen_logs", "error", err)
				}
			}
		}
	}
}

// heartbeatInterval keeps a worker well within its timeout (at least two
// beats per timeout), and beats now and then when the timeout is off.
func heartbeatInterval(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return 10 * time.Second
	}
	return min(max(timeout/4, 50*time.Millisecond), 10*time.Second)
}

func heartbeat(ctx context.Context, enc *Encoder, st *stats, retire <-chan struct{}, timeout time.Duration, log hclog.Logger) {
	t := time.NewTicker(heartbeatInterval(timeout))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-retire:
			retire = nil
			log.Info("max_requests reached; asking to retire", "requests", st.requests.Load())
			if err := enc.Send(Message{Type: MsgRetire, Requests: st.requests.Load(), InFlight: st.inFlight.Load()}); err != nil {
				log.Warn("cannot send retire", "error", err)
			}
		case <-t.C:
			if err := enc.Send(Message{Type: MsgHeartbeat, Requests: st.requests.Load(), InFlight: st.inFlight.Load()}); err != nil {
				log.Debug("cannot send heartbeat", "error", err)
			}
		}
	}
}

// stats counts requests for heartbeats and max_requests.
type stats struct {
	requests atomic.Uint64
	inFlight atomic.Int64
	once     sync.Once
}

// wrap counts requests through h; when limit (> 0) requests have started
// it closes retire once. The worker keeps serving until its master stops
// it, so a retiring worker fails no request.
func (st *stats) wrap(h http.Handler, limit uint64, retire chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := st.requests.Add(1)
		st.inFlight.Add(1)
		defer st.inFlight.Add(-1)
		if limit > 0 && n >= limit {
			st.once.Do(func() { close(retire) })
		}
		h.ServeHTTP(w, r)
	})
}

func workerHeader(h http.Handler, pid int) http.Handler {
	v := strconv.Itoa(pid)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(WorkerHeader, v)
		h.ServeHTTP(w, r)
	})
}

// reloader swaps a worker's pipeline in place, one reload at a time, in
// its own goroutine so that stop commands are read meanwhile.
type reloader struct {
	swap     *swapHandler
	enc      *Encoder
	env      *childEnv
	registry *pipeline.Registry
	log      hclog.Logger
	onClose  func(int, error)
	metrics  pipeline.MetricsSource
	// certs is the TLS listeners' certificate (nil without TLS), swapped
	// on every in-place reload to the pair the master sent.
	certs *listener.Certificate
}

// run obeys reload messages until ctx is done.
func (r *reloader) run(ctx context.Context, reloads <-chan Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-reloads:
			reply := Message{Type: MsgReloaded, Generation: m.Generation}
			if err := r.reload(m); err != nil {
				r.log.Error("reload failed; serving on the previous generation", "generation", m.Generation,
					"serving", r.swap.Current().gen, "error", err)
				reply = Message{Type: MsgReloadFailed, Generation: m.Generation, Error: err.Error()}
			}
			if err := r.enc.Send(reply); err != nil {
				r.log.Warn("cannot answer reload", "error", err)
			}
		}
	}
}

// reload builds generation m.Generation from the config files, checks
// they are the ones the master validated (m.ConfigSHA256, over the files
// the load read, re-read right after it), and swaps it in.
func (r *reloader) reload(m Message) error {
	log := r.log.With("generation", m.Generation)
	start := time.Now()
	// The certificate first, swapped with the pipeline below, from the
	// bytes the master read and checked (the files may be root's only):
	// failing here means a broken master; the worker then keeps both and
	// the master replaces it.
	var cert *tls.Certificate
	if r.certs != nil {
		if m.TLS == nil {
			return fmt.Errorf("load generation %d: the reload carries no TLS key pair", m.Generation)
		}
		var err error
		if cert, err = r.certs.LoadPEM(m.TLS.Cert, m.TLS.Key); err != nil {
			return fmt.Errorf("load generation %d: %w", m.Generation, err)
		}
	}
	p, err := pipeline.Load(pipeline.LoadOptions{Path: r.env.config, Name: r.env.app, Kind: pipeline.ObjectApp, Registry: r.registry, Logger: log, Files: m.Files, Metrics: r.metrics})
	if err != nil {
		return fmt.Errorf("load generation %d: %w", m.Generation, err)
	}
	if m.ConfigSHA256 != "" {
		// The digest covers the files of the new load: from the message
		// they are what the master validated, unless the load needed a
		// file the master's did not; read from disk (a config too large
		// to send) they may have changed since. Either way a mismatch is
		// refused (the master replaces this worker).
		if sum, err := ContentsDigest(p.Files, p.Contents); err != nil || sum != m.ConfigSHA256 {
			p.Close()
			if err != nil {
				return fmt.Errorf("verify generation %d: %w", m.Generation, err)
			}
			return fmt.Errorf("verify generation %d: the config files changed after the master validated them", m.Generation)
		}
	}
	if cert != nil {
		if prev := r.certs.Current(); prev.Leaf != nil && cert.Leaf != nil && !prev.Leaf.Equal(cert.Leaf) {
			log.Info("TLS certificate replaced", "serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		r.certs.Store(cert)
	}
	p.Start() // installed below: its background work (health probes) begins
	old := r.swap.Swap(newHandlerGen(m.Generation, p.Handler, p, r.onClose))
	log.Info("reloaded in place", "previous", old.gen, "load_time", time.Since(start).Round(time.Millisecond).String())
	return nil
}
