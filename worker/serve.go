package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/listener"
	"paddock/logname"
	"paddock/metrics"
	"paddock/pipeline"
)

// ErrDrainTimeout is the cause of a graceful stop's context when
// graceful_timeout passes with requests still in flight.
var ErrDrainTimeout = errors.New("graceful_timeout reached")

// errImmediate is the cause of a graceful stop cut short by an immediate
// one (TERM, then INT).
var errImmediate = errors.New("immediate stop requested")

// Options is what Serve needs.
type Options struct {
	// ConfigPath is the paste INI file.
	ConfigPath string
	// Files are config file contents by name, as the command read them
	// for the settings (pipeline.LoadOptions.Files): the pipeline is
	// built from the same bytes. Nil reads the files.
	Files map[string][]byte
	// AppName is the app section to serve; "" means main.
	AppName string
	// Settings are the resolved server settings (Resolve). Required.
	Settings *Settings
	// Logger is the root logger; Serve logs through its master and
	// listener sub-loggers. Nil discards.
	Logger hclog.Logger
	// Registry holds the factories; nil means pipeline.NewDefaultRegistry.
	Registry *pipeline.Registry
	// Version is the binary's version (paddock_build_info).
	Version string
	// Stop delivers stop requests. Nil means Serve follows the process's
	// signals (Signals): TERM graceful, INT and QUIT immediate.
	Stop <-chan Stop
	// OnReady, if set, is called once every listener accepts, with their
	// addresses (the real port of a :0 bind).
	OnReady func(addrs []net.Addr)
	// Opener creates the sockets (tableflip's Fds, so an upgrade can
	// inherit them); nil opens them directly.
	Opener listener.Opener
	// StopListening, if set, is called when a stop begins, so other
	// holders of the sockets (tableflip) close theirs too.
	StopListening func()
	// LogJSON renders access log lines as JSON (--log-format json).
	LogJSON bool
	// Stdout is where accesslog = - writes; nil means os.Stdout.
	Stdout io.Writer
	// ReopenLogs, if set, reopens the process's error log file on USR1
	// (the access log Serve reopens itself).
	ReopenLogs func() error
}

// Serve loads the app once, opens every bind, serves until a stop request,
// then stops as asked and returns nil. ctx being done counts as a graceful
// stop. A config problem is returned as the *pipeline.Error or
// pipeline.ErrorList the loader produced, so it prints as file:line lines.
func Serve(ctx context.Context, opts Options) error {
	s := opts.Settings
	if s == nil {
		return errors.New("worker: Serve: no settings")
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	mlog := log.Named(logname.Master)

	reopens := make(chan struct{}, 1) // USR1
	stop := opts.Stop
	if stop == nil {
		// Catch signals before the slow part, so a TERM during startup is
		// a clean stop rather than the default kill.
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop = signals(sctx, mlog, func() {
			select {
			case reopens <- struct{}{}:
			default: // one is pending
			}
		})
	}

	appName := opts.AppName
	if appName == "" {
		appName = "main"
	}
	// Without workers this process is the whole server: its metrics are
	// its own requests' and the master metrics of one process.
	reqMetrics, procMetrics := metrics.NewHTTP(0), metrics.NewMaster(opts.Version)
	procMetrics.SetWorkers(nil)
	source := func(context.Context) ([]byte, error) {
		snap, err := reqMetrics.Snapshot()
		if err != nil {
			return nil, err
		}
		return procMetrics.Exposition([][]byte{snap})
	}
	p, err := pipeline.Load(pipeline.LoadOptions{Path: opts.ConfigPath, Name: appName, Kind: pipeline.ObjectApp, Registry: opts.Registry, Logger: log, Metrics: source, Files: opts.Files})
	if err != nil {
		return err
	}
	defer p.Close()
	p.Start()
	LogWarnings(mlog, p.Warnings)
	access, err := openAccessLog(s, opts.LogJSON, opts.Stdout, serverVars(appName, 0, nil), mlog)
	if err != nil {
		return err
	}
	defer access.close() // last: flushes what the requests logged

	lns, err := openListeners(ctx, s, opts.Opener, log.Named(logname.Listener))
	if err != nil {
		return err
	}
	if lns, _, err = wrapListeners(lns, s, mlog); err != nil {
		return err
	}
	if s.MetricsBind != nil {
		stopMetrics, err := serveMetrics(ctx, *s.MetricsBind, opts.Opener, source, log.Named(logname.Listener))
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return err
		}
		defer stopMetrics()
	}
	srv := newServer(ctx, observe(p.Handler, access, reqMetrics), s, mlog)
	srv.start(lns)

	pid := os.Getpid()
	if s.Pidfile != "" {
		if err := writePidfile(s.Pidfile, pid); err != nil {
			srv.close()
			srv.wait()
			return fmt.Errorf("worker: %w", err)
		}
		defer func() {
			if err := removePidfile(s.Pidfile, pid); err != nil {
				mlog.Warn("cannot remove pidfile", "path", s.Pidfile, "error", err)
			}
		}()
	}
	sd := startInProcessNotify(mlog) // systemd: READY, STOPPING, watchdog (notify.go)
	defer sd.close()
	if opts.OnReady != nil {
		opts.OnReady(srv.addrs())
	}
	sd.ready()
	mlog.Info("ready", "pid", pid, "config", opts.ConfigPath, "app", appName, "listeners", len(lns))

	srv.onStop = sd.stopping(opts.StopListening)
	var reopener sync.WaitGroup
	rctx, stopReopen := context.WithCancel(ctx)
	reopener.Go(func() { reopenInProcess(rctx, reopens, opts.ReopenLogs, access, mlog) })
	defer reopener.Wait()
	defer stopReopen()
	serveErr := srv.run(ctx, stop, s.GracefulTimeout)
	mlog.Info("stopped")
	return serveErr
}

// LogWarnings logs config warnings one per line, each as check prints it
// (file:line: [section]: message), so they read the same in both places.
func LogWarnings(log hclog.Logger, warnings []*pipeline.Error) {
	for _, w := range warnings {
		log.Warn(w.Error())
	}
}

// reopenInProcess reopens the log files of in-process serving on USR1
// until ctx is done; a path that cannot be opened keeps the old file.
func reopenInProcess(ctx context.Context, reopens <-chan struct{}, errorLog func() error, access *accessLog, log hclog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reopens:
		}
		ok := true
		if errorLog != nil {
			if err := errorLog(); err != nil {
				ok = false
				log.Error("cannot reopen the error log; still writing to the old file", "error", err)
			}
		}
		if err := access.reopen(); err != nil {
			ok = false
			log.Error("cannot reopen the access log; still writing to the old file", "error", err)
		}
		if ok {
			log.Info("log files reopened")
		}
	}
}

// openListeners opens every bind through opener (nil: directly); on error
// it closes the ones it opened.
func openListeners(ctx context.Context, s *Settings, opener listener.Opener, log hclog.Logger) ([]net.Listener, error) {
	set, err := listener.Open(ctx, s.Bind, listener.Options{Backlog: s.Backlog, ReusePort: s.ReusePort}, opener)
	if err != nil {
		return nil, fmt.Errorf("worker: open listeners: %w", err)
	}
	lns := set.Listeners()
	for i, spec := range set.Specs() {
		log.Info("listening", "addr", lns[i].Addr().String(), "network", spec.Network, "bind", spec.String())
	}
	return lns, nil
}

// server serves one handler on a set of listeners, one http.Server each,
// and stops them together. It holds no process-wide state (signals,
// pidfile), so a worker process can run it on the listeners its master
// hands it.
type server struct {
	log     hclog.Logger
	servers []*http.Server
	lns     []net.Listener
	failed  chan error // Serve errors other than ErrServerClosed
	wg      sync.WaitGroup
	handler http.Handler
	s       *Settings
	baseCtx context.Context
	onStop  func() // called when a stop begins (StopListening)
	conns   *connTracker
}

// newServer prepares serving h; ctx's values (not its cancellation) reach
// every request. In front of h, outermost first: the drain tracker, the
// client_body_timeout deadline (it needs net/http's own ResponseWriter),
// the limit_request_* checks, and the forwarding headers
// (forwarded_allow_ips: the client address and scheme h sees, so the
// access log and metrics that observe wraps h in see the client, not the
// proxy).
func newServer(ctx context.Context, h http.Handler, s *Settings, log hclog.Logger) *server {
	t := newConnTracker()
	h = forwardedHandler(h, s)
	checkNofile(s, log)
	return &server{log: log, handler: t.wrap(bodyTimeout(newLimits(s).wrap(h, log), s.ClientBodyTimeout)), s: s, baseCtx: context.WithoutCancel(ctx), conns: t}
}

func (srv *server) newHTTPServer() *http.Server {
	l := newLimits(srv.s)
	hs := &http.Server{
		Handler:           srv.handler,
		ReadHeaderTimeout: srv.s.Timeout,
		IdleTimeout:       srv.s.Keepalive,
		MaxHeaderBytes:    l.maxHeaderBytes(),
		// net/http writes only errors here, without a level prefix, so
		// inference alone would log them at info.
		ErrorLog: srv.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}),
		// Requests must outlive the serving context: a graceful stop
		// cancels it, and in-flight requests are what it waits for.
		BaseContext: func(net.Listener) context.Context { return srv.baseCtx },
		ConnContext: srv.conns.connContext,
		ConnState:   releaseOnHijack(srv.conns.connState),
		// protocols: HTTP/1, HTTP/2 over TLS, HTTP/2 in clear (prior
		// knowledge); the TLS listeners offer the same through ALPN.
		Protocols: httpProtocols(srv.s),
	}
	if srv.s.Keepalive == 0 {
		hs.SetKeepAlivesEnabled(false)
	}
	return hs
}

// start serves every listener in its own goroutine; each goroutine ends
// when its http.Server is shut down or closed (wait waits for them).
func (srv *server) start(lns []net.Listener) {
	lns = guardListeners(lns, srv.s, srv.log) // strict_http (guard.go)
	srv.lns = lns
	srv.failed = make(chan error, len(lns))
	for _, ln := range lns {
		hs := srv.newHTTPServer()
		srv.servers = append(srv.servers, hs)
		srv.wg.Go(func() {
			err := hs.Serve(ln)
			if srv.conns.draining.Load() && errors.Is(err, net.ErrClosed) {
				return // drain closed the listener before Shutdown
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				srv.failed <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
		})
	}
}

func (srv *server) addrs() []net.Addr {
	out := make([]net.Addr, len(srv.lns))
	for i, ln := range srv.lns {
		out[i] = ln.Addr()
	}
	return out
}

// run serves until stop asks (or ctx is done: graceful) or a listener
// fails (then it drains and returns the error), and waits for the serving
// goroutines.
func (srv *server) run(ctx context.Context, stop <-chan Stop, grace time.Duration) error {
	defer srv.wait()
	for {
		select {
		case <-ctx.Done():
			srv.stopListening()
			srv.drain(ctx, stop, grace)
			return nil
		case st, ok := <-stop:
			if !ok {
				stop = nil // the relay ended with ctx; ctx.Done follows
				continue
			}
			srv.stopListening()
			if st == StopImmediate {
				srv.log.Info("stopping immediately")
				srv.close()
				return nil
			}
			srv.drain(ctx, stop, grace)
			return nil
		case err := <-srv.failed:
			// Drained, not closed: the connections already accepted (on
			// this listener or another) are answered. The exit status
			// still says it failed, and the master starts another worker.
			srv.log.Error("listener failed; draining", "error", err)
			srv.stopListening()
			srv.drain(ctx, stop, grace)
			return fmt.Errorf("worker: %w", err)
		}
	}
}

func (srv *server) stopListening() {
	if srv.onStop != nil {
		srv.onStop()
		srv.onStop = nil
	}
}

// drain is the graceful stop: stop accepting, let in-flight requests
// finish (net/http answers them with Connection: close and closes idle
// connections) for up to grace, then close what is left. An immediate
// stop arriving meanwhile cuts the wait short.
func (srv *server) drain(ctx context.Context, stop <-chan Stop, grace time.Duration) {
	srv.log.Info("draining", "graceful_timeout", grace.String())
	dctx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), grace, ErrDrainTimeout)
	defer cancel()
	ictx, icancel := context.WithCancelCause(dctx)
	var watch sync.WaitGroup
	defer watch.Wait() // after icancel below has ended the watcher
	defer icancel(nil)
	if stop != nil {
		watch.Go(func() {
			for {
				select {
				case <-ictx.Done():
					return
				case st, ok := <-stop:
					if !ok {
						return
					}
					if st == StopImmediate {
						icancel(errImmediate)
						return
					}
				}
			}
		})
	}
	// Stop accepting, then let accepted connections reach a handler and
	// idle keep-alive ones see their grace before Shutdown (drain.go).
	srv.conns.draining.Store(true)
	for _, ln := range srv.lns {
		ln.Close()
	}
	// Each Serve loop returns at its next Accept, after registering the
	// connection it accepted last (ConnContext): settle must see that
	// one, or Shutdown would drop its request.
	srv.wg.Wait()
	if !srv.conns.settle(ictx) {
		// A connection that never sent its request in time, or a
		// starved process: Shutdown may drop what arrives now.
		srv.log.Warn("drain: connections still unsettled; shutting down anyway", "waited", settleMax.String())
	}
	if err := srv.shutdown(ictx); err != nil {
		srv.log.Warn("drain incomplete; closing remaining connections", "error", context.Cause(ictx))
		srv.close()
		return
	}
	srv.log.Info("drained")
}

// shutdown shuts every http.Server down at once and returns the first
// error (the context's, when requests were still running).
func (srv *server) shutdown(ctx context.Context) error {
	errs := make([]error, len(srv.servers))
	var wg sync.WaitGroup
	for i, hs := range srv.servers {
		wg.Go(func() {
			errs[i] = hs.Shutdown(ctx)
			if errors.Is(errs[i], net.ErrClosed) {
				errs[i] = nil // drain closed the listener first
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (srv *server) close() {
	for _, hs := range srv.servers {
		hs.Close()
	}
}

func (srv *server) wait() { srv.wg.Wait() }
