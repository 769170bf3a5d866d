package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// This file is the real world of the loader: factories come from a
// Registry and build http.Handlers.

// LoadOptions says what to load and with which factories.
type LoadOptions struct {
	// Path is the config file.
	Path string
	// Name is the section name to load; "" means "main" (or the #fragment).
	Name string
	// Kind is what to load; "" means an app.
	Kind ObjectKind
	// Registry holds the factories; nil means NewDefaultRegistry().
	Registry *Registry
	// Logger is handed to factories (named after their section); nil
	// discards.
	Logger hclog.Logger
	// Files, if set, are config file contents by the names the load uses
	// (Pipeline.Contents of an earlier load): they are used instead of
	// reading those files, so a worker builds exactly what its master
	// validated even if the files changed since. A file the load needs
	// that is not in Files is read from disk.
	Files map[string][]byte
	// Metrics is what the metrics app serves: the server's Prometheus
	// text exposition (a worker asks its master for the sum over every
	// worker). Nil: the app answers 503 (paddock check, validation).
	Metrics MetricsSource
}

// MetricsSource returns a Prometheus text exposition.
type MetricsSource func(ctx context.Context) ([]byte, error)

// Pipeline is a built handler graph and the resources it holds.
type Pipeline struct {
	// Handler is the composed application (Kind app).
	Handler http.Handler
	// Server is the server factory's result (Kind server).
	Server any
	// Filter is the middleware (Kind filter).
	Filter Middleware
	// Warnings are problems that did not stop the load, such as options
	// no factory asked for.
	Warnings []*Error
	// Files are the config files the load read, the main one first, by
	// the names the loader used (absolute paths).
	Files []string
	// Contents are the bytes of each of Files as the load used them.
	Contents map[string][]byte

	closers  []io.Closer
	starters []func()      // Config.OnStart work, run by Start
	statuses []StatusEntry // Config.AddStatus reports (status.go)
	// Watch are files factories read as configuration (Config.WatchFile),
	// beyond Files: a server reloads when they change.
	Watch []string
}

// Start runs what the pipeline's factories registered to run once it
// serves (Config.OnStart: health probes, background maintenance), once.
// A process calls it when it installs the pipeline; one that only
// validates (a reload's check in the master, paddock check) never does.
func (p *Pipeline) Start() {
	if p == nil {
		return
	}
	for _, fn := range p.starters {
		fn()
	}
	p.starters = nil
}

// Close releases the resources the pipeline's factories registered, in
// reverse order of creation.
func (p *Pipeline) Close() error {
	if p == nil {
		return nil
	}
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		if err := p.closers[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	p.closers = nil
	return errors.Join(errs...)
}

// Load builds the named object from the config file with registered
// factories. On error nothing stays open. Errors are *Error (file:line,
// section) or ErrorList.
func Load(opts LoadOptions) (*Pipeline, error) {
	return load(opts, false)
}

// Check loads like Load but keeps going past unknown factories and factory
// errors, returning every problem as an ErrorList. The built pipeline is
// closed before Check returns; the result carries warnings and files.
func Check(opts LoadOptions) (*Pipeline, error) {
	p, err := load(opts, true)
	if p != nil {
		p.Close()
	}
	return p, err
}

func load(opts LoadOptions, collect bool) (*Pipeline, error) {
	if opts.Registry == nil {
		opts.Registry = NewDefaultRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	p := &Pipeline{}
	st := &loadState{files: maps.Clone(opts.Files)}
	w := &realWorld{st: st, reg: opts.Registry, log: opts.Logger, collect: collect, p: p, metrics: opts.Metrics}
	st.world = w
	v, err := st.load(opts.Path, opts.Name, opts.Kind)
	main := opts.Path
	if abs, aerr := filepath.Abs(main); aerr == nil && !st.read[main] && st.read[abs] {
		main = abs // the loader names files by absolute path
	}
	p.Files = loadedFiles(st, main)
	p.Contents = make(map[string][]byte, len(p.Files))
	for _, f := range p.Files {
		if data, ok := st.files[f]; ok {
			p.Contents[f] = data
		}
	}
	if err == nil {
		if err = p.setResult(v, opts.Kind); err != nil {
			var le *Error
			if errors.As(err, &le) && le.Pos.File == "" && st.top != nil {
				le.Pos, le.Section = st.top.sectPos, st.top.section
			}
		}
	}
	if err != nil {
		var list ErrorList
		var le *Error
		if errors.As(err, &list) {
			w.errs = append(w.errs, list...)
		} else if errors.As(err, &le) {
			w.errs = append(w.errs, le)
		} else {
			w.errs = append(w.errs, &Error{Pos: Pos{File: opts.Path}, Class: "Error", Msg: err.Error(), Err: err})
		}
	}
	if len(w.errs) > 0 {
		if !collect {
			p.Close()
		}
		if len(w.errs) == 1 {
			return p, w.errs[0]
		}
		return p, w.errs
	}
	return p, nil
}

func loadedFiles(st *loadState, main string) []string {
	files := []string{main}
	var rest []string
	for f := range st.read {
		if f != main {
			rest = append(rest, f)
		}
	}
	sort.Strings(rest)
	return append(files, rest...)
}

func (p *Pipeline) setResult(v any, kind ObjectKind) error {
	switch kind {
	case ObjectApp, "":
		h, ok := v.(http.Handler)
		if !ok {
			return quirkError(v)
		}
		p.Handler = h
	case ObjectFilter:
		switch f := v.(type) {
		case realFilter:
			p.Filter = f.mw
		case loaderFunc:
			p.Filter = func(next http.Handler) http.Handler {
				h, err := f(next)
				if err != nil {
					return errorHandler(err)
				}
				if hh, ok := h.(http.Handler); ok {
					return hh
				}
				return errorHandler(quirkError(h))
			}
		default:
			return fmt.Errorf("pipeline: loaded filter is a %T, not a filter", v)
		}
	case ObjectServer:
		if f, ok := v.(loaderFunc); ok {
			// A server runner waits for its app; paddock serves the app
			// itself, so apply it to nothing to get the settings.
			s, err := f(nil)
			if err != nil {
				return err
			}
			v = s
		}
		p.Server = v
	}
	return nil
}

func quirkError(v any) error {
	if _, ok := v.(loaderFunc); ok {
		return &Error{Class: "TypeError", Msg: "the loaded app is a function waiting for an app (PasteDeploy's filter-with quirk: " +
			"filter-with on a section whose use = reaches a pipeline, filter-app or another filter-with); paddock refuses it: " +
			"put the filter into the pipeline instead"}
	}
	return &Error{Class: "TypeError", Msg: fmt.Sprintf("the loaded object is a %s, not an app", describe(v))}
}

func describe(v any) string {
	switch v.(type) {
	case realFilter, loaderFunc:
		return "filter"
	case http.Handler:
		return "app"
	}
	return fmt.Sprintf("%T", v)
}

func errorHandler(err error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "misconfigured pipeline: "+err.Error(), http.StatusInternalServerError)
	})
}

// realFilter is a built filter: a middleware waiting for its app.
type realFilter struct{ mw Middleware }

// registered is a factory found in the registry.
type registered struct {
	spec string
	f    Factory
	all  []Factory // every kind registered under spec (call: specs)
}

// forProtocol picks the factory of the kind family the protocol needs.
func (r *registered) forProtocol(protocol string) Factory {
	want := map[string]int{protoApp: 1, protoComposite: 1, protoComposit: 1, protoFilter: 2, protoFilterApp: 2, protoServer: 3, protoServerRun: 3}[protocol]
	for _, f := range r.all {
		if f.Kind.family() == want {
			return f
		}
	}
	return r.f
}

// missing stands for a factory that is not registered, so Check can go on
// and report every problem at once.
type missing struct{ spec string }

type realWorld struct {
	st      *loadState
	reg     *Registry
	log     hclog.Logger
	collect bool
	errs    ErrorList
	p       *Pipeline
	metrics MetricsSource
}

func (w *realWorld) fail(err *Error) (any, error) {
	if w.collect {
		w.record(err)
		return &missing{}, nil
	}
	return nil, err
}

// record keeps a problem for Check, once: a section reached from several
// pipelines is reported one time.
func (w *realWorld) record(err *Error) {
	for _, e := range w.errs {
		if e.Pos == err.Pos && e.Section == err.Section && e.Msg == err.Msg {
			return
		}
	}
	w.errs = append(w.errs, err)
}

func (w *realWorld) unknown(spec string, r ref) *Error {
	msg := fmt.Sprintf("no factory registered for %q", spec)
	if near := w.reg.Near(spec); len(near) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", quoteAll(near))
	}
	return r.errorf("LookupError", "%s", msg)
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, " or ")
}

func (w *realWorld) findEgg(dist, name, uri string, groups [][]string, r ref) (any, string, error) {
	spec := "egg:" + dist + "#" + name
	fs := w.reg.LookupAll(spec)
	if len(fs) == 0 {
		obj, err := w.fail(w.unknown(uri, r))
		return obj, groups[0][0], err
	}
	for _, f := range fs {
		proto := f.Kind.Protocol()
		for _, p := range flatten(groups) {
			if p == proto {
				return &registered{spec: uri, f: f, all: fs}, proto, nil
			}
		}
	}
	obj, err := w.fail(r.errorf("LookupError", "factory %q builds a %s, which cannot be used here (want one of: %s)", uri, fs[0].Kind, strings.Join(flatten(groups), ", ")))
	return obj, groups[0][0], err
}

func (w *realWorld) entryPoint(value string, r ref) (any, error) {
	if _, _, ok := parseEntryPoint(value); !ok {
		return w.fail(r.errorf("AttributeError", "malformed factory %q (want module:attr)", value))
	}
	fs := w.reg.LookupAll(value)
	if len(fs) == 0 {
		return w.fail(w.unknown(value, r))
	}
	return &registered{spec: value, f: fs[0], all: fs}, nil
}

func (w *realWorld) lookupObject(spec, uri string, r ref) (any, error) {
	if strings.Count(spec, ":") > 1 || strings.HasPrefix(spec, ":") {
		return w.fail(r.errorf("ValueError", "malformed call: spec %q (want call:module:function)", uri))
	}
	fs := w.reg.LookupAll(uri)
	if len(fs) == 0 {
		return w.fail(w.unknown(uri, r))
	}
	return &registered{spec: uri, f: fs[0], all: fs}, nil
}

func (w *realWorld) config(inv *invocation, spec string) *Config {
	c := inv.ctx
	pos := c.sectPos
	if pos.File == "" {
		pos = c.ref.pos
	}
	optPos := make(map[string]Pos, inv.local.len())
	for _, k := range inv.local.keys {
		optPos[k] = inv.local.posOf(k)
	}
	name := c.section
	if name == "" {
		name = spec
	}
	return &Config{
		Section:  c.section,
		Pos:      pos,
		Spec:     spec,
		Global:   inv.global.plain(),
		Local:    inv.local.plain(),
		Logger:   w.log.Named(name),
		optPos:   optPos,
		keys:     append([]string(nil), inv.local.keys...),
		closers:  &w.p.closers,
		starters: &w.p.starters,
		statuses: &w.p.statuses,
		watch:    &w.p.Watch,
		metrics:  w.metrics,
	}
}

func (w *realWorld) factoryError(c *Config, err error) error {
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	return &Error{Pos: c.Pos, Section: c.Section, Class: "ValueError", Msg: fmt.Sprintf("%s: %v", c.Spec, err), Err: err}
}

func (w *realWorld) invoke(obj any, inv *invocation) (any, error) {
	if _, ok := obj.(*missing); ok {
		if inv.protocol == protoComposite || inv.protocol == protoComposit {
			w.checkCompositeChildren(inv)
		}
		return placeholderValue(inv.protocol, inv.app), nil
	}
	reg, ok := obj.(*registered)
	if !ok {
		return nil, inv.ctx.ref.errorf("TypeError", "object is not callable")
	}
	c := w.config(inv, reg.spec)
	v, err := w.call(reg, c, inv)
	if err != nil {
		if w.collect {
			var ce *Error
			if !errors.As(err, &ce) {
				ce = &Error{Pos: c.Pos, Section: c.Section, Class: "ValueError", Msg: err.Error()}
			}
			w.record(ce)
			return placeholderValue(inv.protocol, inv.app), nil
		}
		return nil, err
	}
	if reg.f.Kind != KindComposite {
		for _, k := range c.Unused() {
			w.p.Warnings = append(w.p.Warnings, &Error{Pos: c.PosOf(k), Section: c.Section, Class: "Warning",
				Msg: fmt.Sprintf("option %q is not used by %s", k, reg.spec)})
		}
	}
	return v, nil
}

func (w *realWorld) call(reg *registered, c *Config, inv *invocation) (any, error) {
	f := reg.forProtocol(inv.protocol)
	mismatch := func() error {
		return inv.ctx.ref.errorf("TypeError", "factory %q builds a %s but is used as %s", reg.spec, f.Kind, inv.protocol)
	}
	switch f.Kind {
	case KindApp:
		if inv.protocol != protoApp {
			return nil, mismatch()
		}
		h, err := f.App(c)
		if err != nil {
			return nil, w.factoryError(c, err)
		}
		return h, nil
	case KindComposite:
		if inv.protocol != protoComposite && inv.protocol != protoComposit {
			return nil, mismatch()
		}
		h, err := f.Composite(c, &appLoader{w: w, inv: inv})
		if err != nil {
			return nil, w.factoryError(c, err)
		}
		return h, nil
	case KindFilter, KindFilterApp:
		var build func(next http.Handler) (http.Handler, error)
		if f.Kind == KindFilter {
			mw, err := f.Filter(c)
			if err != nil {
				return nil, w.factoryError(c, err)
			}
			build = func(next http.Handler) (http.Handler, error) { return mw(next), nil }
			if inv.protocol == protoFilter {
				return realFilter{mw}, nil
			}
		} else {
			build = func(next http.Handler) (http.Handler, error) {
				h, err := f.FilterApp(c, next)
				if err != nil {
					return nil, w.factoryError(c, err)
				}
				return h, nil
			}
		}
		switch inv.protocol {
		case protoFilter:
			return loaderFunc(func(app any) (any, error) {
				h, ok := app.(http.Handler)
				if !ok {
					return nil, inv.ctx.ref.errorf("TypeError", "filter %q applied to a %s", reg.spec, describe(app))
				}
				return build(h)
			}), nil
		case protoFilterApp:
			h, ok := inv.app.(http.Handler)
			if !ok {
				return nil, inv.ctx.ref.errorf("TypeError", "filter %q applied to a %s", reg.spec, describe(inv.app))
			}
			return build(h)
		}
		return nil, mismatch()
	case KindServer:
		if inv.protocol != protoServer && inv.protocol != protoServerRun {
			return nil, mismatch()
		}
		s, err := f.Server(c)
		if err != nil {
			return nil, w.factoryError(c, err)
		}
		return s, nil
	}
	return nil, mismatch()
}

// checkCompositeChildren loads what an unknown composite would most
// likely load (its urlmap-style keys and not_found_app, as PasteDeploy's
// urlmap does) so Check reports their problems too.
func (w *realWorld) checkCompositeChildren(inv *invocation) {
	names := []string{}
	if nf, ok := inv.local.get("not_found_app"); ok && nf != "" {
		names = append(names, nf)
	}
	for _, k := range inv.local.keys {
		if IsURLKey(k) {
			v, _ := inv.local.get(k)
			names = append(names, v)
		}
	}
	al := &appLoader{w: w, inv: inv}
	for _, name := range names {
		if _, err := al.LoadApp(name); err != nil {
			var le *Error
			if errors.As(err, &le) {
				w.record(le)
			}
		}
	}
}

// placeholderValue keeps a Check going past a broken factory.
func placeholderValue(protocol string, app any) any {
	switch protocol {
	case protoFilter:
		return realFilter{func(h http.Handler) http.Handler { return h }}
	case protoFilterApp, protoServerRun:
		if app != nil {
			return app
		}
	case protoServer:
		return &ServerSpec{}
	}
	return http.NotFoundHandler()
}

func (w *realWorld) apply(fn, arg any, r ref) (any, error) {
	if f, ok := fn.(realFilter); ok {
		h, ok := arg.(http.Handler)
		if !ok {
			return nil, r.errorf("TypeError", "a filter applied to a %s, not an app", describe(arg))
		}
		return f.mw(h), nil
	}
	if _, ok := fn.(http.Handler); ok {
		return nil, r.errorf("TypeError", "an app is used as a filter (PasteDeploy's filter-with quirk: filter-with on a section "+
			"whose use = reaches a pipeline, filter-app or another filter-with); paddock refuses it: put the filter into the pipeline instead")
	}
	return nil, r.errorf("TypeError", "%s is not callable", describe(fn))
}

// appLoader resolves a composite's children.
type appLoader struct {
	w   *realWorld
	inv *invocation
}

func (a *appLoader) LoadApp(name string) (http.Handler, error) {
	r := a.inv.ctx.ref
	for _, k := range a.inv.local.keys {
		if v, _ := a.inv.local.get(k); v == name {
			r = ref{pos: a.inv.local.posOf(k), section: a.inv.ctx.section}
			break
		}
	}
	v, err := a.w.st.getApp(a.inv.loader, name, a.inv.global, r)
	if err != nil {
		return nil, err
	}
	h, ok := v.(http.Handler)
	if !ok {
		return nil, r.errorf("TypeError", "%q is a %s, not an app", name, describe(v))
	}
	return h, nil
}
