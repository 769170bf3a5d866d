package worker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
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

// rollWaiter is a Reload call waiting until generation gen is rolled out:
// no live worker of an older generation, and target workers ready.
type rollWaiter struct {
	ctx  context.Context
	gen  int
	err  error
	done chan struct{} // closed by the Run goroutine
}

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

// reloadAckTimeout bounds how long the master waits for a worker to
// answer an in-place reload; one that does not is rolled.
const reloadAckTimeout = 10 * time.Second

// reloadRequest is what started a reload and what it reads.
type reloadRequest struct {
	// by names who asked, for the log: "signal HUP", "request", "config
	// change".
	by string
	// saved, when set, are the settled contents of the watched files
	// (reload.Watcher.Snapshot), by absolute path: the config's load uses
	// these bytes (a file the snapshot lacks, such as one that could not
	// be read then, is read from disk; TLS files are read by readTLS).
	saved map[string][]byte
	// auto is a reload the config watcher started: one that would take
	// the server off its addresses is refused (guardAddresses).
	auto bool
}

// reload re-reads the config (HUP, Reload, the config watcher) and
// validates all of it in the master: the settings (the Reload hook, which
// keeps flag and environment overrides) and the whole pipeline, both from
// one read of each file (or from the watcher's settled snapshot), so a
// save landing mid-reload cannot give them different contents. A broken
// config changes nothing: the error (a *control.ConfigError) is logged
// with file:line and kept for Status. A good one bumps the generation
// and, when no setting the worker processes were started with changed,
// tells every ready worker to swap to it in place (reload, with the
// digest of the validated files); otherwise the workers are rolled onto
// it one at a time. Binds are reconciled: added ones open (or are taken
// back from the removed binds still held) before the workers roll onto
// them, removed ones close once the roll is done; a bind that cannot be
// opened fails the reload. Settings that need a new master (reuse_port,
// control_socket, watch_config) are kept and reported as needing a
// restart.
func (a *Arbiter) reload(req reloadRequest) (res control.ReloadResult, err error) {
	why := req.by
	if a.mode != modeRunning {
		return control.ReloadResult{}, errStopping
	}
	a.notifyReloadBegins(why)
	defer func() { a.notifyReloadEnded(res, err) }()
	start := a.opts.now()
	fail := func(err error, msg string) (control.ReloadResult, error) {
		a.lastReload = &control.ReloadOutcome{OK: false, At: start, Error: err.Error()}
		a.metrics.reg.Reloaded(false, a.generation)
		a.log.Error(msg, "by", why, "error", err)
		return control.ReloadResult{}, configError(err)
	}
	// The pipeline's load reads every file once (or takes it from the
	// snapshot); the settings and the graph are built from those bytes.
	v, perr := a.validatePipeline(a.savedFiles(req.saved))
	ns := a.settings
	var serr error
	if a.opts.Reload != nil {
		ns, serr = a.opts.Reload(v.contents)
	}
	if err := joinDistinct(serr, perr); err != nil {
		return fail(err, "reload failed; keeping the running workers")
	}
	var data []byte // the config file as validated
	if len(v.files) > 0 {
		data = v.contents[v.files[0]]
	}
	// The master reads certfile and keyfile (workers may not be allowed
	// to) and sends what it read: a pair that does not load fails the
	// reload here, and the workers keep the certificate they serve.
	pair, err := readTLS(ns)
	if err != nil {
		return fail(err, "reload failed; keeping the running workers")
	}
	if req.auto {
		if err := a.guardAddresses(ns, data); err != nil {
			return fail(err, "reload refused; keeping the running workers and listeners")
		}
	}
	restart := a.keepRestartOnly(ns)
	// Binds are reconciled now: new sockets open before the workers roll
	// onto them, removed ones are retired once the roll is done
	// (retireListeners). A bind that cannot be opened fails the reload.
	nextSet, retired, err := a.reconcileBinds(ns)
	if err != nil {
		return fail(err, "reload failed; keeping the running workers and listeners")
	}
	// The file's workers wins only when it changed, so a count set at run
	// time (TTIN, ctl workers add) survives other edits (docs/pitfalls.md B6).
	if ns.Workers != a.settings.Workers {
		a.target = ns.Workers
	}
	next := a.newRunningConfig(v, pair)
	changed := a.changes(ns, next, restart)
	roll := !sameProcessSettings(a.settings, ns)
	a.settings, a.cfg = ns, next
	a.generation++
	a.lastReload = &control.ReloadOutcome{OK: true, At: start}
	a.metrics.reg.Reloaded(true, a.generation)
	if nextSet != nil {
		a.useListeners(nextSet)
		a.takeBackRetiring(nextSet)
		if len(retired.Specs()) > 0 {
			a.retiring = append(a.retiring, retiringSet{gen: a.generation, set: retired})
		}
	}
	if roll {
		a.log.Info("reloading: worker settings changed, rolling workers", "by", why, "generation", a.generation, "workers", a.target, "changed", strings.Join(changed, ","))
	} else {
		a.log.Info("reloading in place", "by", why, "generation", a.generation, "workers", a.target, "changed", strings.Join(changed, ","))
		a.reloadInPlace()
	}
	return control.ReloadResult{OK: true, Generation: a.generation, Changed: changed}, nil
}

// changes names what a reload to ns and next changes against the running
// settings and config, for its answer and log: the settings whose value
// differs, those kept until a restart, certfile when only the TLS files'
// contents changed, then the sections of the config file that differ, or
// "pipeline" when only a file the config references did.
func (a *Arbiter) changes(ns *Settings, next runningConfig, restart []string) []string {
	prev := a.cfg
	changed := changedSettings(a.settings, ns)
	for _, name := range restart {
		changed = append(changed, name+" (needs restart)")
	}
	// New contents of certfile and keyfile under the same names need no
	// new workers: an in-place reload carries the pair and each worker
	// swaps its certificate. New names roll the workers, as any setting
	// of theirs does; new workers get the pair at spawn.
	if next.tlsDigest != prev.tlsDigest && !slices.Contains(changed, "certfile") && !slices.Contains(changed, "keyfile") {
		changed = append(changed, "certfile")
	}
	if sections := changedSections(a.opts.ConfigPath, prev.data, next.data); len(sections) > 0 {
		changed = append(changed, sections...)
	} else if (next.sum != prev.sum || next.digest != prev.digest) && (len(changed) == 0 || prev.graph == nil || !bytes.Equal(prev.graph, next.graph)) {
		// A file the config references changed (config:, a factory's).
		changed = append(changed, "pipeline")
	}
	return changed
}

// keepRestartOnly puts back the running value of the settings a reload
// cannot change (keepRestartSettings), warning for each, and keeps at
// least one worker process; it returns the kept settings' names.
func (a *Arbiter) keepRestartOnly(ns *Settings) []string {
	if ns == a.settings {
		return nil
	}
	restart := keepRestartSettings(a.settings, ns)
	for _, name := range restart {
		a.log.Warn(name+" changed; it needs a restart, keeping the current value", "setting", name)
	}
	if ns.Workers < 1 {
		a.log.Warn("workers = 0 needs a restart; keeping worker processes", "workers", 1)
		ns.Workers = 1
	}
	return restart
}

// reconcileBinds opens the sockets ns binds that are not open, taking
// back removed ones still held for draining workers, and applies the
// backlog (listener.Set.Reconcile); next is nil when neither bind nor
// backlog changed. An error names the bind's file:line.
func (a *Arbiter) reconcileBinds(ns *Settings) (next, retired *listener.Set, err error) {
	if a.set == nil || (slices.Equal(ns.Bind, a.settings.Bind) && ns.Backlog == a.settings.Backlog) {
		return nil, nil, nil
	}
	held := make([]*listener.Set, len(a.retiring))
	for i, r := range a.retiring {
		held[i] = r.set
	}
	next, retired, err = a.set.Reconcile(context.Background(), ns.Bind, listener.Options{Backlog: ns.Backlog, ReusePort: ns.ReusePort}, a.opts.Opener, held...)
	if err != nil {
		if o := ns.Origins["bind"]; o.Where != "" {
			err = fmt.Errorf("%s: bind: %w", o.Where, err)
		}
		return nil, nil, err
	}
	return next, retired, nil
}

// validated is one load of the config, as validatePipeline read it.
type validated struct {
	// files are the files the load read (the config first), by the
	// loader's names; digest is their ContentsDigest.
	files  []string
	digest string
	// contents are those files' bytes as the load used them, even when
	// it failed (what it read before it did).
	contents map[string][]byte
	// watch are the files the config's factories read as configuration
	// (pipeline.Pipeline.Watch).
	watch []string
}

// validatePipeline builds the whole pipeline of the config file and
// closes it. files, when set, are contents to use instead of reading
// those files (LoadOptions.Files). Without a config path (tests) there
// is nothing to validate.
func (a *Arbiter) validatePipeline(files map[string][]byte) (validated, error) {
	if a.opts.ConfigPath == "" {
		return validated{}, nil
	}
	p, err := pipeline.Load(pipeline.LoadOptions{Path: a.opts.ConfigPath, Name: a.opts.AppName, Kind: pipeline.ObjectApp, Registry: a.opts.Registry, Files: files})
	if p == nil {
		return validated{}, err
	}
	v := validated{files: p.Files, contents: p.Contents, watch: p.Watch}
	if err != nil {
		return v, err
	}
	LogWarnings(a.log, p.Warnings)
	if err := p.Close(); err != nil {
		a.log.Warn("close the validated pipeline", "error", err)
	}
	if v.digest, err = ContentsDigest(p.Files, p.Contents); err != nil {
		return v, err
	}
	return v, nil
}

// savedFiles turns the watcher's snapshot (by absolute path) into
// contents by the names the loader uses for the running config's files
// (the config path may be relative), keeping the absolute names too for
// files the new config may read. Nil stays nil: read the files.
func (a *Arbiter) savedFiles(saved map[string][]byte) map[string][]byte {
	if saved == nil {
		return nil
	}
	files := maps.Clone(saved)
	for _, name := range append([]string{a.opts.ConfigPath}, a.cfg.files...) {
		abs, err := filepath.Abs(name)
		if err != nil {
			continue
		}
		if data, ok := saved[abs]; ok {
			files[name] = data
		}
	}
	return files
}

// joinDistinct joins the errors that are not nil, once each: a settings
// load and a pipeline load failing on the same unreadable file report it
// once.
func joinDistinct(errs ...error) error {
	var out []error
	for _, err := range errs {
		if err != nil && !slices.ContainsFunc(out, func(e error) bool { return e.Error() == err.Error() }) {
			out = append(out, err)
		}
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return errors.Join(out...)
}

// guardAddresses refuses a config the watcher saw that would take the
// server off its addresses: one that keeps none of the addresses it
// listens on (or still holds for draining workers), or one that drops an
// address the running config's file named while the new file names no
// bind at all (no [server:*] section, or one without bind, host or port:
// what a file truncated or written in pieces looks like when caught
// between them; it would fall back to the default bind). A reload asked
// for (HUP, paddock ctl reload) applies it.
func (a *Arbiter) guardAddresses(ns *Settings, data []byte) error {
	if a.set == nil || len(a.settings.Bind) == 0 {
		return nil
	}
	want := make(map[string]bool, len(ns.Bind))
	for _, spec := range ns.Bind {
		want[spec.Key()] = true
	}
	var kept, dropped []string
	for _, spec := range a.settings.Bind {
		if want[spec.Key()] {
			kept = append(kept, spec.String())
		} else {
			dropped = append(dropped, spec.String())
		}
	}
	if len(dropped) == 0 {
		return nil
	}
	for _, r := range a.retiring {
		for _, spec := range r.set.Specs() {
			if want[spec.Key()] {
				kept = append(kept, spec.String())
			}
		}
	}
	var newBinds []string
	for _, spec := range ns.Bind {
		newBinds = append(newBinds, spec.String())
	}
	apply := "apply it with `paddock ctl reload` or kill -HUP if it is meant"
	if len(kept) == 0 {
		return fmt.Errorf("%s: not applied: the saved config would stop listening on every address the server listens on (%s; it names %s): %s",
			a.opts.ConfigPath, strings.Join(dropped, " "), strings.Join(newBinds, " "), apply)
	}
	if a.settings.Origins["bind"].Source == SourceFile && ns.Origins["bind"].Source != SourceFile {
		what := "names no bind, host or port"
		if !hasServerSection(a.opts.ConfigPath, data) {
			what = "has no [server:*] section"
		}
		return fmt.Errorf("%s: not applied: the saved config %s, so it would stop listening on %s, which the file named: %s",
			a.opts.ConfigPath, what, strings.Join(dropped, " "), apply)
	}
	return nil
}

// hasServerSection reports whether the config file's bytes have a
// [server:*] section (true when they do not parse: the load decides).
func hasServerSection(path string, data []byte) bool {
	if data == nil {
		return true
	}
	f, err := pipeline.Parse(path, data, nil)
	if err != nil {
		return true
	}
	for _, sec := range f.Sections {
		if isServerSection(sec.Name) {
			return true
		}
	}
	return false
}

func isServerSection(name string) bool {
	return strings.HasPrefix(name, "server:") || strings.HasPrefix(name, "server ")
}

// takeBackRetiring takes the sockets a Reconcile took back (now in
// next) out of the retiring sets, so they are not retired; sets left
// empty are dropped.
func (a *Arbiter) takeBackRetiring(next *listener.Set) {
	keep := a.retiring[:0]
	for _, r := range a.retiring {
		rest := r.set.Without(next)
		if n := len(r.set.Listeners()) - len(rest.Listeners()); n > 0 {
			for _, spec := range r.set.Specs() {
				if !slices.Contains(rest.Specs(), spec) {
					a.log.Info("removed bind named again; serving on the socket still held", "bind", spec.String())
				}
			}
		}
		r.set = rest
		if len(rest.Listeners()) > 0 {
			keep = append(keep, r)
		}
	}
	clear(a.retiring[len(keep):])
	a.retiring = keep
}

// reloadInPlace asks every ready worker to swap to the current
// generation. A worker that cannot (reload_failed, no answer within
// reloadAckTimeout, a broken channel) is rolled by manage; booting
// workers of an older generation are rolled too.
func (a *Arbiter) reloadInPlace() {
	deadline := a.opts.now().Add(reloadAckTimeout)
	for _, w := range a.sorted() {
		if w.state != stateReady || w.killed || w.retiring {
			continue
		}
		m := Message{Type: MsgReload, Generation: a.generation, ConfigSHA256: a.cfg.digest, Files: inlineConfig(a.cfg.contents), TLS: a.cfg.tls}
		if err := w.proc.Send(m); err != nil {
			w.log.Warn("cannot send reload; replacing the worker", "error", err)
			w.reloadGen = 0
			continue
		}
		w.reloadGen, w.reloadDeadline = a.generation, deadline
	}
}

// WatchedFiles is what the config watcher watches: every file the
// running config's load read (the config first), the files its factories
// read as configuration (htpasswd) and the TLS files.
func (a *Arbiter) WatchedFiles(ctx context.Context) ([]string, error) {
	return call(a, ctx, func() []string {
		files := slices.Clone(a.cfg.files)
		for _, f := range append(slices.Clone(a.cfg.watch), a.settings.CertFile, a.settings.KeyFile) {
			if f != "" && !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
		return files
	})
}

// reloadAnswered handles a worker's reloaded or reload_failed.
func (a *Arbiter) reloadAnswered(w *wproc, m *Message) {
	if w.reloadGen == 0 || m.Generation != w.reloadGen {
		w.log.Debug("stale reload answer", "type", m.Type, "generation", m.Generation)
		return
	}
	w.reloadGen = 0
	if m.Type == MsgReloadFailed {
		w.log.Warn("worker could not reload in place; replacing it", "generation", m.Generation, "error", m.Error)
		return
	}
	w.generation = m.Generation
	w.log = a.log.With("pid", w.proc.Pid(), "worker_id", w.id, "generation", w.generation)
	w.log.Info("worker reloaded in place")
}

// sameProcessSettings reports whether workers started with old serve new
// as they are: only settings whose reload policy is not ReloadRoll
// differ (the master's own: worker count, backlog, restart-only ones).
func sameProcessSettings(old, new *Settings) bool {
	if old == new {
		return true
	}
	a, b := *old, *new
	a.Origins, b.Origins = nil, nil
	for _, st := range table {
		if st.Reload != ReloadRoll {
			st.fieldOf(&b).Set(st.fieldOf(&a))
		}
	}
	return reflect.DeepEqual(a, b)
}

// keepRestartSettings puts back into ns the running value of every
// setting whose policy is ReloadRestart and that ns changes, with its
// origin, and returns their names in table order.
func keepRestartSettings(running, ns *Settings) []string {
	var kept []string
	for _, st := range table {
		if st.Reload != ReloadRestart {
			continue
		}
		old, v := st.fieldOf(running), st.fieldOf(ns)
		if reflect.DeepEqual(old.Interface(), v.Interface()) {
			continue
		}
		v.Set(old)
		if ns.Origins != nil {
			if o, ok := running.Origins[st.Name]; ok {
				ns.Origins[st.Name] = o
			} else {
				delete(ns.Origins, st.Name)
			}
		}
		kept = append(kept, st.Name)
	}
	return kept
}

// runningConfig is a config the master validated and serves: what
// workers build from (spawn, in-place reload), what status shows and what
// the watcher watches. The start and every good reload make one
// (newRunningConfig) and swap it in as one value.
type runningConfig struct {
	// validated: the files the load read, their digest (what in-place
	// reloads verify), their bytes and the files the factories read.
	validated
	data  []byte // the config file's bytes
	sum   string // their sha256, for status
	graph []byte // the canonical graph (nil when it does not draw): tells a pipeline change from a settings one
	// tls is certfile and keyfile as the master read them (readTLS):
	// workers get these bytes, never the files.
	tls       *TLSPair
	tlsDigest string
}

// newRunningConfig is the running config of a validated load and TLS
// pair; the graph is drawn from the same validated bytes.
func (a *Arbiter) newRunningConfig(v validated, pair *TLSPair) runningConfig {
	rc := runningConfig{validated: v, tls: pair, tlsDigest: pair.digest()}
	if a.opts.ConfigPath == "" || len(v.files) == 0 {
		return rc
	}
	rc.data = v.contents[v.files[0]]
	h := sha256.Sum256(rc.data)
	rc.sum = hex.EncodeToString(h[:])
	if g, ok := pipeline.GraphJSONFrom(a.opts.ConfigPath, a.opts.AppName, pipeline.ObjectApp, v.contents); ok {
		rc.graph = g
	}
	return rc
}

// changedSettings names the settings whose value differs, sorted.
func changedSettings(old, new *Settings) []string {
	out := []string{}
	if old == new {
		return out
	}
	names := make(map[string]bool)
	for k := range old.Origins {
		names[k] = true
	}
	for k := range new.Origins {
		names[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(names)) {
		if old.Origins[k].Value != new.Origins[k].Value {
			out = append(out, k)
		}
	}
	return out
}

// configError turns a load error into the 422 the control socket
// answers: one problem per pipeline error, located at file:line.
func configError(err error) error {
	ce := &control.ConfigError{}
	var walk func(error)
	walk = func(err error) {
		var (
			list pipeline.ErrorList
			pe   *pipeline.Error
		)
		switch {
		case errors.As(err, &list):
			for _, e := range list {
				walk(e)
			}
			return
		case errors.As(err, &pe) && pe.Class != "":
			ce.Problems = append(ce.Problems, problem(pe))
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if errors.As(err, &pe) {
			ce.Problems = append(ce.Problems, problem(pe))
			return
		}
		ce.Problems = append(ce.Problems, control.ConfigProblem{Message: err.Error()})
	}
	walk(err)
	return ce
}

func problem(e *pipeline.Error) control.ConfigProblem {
	msg := strings.TrimPrefix(e.Msg, "Error in file "+e.Pos.File+": ")
	return control.ConfigProblem{File: e.Pos.File, Line: e.Pos.Line, Section: e.Section, Message: msg}
}

// rolled reports whether generation gen is rolled out.
func (a *Arbiter) rolled(gen int) bool {
	ready := 0
	for _, w := range a.workers {
		if w.state == stateDraining || w.killed {
			continue
		}
		if w.generation < gen {
			return false
		}
		if w.state == stateReady {
			ready++
		}
	}
	return ready >= a.target
}

// notifyWaiters wakes the Reload calls whose roll is done, or that gave
// up, or that never will be (the master stops).
func (a *Arbiter) notifyWaiters() {
	a.checkReopenWaiters() // logs.go
	keep := a.waiters[:0]
	for _, w := range a.waiters {
		switch {
		case w.ctx.Err() != nil:
			close(w.done)
		case a.mode != modeRunning:
			w.err = fmt.Errorf("worker: the master stopped before generation %d was ready: %w", w.gen, ErrNotRunning)
			close(w.done)
		case a.rolled(w.gen):
			close(w.done)
		default:
			keep = append(keep, w)
		}
	}
	clear(a.waiters[len(keep):])
	a.waiters = keep
}

// reloading reports whether a Reload call still waits for its roll.
func (a *Arbiter) reloading() bool {
	for _, w := range a.waiters {
		if w.ctx.Err() == nil {
			return true
		}
	}
	return false
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

type reloadReply struct {
	res control.ReloadResult
	err error
}

// Reload is HUP: it re-reads the config and, when it loads, rolls the
// workers and returns once the new generation is ready (or ctx is done).
// A broken config is a *control.ConfigError and changes nothing; a
// reload already waiting for its roll is control.ErrBusy.
func (a *Arbiter) Reload(ctx context.Context) (control.ReloadResult, error) {
	return a.reloadAndWait(ctx, reloadRequest{by: "request"})
}

// ReloadSaved is the config watcher's reload: it applies saved, the
// settled contents of the watched files (reload.Watcher.Snapshot), as
// Reload applies the files, except that a config that would take the
// server off its addresses is refused (guardAddresses): a file caught
// while being written must not do that.
func (a *Arbiter) ReloadSaved(ctx context.Context, saved map[string][]byte) (control.ReloadResult, error) {
	return a.reloadAndWait(ctx, reloadRequest{by: "config change", saved: saved, auto: true})
}

func (a *Arbiter) reloadAndWait(ctx context.Context, req reloadRequest) (control.ReloadResult, error) {
	start := time.Now()
	w := &rollWaiter{ctx: ctx, done: make(chan struct{})}
	r, err := call(a, ctx, func() reloadReply {
		if a.reloading() {
			return reloadReply{err: fmt.Errorf("worker: reload: the previous one is still rolling out: %w", control.ErrBusy)}
		}
		res, err := a.reload(req)
		if err == nil {
			w.gen = res.Generation
			a.waiters = append(a.waiters, w)
		}
		return reloadReply{res, err}
	})
	if err != nil {
		return control.ReloadResult{}, err
	}
	if r.err != nil {
		return control.ReloadResult{}, r.err
	}
	select {
	case <-w.done:
	case <-ctx.Done():
	case <-a.done:
		return control.ReloadResult{}, fmt.Errorf("worker: reload: %w", ErrNotRunning)
	}
	if w.err != nil {
		return control.ReloadResult{}, w.err
	}
	if err := ctx.Err(); err != nil {
		return control.ReloadResult{}, fmt.Errorf("worker: reload: generation %d validated but not ready yet: %w", r.res.Generation, context.Cause(ctx))
	}
	r.res.DurationS = time.Since(start).Seconds()
	return r.res, nil
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

// changedSections names the sections of the config file whose options
// differ between old and new, "[name]" in the new file's order, then
// removed ones; [DEFAULT] counts as a section. Server sections are left
// out: their changes are named by setting. Nil when either does not
// parse.
func changedSections(path string, old, new []byte) []string {
	if old == nil || new == nil || bytes.Equal(old, new) {
		return nil
	}
	of, err := pipeline.Parse(path, old, nil)
	if err != nil {
		return nil
	}
	nf, err := pipeline.Parse(path, new, nil)
	if err != nil {
		return nil
	}
	text := func(s *pipeline.Section) string {
		if s == nil {
			return ""
		}
		var b strings.Builder
		for _, o := range s.Options {
			b.WriteString(o.Key + "=" + o.Value + "\n")
		}
		return b.String()
	}
	isServer := isServerSection
	var out []string
	if text(of.Defaults) != text(nf.Defaults) {
		out = append(out, "[DEFAULT]")
	}
	for _, s := range nf.Sections {
		if isServer(s.Name) {
			continue
		}
		switch o := of.Section(s.Name); {
		case o == nil:
			out = append(out, "["+s.Name+"] (added)")
		case text(o) != text(s):
			out = append(out, "["+s.Name+"]")
		}
	}
	for _, s := range of.Sections {
		if !isServer(s.Name) && nf.Section(s.Name) == nil {
			out = append(out, "["+s.Name+"] (removed)")
		}
	}
	return out
}

// inlineConfig is what a reload message carries of the validated config:
// all of it, or nothing when it is over MaxInlineConfig (the worker then
// reads the files and checks their digest).
func inlineConfig(contents map[string][]byte) map[string][]byte {
	n := 0
	for _, data := range contents {
		n += len(data)
	}
	if n > MaxInlineConfig {
		return nil
	}
	return contents
}
