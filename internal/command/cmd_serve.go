package command

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"context"

	"github.com/cloudflare/tableflip"
	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"paddock/control"
	"paddock/listener"
	"paddock/logname"
	"paddock/pipeline"
	"paddock/worker"
)

func serveCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.PathFlag{Name: "config", Aliases: []string{"c"}, EnvVars: []string{"PADDOCK_CONFIG"}, Usage: "the paste INI `FILE` to serve (or give it as the argument)"},
		&cli.StringFlag{Name: "name", Aliases: []string{"n"}, EnvVars: []string{"PADDOCK_NAME"}, Value: "main", Usage: "the app `NAME` to serve"},
		&cli.StringFlag{Name: "server", EnvVars: []string{"PADDOCK_SERVER"}, Value: "main", Usage: "read settings from [server:`NAME`]"},
		&cli.StringFlag{Name: "log-format", EnvVars: []string{"PADDOCK_LOG_FORMAT"}, Value: "text", Usage: "log `FORMAT`: text or json",
			Action: func(_ *cli.Context, v string) error {
				if v != "text" && v != "json" {
					return cli.Exit(fmt.Sprintf("paddock serve: --log-format %q: want text or json", v), ExitUsage)
				}
				return nil
			}},
	}
	for _, st := range worker.Known() {
		flags = append(flags, settingFlag(st))
	}
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve CONFIG in the foreground",
		ArgsUsage: "CONFIG",
		Description: "Loads the app NAME (default main) from CONFIG and serves it on every bind until a signal stops it.\n" +
			"With workers >= 1 (the default) a master process supervises that many worker processes (gunicorn's\n" +
			"pre-fork model); workers = 0 serves in this process. TERM stops gracefully (in-flight requests get\n" +
			"graceful_timeout), INT and QUIT stop at once, HUP reloads the config (in place; workers are rolled when\n" +
			"their settings change), as does an edit of CONFIG or a file it reads unless watch_config is off,\n" +
			"TTIN/TTOU add/remove a worker, USR1 reopens logs, USR2 (or 'paddock ctl upgrade') upgrades the binary\n" +
			"with zero downtime: the executable at the path this master was started from is started with the\n" +
			"same arguments, inherits every socket and the control socket, reads CONFIG afresh, and once its\n" +
			"workers serve the old master drains and exits (upgrade_timeout bounds the new binary's start).\n" +
			"Settings use gunicorn's names; each comes from its flag, else PADDOCK_<NAME> in the environment,\n" +
			"else [server:main] in CONFIG, else the default. Exit 0 after a requested stop; 1 when the config\n" +
			"is broken (one 'file:line: [section]: message' line per problem) or serving fails; 2 for a bad flag;\n" +
			"3 when no worker could boot at first start.",
		Flags:  flags,
		Action: serveAction,
	}
}

// settingFlag declares the flag of a server setting. Every setting flag is
// a string (a list for bind) so that worker.Resolve parses flag,
// environment and file values alike (durations as seconds or 1m30s) and
// names the flag in its errors.
func settingFlag(st worker.Setting) cli.Flag {
	switch {
	case st.List:
		return &cli.StringSliceFlag{Name: st.Flags[0], Aliases: st.Flags[1:], EnvVars: st.Envs, Usage: st.Usage, DefaultText: st.Default}
	case st.Bool:
		return switchFlag{&cli.GenericFlag{Name: st.Flags[0], Aliases: st.Flags[1:], EnvVars: st.Envs, Usage: st.Usage, DefaultText: st.Default, Value: &switchValue{}}}
	}
	return &cli.StringFlag{Name: st.Flags[0], Aliases: st.Flags[1:], EnvVars: st.Envs, Usage: st.Usage, DefaultText: st.Default}
}

func serveAction(c *cli.Context) error {
	path := c.Path("config")
	for _, a := range c.Args().Tail() {
		if strings.HasPrefix(a, "-") {
			// urfave/cli stops parsing flags at the first argument.
			return cli.Exit(fmt.Sprintf("paddock serve: flag %s after CONFIG: put flags before CONFIG", a), ExitUsage)
		}
	}
	switch {
	case c.NArg() == 1 && path == "":
		path = c.Args().First()
	case c.NArg() > 1 || (c.NArg() == 1 && path != ""):
		return cli.Exit("paddock serve: give CONFIG once: as the argument or with --config", ExitUsage)
	case path == "":
		return cli.Exit("paddock serve: need a CONFIG argument", ExitUsage)
	}
	stderr := c.App.ErrWriter

	// The config file is read once at start: the settings here and the
	// pipeline the master validates are built from the same bytes, so a
	// file caught half-written cannot give them different contents. (An
	// unreadable file is left to the load, which says why.)
	var startFiles map[string][]byte
	if data, err := pipeline.ReadRegularFile(path); err == nil {
		startFiles = map[string][]byte{path: data}
	}
	server, loadWarnings, err := worker.LoadServerFrom(path, c.String("server"), nil, startFiles)
	if err != nil {
		return cli.Exit(err.Error(), ExitFailed)
	}
	settings, warnings, err := worker.Resolve(worker.Input{Flags: commandLineSettings(c), Server: server})
	if err != nil {
		return cli.Exit(err.Error(), settingsExitCode(err))
	}
	if _, err := worker.ApplyActivation(settings); err != nil {
		return cli.Exit("paddock serve: "+err.Error(), ExitFailed)
	}

	// The error log (errorlog: stderr or a file) takes the master's and,
	// through the master, the workers' log lines; a path that cannot be
	// opened is a config error naming it (worker/logs.go).
	errLog, err := worker.OpenErrorLog(settings, stderr)
	if err != nil {
		return cli.Exit(err.Error(), ExitFailed)
	}
	defer func() {
		if err := errLog.Close(); err != nil {
			fmt.Fprintf(stderr, "paddock serve: error log %s: %v\n", errLog.Path(), err)
		}
	}()
	log := hclog.New(&hclog.LoggerOptions{
		Level:      settings.LogLevel,
		Output:     errLog.Writer(),
		JSONFormat: c.String("log-format") == "json",
	})
	errLog.SetLogger(log.Named(logname.Master))
	worker.LogWarnings(log.Named(logname.Master), append(loadWarnings, warnings...))
	if err := worker.PrepareLogs(settings); err != nil {
		return cli.Exit(err.Error(), ExitFailed)
	}

	if settings.Workers == 0 {
		if settings.User != "" || settings.Group != "" {
			return cli.Exit("paddock serve: user and group need workers >= 1 (the master keeps its own user)", ExitFailed)
		}
		if o := settings.Origins["control_socket"]; o.Source != worker.SourceDefault {
			// The control API drives a master; in-process serving has none.
			log.Named(logname.Master).Warn("control_socket needs workers >= 1; no control socket is served", "where", o.Where)
		}
		upg := &lazyUpgrader{log: log, timeout: settings.UpgradeTimeout}
		defer upg.Stop()
		err = worker.Serve(c.Context, worker.Options{
			ConfigPath:    path,
			Files:         startFiles,
			AppName:       c.String("name"),
			Settings:      settings,
			Logger:        log,
			Registry:      pipeline.NewDefaultRegistry(),
			Version:       build.Version,
			Opener:        upg,
			OnReady:       func([]net.Addr) { _ = upg.Ready() },
			StopListening: upg.Stop,
			LogJSON:       c.String("log-format") == "json",
			Stdout:        c.App.Writer,
			ReopenLogs:    errLog.Reopen,
		})
	} else {
		err = runArbiter(c.Context, c, path, startFiles, settings, log, errLog)
	}
	if err == nil {
		return nil
	}
	var boot *worker.BootError
	if errors.As(err, &boot) {
		return cli.Exit("paddock serve: "+err.Error(), ExitBootError)
	}
	var (
		one  *pipeline.Error
		list pipeline.ErrorList
	)
	if errors.As(err, &one) || errors.As(err, &list) {
		return cli.Exit(err.Error(), ExitFailed) // file:line lines, as check prints them
	}
	return cli.Exit("paddock serve: "+err.Error(), ExitFailed)
}

// runArbiter runs the master of workers (workers >= 1). A reload (HUP,
// ctl reload, or the config watcher of cmd_watch.go) re-reads the file
// and resolves it again with the same command line and environment, so
// the precedence of paddock(8) ENVIRONMENT holds across reloads: a setting given by a
// flag or a PADDOCK_* variable keeps that value whatever the file now
// says; only settings the file (or the default) decided follow the edit.
func runArbiter(ctx context.Context, c *cli.Context, path string, startFiles map[string][]byte, settings *worker.Settings, log hclog.Logger, errLog *worker.ErrorLog) error {
	flags := commandLineSettings(c)
	serverName := c.String("server")
	appName := c.String("name")
	sockPath, how, err := control.SocketPath(settings.ControlSocket, settings.Pidfile, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	upg := &lazyUpgrader{log: log, timeout: settings.UpgradeTimeout}
	defer upg.Stop()
	var (
		arb     *worker.Arbiter
		ctl     *control.Server
		ctlLn   *handoffListener
		ctlDone chan error
		ctlSock *control.Socket
	)
	// The control socket is created once the data sockets are (so
	// through the same tableflip upgrader, which hands it to a new binary
	// on upgrade) and before any worker starts. tableflip's Stop, when
	// the master stops, unlinks it.
	openControl := func() error {
		ln, err := control.ListenSocket(ctx, sockPath, upg)
		if err != nil {
			return fmt.Errorf("control socket %s (%s): %w", sockPath, how, err)
		}
		ctl = control.NewServer(control.ServerOptions{Controller: arb, Logger: log, Version: build.Version})
		ctlDone = make(chan error, 1)
		ctlSock = ln
		ctlLn = &handoffListener{Listener: ln}
		go func() { ctlDone <- ctl.Serve(ctlLn) }()
		log.Named(logname.Control).Info("control socket", "path", sockPath, "from", how)
		return nil
	}
	// recreateControl binds the control socket again when its file was
	// deleted (USR1 and every reload call it; both run in the arbiter's
	// goroutine, like openControl).
	recreateControl := func() {
		if ctlSock == nil {
			return
		}
		switch again, err := ctlSock.Recreate(ctx); {
		case err != nil:
			log.Named(logname.Control).Error("cannot recreate the control socket", "path", sockPath, "error", err)
		case again:
			log.Named(logname.Control).Warn("control socket file was deleted; recreated it", "path", sockPath)
		}
	}
	arb, err = worker.NewArbiter(worker.ArbiterOptions{
		ConfigPath:    path,
		StartFiles:    startFiles,
		AppName:       appName,
		ServerName:    serverName,
		Settings:      settings,
		Logger:        log,
		LogJSON:       c.String("log-format") == "json",
		Registry:      pipeline.NewDefaultRegistry(),
		Opener:        upg,
		OnReady:       func([]net.Addr) { _ = upg.Ready() },
		StopListening: upg.Stop,
		OnListening:   openControl,
		Upgrader:      upg,
		// The new master, ready, accepts on the same control socket: this
		// master stops accepting there (the request in flight, ctl
		// upgrade's, is still answered), so only the new one answers
		// who it is.
		AfterUpgrade: func(ctx context.Context) (int, string, error) {
			if ctlLn != nil {
				ctlLn.handOver()
			}
			return askNewMaster(ctx, sockPath)
		},
		Version: build.Version,
		// Workers log into the error log (through the master when it is
		// a file); accesslog = - is the master's stdout.
		Stderr:     errLog.Writer(),
		Stdout:     c.App.Writer,
		ReopenLogs: func() error { recreateControl(); return errLog.Reopen() },
		Reload: func(files map[string][]byte) (*worker.Settings, error) {
			recreateControl()
			server, _, err := worker.LoadServerFrom(path, serverName, nil, files)
			if err != nil {
				return nil, err
			}
			ns, _, err := worker.Resolve(worker.Input{Flags: flags, Server: server})
			if err != nil {
				return nil, err
			}
			if _, err := worker.ApplyActivation(ns); err != nil {
				return nil, err
			}
			// A new accesslog must be writable before workers roll onto it.
			if err := worker.PrepareLogs(ns); err != nil {
				return nil, err
			}
			// The arbiter validates the whole pipeline itself.
			return ns, nil
		},
	})
	if err != nil {
		return err
	}
	stopWatching := startConfigWatcher(ctx, arb, settings, log)
	err = arb.Run(ctx)
	stopWatching()
	if ctl != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if serr := ctl.Shutdown(sctx); serr != nil {
			log.Named(logname.Control).Warn("control socket shutdown", "error", serr)
		}
		cancel()
		if serr := <-ctlDone; serr != nil && !(ctlLn.handedOver.Load() && errors.Is(serr, net.ErrClosed)) {
			log.Named(logname.Control).Warn("control socket", "error", serr)
		}
	}
	return err
}

// askNewMaster asks the master answering on the control socket at path,
// which must not be this process (it stopped accepting there), for its pid
// and version, retrying until ctx ends.
func askNewMaster(ctx context.Context, path string) (int, string, error) {
	c := &control.Client{Path: path, Timeout: time.Second}
	defer c.CloseIdleConnections()
	var last error
	for {
		st, err := c.Status(ctx)
		switch {
		case err != nil:
			last = err
		case st.Pid == os.Getpid():
			last = errors.New("this master still answered")
		default:
			return st.Pid, st.Version, nil
		}
		select {
		case <-ctx.Done():
			return 0, "", fmt.Errorf("ask the new master on %s: %w (last: %w)", path, context.Cause(ctx), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// handoffListener is the control socket's listener in this master; on an
// upgrade it is closed before the control server shuts down (handOver), so
// the new master alone accepts while the request in flight is answered.
// Closing it does not unlink the socket file (tableflip turned that off,
// and an inherited listener never unlinks).
type handoffListener struct {
	net.Listener
	once       sync.Once
	err        error
	handedOver atomic.Bool
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

func (l *handoffListener) handOver() {
	l.handedOver.Store(true)
	_ = l.Close()
}

// lazyUpgrader is the process's tableflip upgrader, created when the first
// socket is opened (after the config validated): every listening socket is
// created through its Fds, so the binary-upgrade path can hand them to a
// new binary. tableflip allows one upgrader per process. It is the
// arbiter's worker.Upgrader.
type lazyUpgrader struct {
	log hclog.Logger
	// timeout is upgrade_timeout (tableflip's UpgradeTimeout; 0: its
	// default, a minute).
	timeout time.Duration

	mu       sync.Mutex
	upg      *tableflip.Upgrader
	upgraded bool // an Upgrade succeeded: the sockets are the new master's too
}

var (
	_ listener.Opener = (*lazyUpgrader)(nil)
	_ worker.Upgrader = (*lazyUpgrader)(nil)
)

// ensureLocked creates the tableflip upgrader; l.mu is held.
func (l *lazyUpgrader) ensureLocked() (*tableflip.Upgrader, error) {
	if l.upg == nil {
		upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: l.timeout})
		if err != nil {
			return nil, fmt.Errorf("paddock serve: %w", err)
		}
		l.upg = upg
	}
	return l.upg, nil
}

// ListenWithCallback creates or inherits a socket through tableflip. An
// inherited socket that no longer listens is one the old master retired
// (a bind its config removed: shut down, but tableflip still held a
// duplicate under the address): it is closed and the address bound anew
// for this master and the next.
func (l *lazyUpgrader) ListenWithCallback(network, addr string, callback func(network, addr string) (net.Listener, error)) (net.Listener, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	upg, err := l.ensureLocked()
	if err != nil {
		return nil, err
	}
	ln, err := upg.Fds.ListenWithCallback(network, addr, callback)
	if err != nil || listener.Listening(ln) {
		return ln, err
	}
	l.log.Named(logname.Listener).Info("inherited socket no longer listens (a retired bind); binding the address anew", "network", network, "addr", addr)
	ln.Close()
	fresh, err := callback(network, addr)
	if err != nil {
		return nil, err
	}
	tln, ok := fresh.(tableflip.Listener)
	if !ok {
		fresh.Close()
		return nil, fmt.Errorf("listener %s/%s: %T has no file descriptor", network, addr, fresh)
	}
	if err := upg.Fds.AddListener(network, addr, tln); err != nil {
		fresh.Close()
		return nil, fmt.Errorf("listener %s/%s: %w", network, addr, err)
	}
	return fresh, nil
}

// HasParent reports whether this process is the new master of an upgrade
// (tableflip's marker in the environment).
func (l *lazyUpgrader) HasParent() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	upg, err := l.ensureLocked()
	return err == nil && upg.HasParent()
}

// Upgrade starts the new binary and blocks until it is ready, has
// failed, or missed upgrade_timeout (tableflip kills it then). It holds
// no lock while it waits, so Stop can interrupt it.
func (l *lazyUpgrader) Upgrade() error {
	l.mu.Lock()
	upg := l.upg
	l.mu.Unlock()
	if upg == nil {
		return errors.New("no socket was created through tableflip")
	}
	if err := upg.Upgrade(); err != nil {
		return fmt.Errorf("tableflip: %w", err)
	}
	l.mu.Lock()
	l.upgraded = true
	l.mu.Unlock()
	return nil
}

// Exit is closed when this process should exit (after a successful
// Upgrade, or Stop); never before the upgrader exists.
func (l *lazyUpgrader) Exit() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.upg == nil {
		return nil
	}
	return l.upg.Exit()
}

// Ready tells tableflip the process serves; it closes inherited sockets
// nobody claimed (docs/pitfalls.md E3) and, in the new master of an upgrade,
// tells the old one.
func (l *lazyUpgrader) Ready() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.upg == nil {
		return nil
	}
	if err := l.upg.Ready(); err != nil {
		l.log.Named(logname.Master).Warn("tableflip ready", "error", err)
		return fmt.Errorf("tableflip ready: %w", err)
	}
	return nil
}

// Stop is a real shutdown: tableflip closes its copies of the sockets and
// unlinks unix socket files. After a successful Upgrade it does nothing:
// tableflip already closed its copies without unlinking, and the socket
// files (the control socket's too) are the new master's (docs/pitfalls.md D7).
func (l *lazyUpgrader) Stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.upg == nil || l.upgraded {
		return
	}
	l.upg.Stop()
	// tableflip closes and unlinks in its own goroutine; wait for it, so
	// the socket files are gone when the process exits.
	select {
	case <-l.upg.Exit():
	case <-time.After(2 * time.Second):
		l.log.Named(logname.Master).Warn("tableflip did not stop within 2s")
	}
}

// workerCommand is the hidden subcommand a master re-executes itself with
// to start a worker; everything it needs comes from the environment
// contract in worker/child.go.
func workerCommand() *cli.Command {
	return &cli.Command{
		Name:            worker.WorkerCommand,
		Hidden:          true,
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			code := worker.RunWorker(c.Context, worker.ChildOptions{Stderr: c.App.ErrWriter, Stdout: c.App.Writer})
			if code != worker.ExitWorkerOK {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

// commandLineSettings returns the setting values typed on the command line.
// urfave/cli folds PADDOCK_* variables into the flags; a value equal to its
// variable's is left out, so worker.Resolve reads it from the environment
// and reports its origin as env. (urfave/cli v2 cannot tell the two apart;
// the one case this gets wrong, the same value given both ways, has the
// same effect either way.)
func commandLineSettings(c *cli.Context) map[string]string {
	out := make(map[string]string)
	for _, st := range worker.Known() {
		name := st.Flags[0]
		if !c.IsSet(name) {
			continue
		}
		var v string
		switch {
		case st.List:
			v = strings.Join(c.StringSlice(name), " ")
		case st.Bool:
			v = c.Generic(name).(*switchValue).text
		default:
			v = c.String(name)
		}
		if fromEnv(st, v) {
			continue
		}
		out[st.Name] = v
	}
	return out
}

func fromEnv(st worker.Setting, v string) bool {
	for _, env := range st.Envs {
		ev, ok := os.LookupEnv(env)
		if !ok {
			continue
		}
		if st.List {
			return slices.Equal(pipeline.SplitList(ev), pipeline.SplitList(v))
		}
		return ev == v
	}
	return false
}

// settingsExitCode is ExitUsage when every problem is a flag (a bad
// command line), else ExitFailed.
func settingsExitCode(err error) int {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var se *worker.SettingError
		if !errors.As(e, &se) || se.Origin.Source != worker.SourceFlag {
			return ExitFailed
		}
	}
	return ExitUsage
}

// switchValue is a flag value that, like a bool flag, may be given alone
// (--reuse-port means true), while keeping the text of an explicit value
// (--reuse-port=no, PADDOCK_REUSE_PORT=yes) for worker.Resolve to parse
// the way the file is parsed (Paste's yes/on/1...).
type switchValue struct{ text string }

func (v *switchValue) Set(s string) error { v.text = s; return nil }
func (v *switchValue) String() string     { return v.text }

// IsBoolFlag tells the flag package the value is optional.
func (v *switchValue) IsBoolFlag() bool { return true }

// switchFlag shows a switchValue flag in help as a switch (no placeholder).
type switchFlag struct{ *cli.GenericFlag }

func (f switchFlag) TakesValue() bool { return false }

// String renders the help line through switchFlag's own TakesValue.
func (f switchFlag) String() string { return cli.FlagStringer(f) }
