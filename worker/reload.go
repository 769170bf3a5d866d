package worker

// The reload flow, top to bottom: what starts a reload (Reload for HUP
// and ctl reload, ReloadSaved for the config watcher), reload itself
// (one read of the config, validation, the guard, settings, binds, the
// new running config swapped in at once), then how the workers get the
// new generation (in place or rolled) and how the caller learns that it
// is rolled out.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"paddock/control"
	"paddock/listener"
	"paddock/pipeline"
)

// rollWaiter is a Reload call waiting until generation gen is rolled out:
// no live worker of an older generation, and target workers ready.
type rollWaiter struct {
	ctx  context.Context
	gen  int
	err  error
	done chan struct{} // closed by the Run goroutine
}

// reloadAckTimeout bounds how long the master waits for a worker to
// answer an in-place reload; one that does not is rolled.
const reloadAckTimeout = 10 * time.Second

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
	apply := "apply it with `paddock ctl reload` or kill -HUP if it is meant"
	if len(kept) == 0 {
		var newBinds []string
		for _, spec := range ns.Bind {
			newBinds = append(newBinds, spec.String())
		}
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
