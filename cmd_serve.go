package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
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
					return cli.Exit(fmt.Sprintf("paddock serve: --log-format %q: want text or json", v), exitUsage)
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
			"graceful_timeout), INT and QUIT stop at once, HUP reloads the config and rolls the workers,\n" +
			"TTIN/TTOU add/remove a worker, USR1 reopens logs.\n" +
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
			return cli.Exit(fmt.Sprintf("paddock serve: flag %s after CONFIG: put flags before CONFIG", a), exitUsage)
		}
	}
	switch {
	case c.NArg() == 1 && path == "":
		path = c.Args().First()
	case c.NArg() > 1 || (c.NArg() == 1 && path != ""):
		return cli.Exit("paddock serve: give CONFIG once: as the argument or with --config", exitUsage)
	case path == "":
		return cli.Exit("paddock serve: need a CONFIG argument", exitUsage)
	}
	stderr := c.App.ErrWriter

	server, loadWarnings, err := worker.LoadServer(path, c.String("server"), nil)
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	settings, warnings, err := worker.Resolve(worker.Input{Flags: commandLineSettings(c), Server: server})
	if err != nil {
		return cli.Exit(err.Error(), settingsExitCode(err))
	}
	if _, err := worker.ApplyActivation(settings); err != nil {
		return cli.Exit("paddock serve: "+err.Error(), exitFailed)
	}

	log := hclog.New(&hclog.LoggerOptions{
		Level:      settings.LogLevel,
		Output:     stderr,
		JSONFormat: c.String("log-format") == "json",
	})
	worker.LogWarnings(log.Named(logname.Master), append(loadWarnings, warnings...))

	if settings.Workers == 0 {
		if settings.User != "" || settings.Group != "" {
			return cli.Exit("paddock serve: user and group need workers >= 1 (the master keeps its own user)", exitFailed)
		}
		if o := settings.Origins["control_socket"]; o.Source != worker.SourceDefault {
			// The control API drives a master; in-process serving has none.
			log.Named(logname.Master).Warn("control_socket needs workers >= 1; no control socket is served", "where", o.Where)
		}
		upg := &lazyUpgrader{log: log}
		defer upg.Stop()
		err = worker.Serve(c.Context, worker.Options{
			ConfigPath:    path,
			AppName:       c.String("name"),
			Settings:      settings,
			Logger:        log,
			Registry:      pipeline.NewDefaultRegistry(),
			Opener:        upg,
			OnReady:       func([]net.Addr) { upg.Ready() },
			StopListening: upg.Stop,
		})
	} else {
		err = runArbiter(c.Context, c, path, settings, log)
	}
	if err == nil {
		return nil
	}
	var boot *worker.BootError
	if errors.As(err, &boot) {
		return cli.Exit("paddock serve: "+err.Error(), exitBootError)
	}
	var (
		one  *pipeline.Error
		list pipeline.ErrorList
	)
	if errors.As(err, &one) || errors.As(err, &list) {
		return cli.Exit(err.Error(), exitFailed) // file:line lines, as check prints them
	}
	return cli.Exit("paddock serve: "+err.Error(), exitFailed)
}

// runArbiter runs the master of workers (workers >= 1). HUP re-reads the
// config with the same command line and environment, so flag and
// environment overrides survive a reload (SPEC §7).
func runArbiter(ctx context.Context, c *cli.Context, path string, settings *worker.Settings, log hclog.Logger) error {
	flags := commandLineSettings(c)
	serverName := c.String("server")
	appName := c.String("name")
	sockPath, how, err := control.SocketPath(settings.ControlSocket, settings.Pidfile, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	upg := &lazyUpgrader{log: log}
	defer upg.Stop()
	var (
		arb     *worker.Arbiter
		ctl     *control.Server
		ctlDone chan error
	)
	// The control socket is created once the data sockets are (so
	// through the same tableflip upgrader, which hands it to a new binary
	// on upgrade) and before any worker starts. tableflip's Stop, when
	// the master stops, unlinks it.
	openControl := func() error {
		ln, err := control.Listen(ctx, sockPath, upg)
		if err != nil {
			return fmt.Errorf("control socket %s (%s): %w", sockPath, how, err)
		}
		ctl = control.NewServer(control.ServerOptions{Controller: arb, Logger: log, Version: version})
		ctlDone = make(chan error, 1)
		go func() { ctlDone <- ctl.Serve(ln) }()
		log.Named(logname.Control).Info("control socket", "path", sockPath, "from", how)
		return nil
	}
	arb, err = worker.NewArbiter(worker.ArbiterOptions{
		ConfigPath:    path,
		AppName:       appName,
		ServerName:    serverName,
		Settings:      settings,
		Logger:        log,
		LogJSON:       c.String("log-format") == "json",
		Registry:      pipeline.NewDefaultRegistry(),
		Opener:        upg,
		OnReady:       func([]net.Addr) { upg.Ready() },
		StopListening: upg.Stop,
		OnListening:   openControl,
		Version:       version,
		Stderr:        c.App.ErrWriter,
		Reload: func() (*worker.Settings, error) {
			server, _, err := worker.LoadServer(path, serverName, nil)
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
			p, err := pipeline.Load(pipeline.LoadOptions{Path: path, Name: appName, Kind: pipeline.ObjectApp})
			if err != nil {
				return nil, err
			}
			p.Close()
			return ns, nil
		},
	})
	if err != nil {
		return err
	}
	err = arb.Run(ctx)
	if ctl != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if serr := ctl.Shutdown(sctx); serr != nil {
			log.Named(logname.Control).Warn("control socket shutdown", "error", serr)
		}
		cancel()
		if serr := <-ctlDone; serr != nil {
			log.Named(logname.Control).Warn("control socket", "error", serr)
		}
	}
	return err
}

// lazyUpgrader is the process's tableflip upgrader, created when the first
// socket is opened (after the config validated): every listening socket is
// created through its Fds, so the binary-upgrade path can hand them to a
// new binary. tableflip allows one upgrader per process.
type lazyUpgrader struct {
	log hclog.Logger

	mu  sync.Mutex
	upg *tableflip.Upgrader
}

var _ listener.Opener = (*lazyUpgrader)(nil)

// ListenWithCallback creates or inherits a socket through tableflip.
func (l *lazyUpgrader) ListenWithCallback(network, addr string, callback func(network, addr string) (net.Listener, error)) (net.Listener, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.upg == nil {
		upg, err := tableflip.New(tableflip.Options{})
		if err != nil {
			return nil, fmt.Errorf("paddock serve: %w", err)
		}
		l.upg = upg
	}
	return l.upg.Fds.ListenWithCallback(network, addr, callback)
}

// Ready tells tableflip the process serves; it closes inherited sockets
// nobody claimed (PITFALLS E3).
func (l *lazyUpgrader) Ready() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.upg == nil {
		return
	}
	if err := l.upg.Ready(); err != nil {
		l.log.Named(logname.Master).Warn("tableflip ready", "error", err)
	}
}

// Stop is a real shutdown: tableflip closes its copies of the sockets and
// unlinks unix socket files.
func (l *lazyUpgrader) Stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.upg == nil {
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
			code := worker.RunWorker(c.Context, worker.ChildOptions{Stderr: c.App.ErrWriter})
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

// settingsExitCode is exitUsage when every problem is a flag (a bad
// command line), else exitFailed.
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
			return exitFailed
		}
	}
	return exitUsage
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
