package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"paddock/control"
	"paddock/listener"
	"paddock/logname"
	"paddock/pipeline"
)

// The Arbiter is what the control socket drives. Every endpoint runs the
// same function, in the Run goroutine, as the signal that does the same
// thing (TTIN ≡ AddWorkers(1), TTOU ≡ RemoveWorkers(1), HUP ≡ Reload,
// USR1 ≡ ReopenLogs, TERM ≡ Stop graceful, INT/QUIT ≡ Stop immediate).
var _ control.Controller = (*Arbiter)(nil)

// maxWorkers bounds the target, like the workers setting.
const maxWorkers = 1 << 16

// errStopping is returned by requests that need a running master.
var errStopping = fmt.Errorf("worker: the master is stopping: %w", control.ErrBusy)

// stop begins a stop (TERM, INT, QUIT, ctx done, Stop): graceful drains
// within grace (0: graceful_timeout), immediate closes everything.
func (a *Arbiter) stop(graceful bool, grace time.Duration) {
	if graceful {
		if a.mode == modeRunning {
			a.stopGrace = grace
		}
		a.stopAll(modeGraceful)
		return
	}
	a.stopAll(modeImmediate)
}

// changeTarget changes the worker count by delta (TTIN, TTOU,
// AddWorkers, RemoveWorkers), never below 1; the oldest go first.
func (a *Arbiter) changeTarget(delta int, why string) (previous, target int, err error) {
	return a.setTarget(a.target+delta, why)
}

// setTarget sets the worker count (at least 1) and brings the workers to
// it.
func (a *Arbiter) setTarget(n int, why string) (previous, target int, err error) {
	previous = a.target
	if a.mode != modeRunning {
		return previous, previous, errStopping
	}
	n = min(max(1, n), maxWorkers)
	a.target = n
	if n != previous {
		a.log.Info("worker count changed", "previous", previous, "target", n, "by", why)
	}
	a.manage()
	return previous, n, nil
}

// Status is GET /v1/status.
func (a *Arbiter) Status(ctx context.Context) (control.Status, error) {
	return call(a, ctx, a.status)
}

func (a *Arbiter) status() control.Status {
	state := a.mode.String()
	if a.mode == modeRunning && !a.everReady {
		state = "starting"
	}
	st := control.Status{
		Pid:        os.Getpid(),
		Version:    a.opts.Version,
		State:      state,
		UptimeS:    a.opts.now().Sub(a.started).Seconds(),
		Generation: a.generation,
		Config:     control.ConfigRef{Path: a.opts.ConfigPath, SHA256: a.cfg.sum},
		Workers:    control.WorkerCounts{Target: a.target},
		Listeners:  a.listeners(),
	}
	if a.lastReload != nil {
		r := *a.lastReload
		st.LastReload = &r
	}
	for _, w := range a.workers {
		switch w.state {
		case stateReady:
			st.Workers.Ready++
		case stateBooting:
			st.Workers.Booting++
		case stateDraining:
			st.Workers.Draining++
		}
	}
	return st
}

// Workers is GET /v1/workers, oldest first.
func (a *Arbiter) Workers(ctx context.Context) ([]control.Worker, error) {
	ws, err := call(a, ctx, func() []control.Worker {
		now := a.opts.now()
		out := []control.Worker{}
		for _, w := range a.sorted() {
			state := w.state.String()
			if w.retiring && w.state != stateDraining {
				state = "retiring"
			}
			out = append(out, control.Worker{ID: w.id, Pid: w.proc.Pid(), Generation: w.generation, State: state,
				StartedAt: w.started, Requests: w.requests, InFlight: w.inFlight, LastHeartbeatS: now.Sub(w.lastBeat).Seconds()})
		}
		return out
	})
	if err != nil {
		return nil, err
	}
	for i := range ws { // outside the Run goroutine: /proc reads
		ws[i].RSSBytes = rssBytes(ws[i].Pid)
	}
	return ws, nil
}

// rssBytes is VmRSS of pid from /proc/PID/status, 0 when unknown.
func rssBytes(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest) // "12345 kB"
		if len(f) == 0 {
			return 0
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0
		}
		if len(f) > 1 && strings.EqualFold(f[1], "kB") {
			n *= 1024
		}
		return n
	}
	return 0
}

type targetReply struct {
	previous, target int
	err              error
}

func (a *Arbiter) targetRequest(ctx context.Context, fn func() (int, int, error)) (int, int, error) {
	r, err := call(a, ctx, func() targetReply { p, t, err := fn(); return targetReply{p, t, err} })
	if err != nil {
		return 0, 0, err
	}
	return r.previous, r.target, r.err
}

// AddWorkers raises the target by n (TTIN does it by 1).
func (a *Arbiter) AddWorkers(ctx context.Context, n int) (previous, target int, err error) {
	if n < 1 || n > maxWorkers {
		return 0, 0, fmt.Errorf("worker: add %d workers: want a count from 1 to %d: %w", n, maxWorkers, control.ErrBadRequest)
	}
	return a.targetRequest(ctx, func() (int, int, error) { return a.changeTarget(n, "request") })
}

// RemoveWorkers lowers the target by n, never below 1 (TTOU does it by
// 1); the oldest workers go first, gracefully.
func (a *Arbiter) RemoveWorkers(ctx context.Context, n int) (previous, target int, err error) {
	if n < 1 || n > maxWorkers {
		return 0, 0, fmt.Errorf("worker: remove %d workers: want a count from 1 to %d: %w", n, maxWorkers, control.ErrBadRequest)
	}
	return a.targetRequest(ctx, func() (int, int, error) { return a.changeTarget(-n, "request") })
}

// SetTarget sets the number of workers (1 or more).
func (a *Arbiter) SetTarget(ctx context.Context, n int) (previous, target int, err error) {
	if n < 1 || n > maxWorkers {
		return 0, 0, fmt.Errorf("worker: set %d workers: want a count from 1 to %d: %w", n, maxWorkers, control.ErrBadRequest)
	}
	return a.targetRequest(ctx, func() (int, int, error) { return a.setTarget(n, "request") })
}

// KillWorker stops the worker with pid, gracefully or with SIGKILL; the
// master replaces it at once.
func (a *Arbiter) KillWorker(ctx context.Context, pid int, force bool) error {
	res, err := call(a, ctx, func() error {
		w := a.workers[pid]
		if w == nil {
			return fmt.Errorf("worker: pid %d: %w", pid, control.ErrNoSuchWorker)
		}
		if force {
			a.kill(w, "killed by request")
		} else if w.state != stateDraining {
			a.drain(w, "stopped by request")
		}
		a.manage()
		return nil
	})
	if err != nil {
		return err
	}
	return res
}

// CheckConfig validates the config at path ("" is the running one)
// without applying it: the pipeline (every problem, not only the first)
// and the [server] settings as the file sets them.
func (a *Arbiter) CheckConfig(ctx context.Context, path string) (control.CheckResult, error) {
	if path == "" {
		path = a.opts.ConfigPath
	}
	if err := ctx.Err(); err != nil {
		return control.CheckResult{}, err
	}
	p, err := pipeline.Check(pipeline.LoadOptions{Path: path, Name: a.opts.AppName, Kind: pipeline.ObjectApp, Registry: a.opts.Registry})
	var problems *control.ConfigError
	if err != nil {
		problems = configError(err).(*control.ConfigError)
	}
	res := control.CheckResult{OK: true, Path: path, Warnings: []control.ConfigProblem{}}
	if p != nil {
		for _, w := range p.Warnings {
			res.Warnings = append(res.Warnings, problem(w))
		}
	}
	if problems == nil || !unreadable(err) {
		srv, warns, serr := LoadServer(path, a.opts.ServerName, a.opts.Registry)
		if serr == nil {
			var w2 []*pipeline.Error
			_, w2, serr = Resolve(Input{Server: srv})
			warns = append(warns, w2...)
		}
		for _, w := range warns {
			res.Warnings = append(res.Warnings, problem(w))
		}
		if serr != nil {
			sp := configError(serr).(*control.ConfigError)
			if problems == nil {
				problems = sp
			} else {
				for _, q := range sp.Problems {
					if !slices.Contains(problems.Problems, q) {
						problems.Problems = append(problems.Problems, q)
					}
				}
			}
		}
	}
	if problems != nil {
		return control.CheckResult{}, problems
	}
	return res, nil
}

// unreadable reports a load that failed on the file itself.
func unreadable(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EISDIR)
}

// Stop is TERM (graceful; grace 0 means graceful_timeout) or INT/QUIT
// (immediate). It returns once the stop has begun; Run returns when it
// is over. The workers enforce graceful_timeout themselves; a shorter
// grace makes the master SIGKILL them at grace + 1 s.
func (a *Arbiter) Stop(ctx context.Context, graceful bool, grace time.Duration) error {
	if grace < 0 {
		return fmt.Errorf("worker: stop: negative grace %s: %w", grace, control.ErrBadRequest)
	}
	return a.do(ctx, func() { a.stop(graceful, grace) })
}

// Config is the effective settings and where each came from.
func (a *Arbiter) Config(ctx context.Context) (control.ConfigView, error) {
	return call(a, ctx, func() control.ConfigView {
		view := control.ConfigView{Path: a.opts.ConfigPath, Settings: make(map[string]control.SettingValue, len(a.settings.Origins))}
		for name, o := range a.settings.Origins {
			view.Settings[name] = control.SettingValue{Value: o.Value, Source: string(o.Source), Where: o.Where}
		}
		return view
	})
}

// ConfigFile is the config file as loaded at start or by the last good
// reload.
func (a *Arbiter) ConfigFile(ctx context.Context) ([]byte, error) {
	data, err := call(a, ctx, func() []byte { return a.cfg.data })
	return slices.Clone(data), err
}

// Pipeline is the composed graph of the config file in format json, text
// or dot. It is drawn from the file at the config path (PasteDeploy's
// composition, without building the factories).
func (a *Arbiter) Pipeline(ctx context.Context, format string) ([]byte, error) {
	path, name := a.opts.ConfigPath, a.opts.AppName
	switch format {
	case "", "json":
		out, ok := pipeline.GraphJSON(path, name, pipeline.ObjectApp)
		if !ok {
			_, err := pipeline.Graph(path, name, pipeline.ObjectApp)
			return nil, configError(err)
		}
		return out, nil
	case "text", "dot":
		g, err := pipeline.Graph(path, name, pipeline.ObjectApp)
		if err != nil {
			return nil, configError(err)
		}
		if format == "dot" {
			return []byte(pipeline.GraphDot(g)), nil
		}
		return []byte(pipeline.GraphText(g)), nil
	}
	return nil, fmt.Errorf("worker: pipeline format %q: want json, text or dot: %w", format, control.ErrBadRequest)
}

// Listeners is GET /v1/listeners.
func (a *Arbiter) Listeners(ctx context.Context) ([]control.Listener, error) {
	return call(a, ctx, a.listeners)
}

func (a *Arbiter) listeners() []control.Listener {
	out := []control.Listener{}
	if a.set == nil {
		return out
	}
	specs := a.set.Specs()
	for i, ln := range a.set.Listeners() {
		l := control.Listener{Addr: ln.Addr().String(), TLS: a.settings.CertFile != ""}
		if i < len(specs) {
			l.Bind, l.Network = specs[i].String(), specs[i].Network
		}
		out = append(out, l)
	}
	return out
}

// useListeners makes set the master's listeners: workers started from
// now on get its sockets.
func (a *Arbiter) useListeners(set *listener.Set) {
	a.set = set
	if sp, ok := a.opts.spawn.(*execSpawner); ok {
		sp.set = set
	}
	llog := a.opts.Logger.Named(logname.Listener)
	for i, ln := range set.Listeners() {
		llog.Info("listening", "addr", ln.Addr().String(), "bind", set.Specs()[i].String())
	}
}
