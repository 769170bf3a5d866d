package pipeline

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
)

// Kind says what a factory builds and therefore which paste protocol it
// answers to.
type Kind int

// The factory kinds, one per PasteDeploy protocol family.
const (
	KindApp       Kind = iota + 1 // paste.app_factory: builds an http.Handler
	KindFilter                    // paste.filter_factory: builds a Middleware
	KindFilterApp                 // paste.filter_app_factory: wraps a given handler
	KindComposite                 // paste.composite_factory: builds a handler from named apps
	KindServer                    // paste.server_factory: describes a server
)

// String returns the kind's name as used in messages and listings.
func (k Kind) String() string {
	switch k {
	case KindApp:
		return "app"
	case KindFilter:
		return "filter"
	case KindFilterApp:
		return "filter-app"
	case KindComposite:
		return "composite"
	case KindServer:
		return "server"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Protocol returns the PasteDeploy protocol (entry point group) of the kind.
func (k Kind) Protocol() string {
	switch k {
	case KindApp:
		return protoApp
	case KindFilter:
		return protoFilter
	case KindFilterApp:
		return protoFilterApp
	case KindComposite:
		return protoComposite
	case KindServer:
		return protoServer
	}
	return ""
}

// Middleware wraps a handler; it is what a filter factory returns.
type Middleware = func(http.Handler) http.Handler

// AppLoader resolves an application name the way PasteDeploy's loader does
// for composite factories: a section name in the composite's file, or a
// config:/egg:/call: URI. The composite's global configuration is passed on.
type AppLoader interface {
	LoadApp(name string) (http.Handler, error)
}

// Factory constructs one kind of object from its configuration. Exactly the
// function matching Kind is set. Factories construct; they never start
// goroutines or open sockets. Background work is registered with
// Config.OnStart and runs once the pipeline serves (Pipeline.Start);
// anything holding resources is registered with Config.AddCloser and is
// closed when the pipeline is retired.
type Factory struct {
	Kind      Kind
	App       func(c *Config) (http.Handler, error)
	Filter    func(c *Config) (Middleware, error)
	FilterApp func(c *Config, next http.Handler) (http.Handler, error)
	Composite func(c *Config, apps AppLoader) (http.Handler, error)
	Server    func(c *Config) (any, error)
	// Doc is a one-line description shown in listings.
	Doc string
}

// App returns an application factory.
func App(doc string, fn func(c *Config) (http.Handler, error)) Factory {
	return Factory{Kind: KindApp, App: fn, Doc: doc}
}

// Filter returns a filter factory.
func Filter(doc string, fn func(c *Config) (Middleware, error)) Factory {
	return Factory{Kind: KindFilter, Filter: fn, Doc: doc}
}

// FilterApp returns a filter-app factory (the filter gets its next handler
// at construction).
func FilterApp(doc string, fn func(c *Config, next http.Handler) (http.Handler, error)) Factory {
	return Factory{Kind: KindFilterApp, FilterApp: fn, Doc: doc}
}

// Composite returns a composite factory.
func Composite(doc string, fn func(c *Config, apps AppLoader) (http.Handler, error)) Factory {
	return Factory{Kind: KindComposite, Composite: fn, Doc: doc}
}

// Server returns a server factory.
func Server(doc string, fn func(c *Config) (any, error)) Factory {
	return Factory{Kind: KindServer, Server: fn, Doc: doc}
}

func (f Factory) valid() bool {
	switch f.Kind {
	case KindApp:
		return f.App != nil
	case KindFilter:
		return f.Filter != nil
	case KindFilterApp:
		return f.FilterApp != nil
	case KindComposite:
		return f.Composite != nil
	case KindServer:
		return f.Server != nil
	}
	return false
}

// Registry maps factory spec strings to Go factories. A spec is what a
// config file names: "egg:Dist#name", an entry point "module:attr" from an
// explicit paste.*_factory key, or "call:module:attr". Egg specs are matched
// the way PasteDeploy matches them (distribution names normalised, "#main"
// implied), other specs exactly (whitespace and [extras] ignored).
//
// The zero value is not usable; call NewRegistry. A Registry is safe for
// concurrent lookups once registration is done.
type Registry struct {
	// One name may carry one factory per kind family (app, filter,
	// server), as one Python entry point name may exist in several groups
	// (oslo.middleware's healthcheck is both an app and a filter).
	entries map[string][]*registryEntry
}

type registryEntry struct {
	spec    string // the name as registered, for listings
	factory Factory
}

// NewRegistry returns an empty registry. Use NewDefaultRegistry for one
// holding the built-in catalog.
func NewRegistry() *Registry {
	return &Registry{entries: make(map[string][]*registryEntry)}
}

// NewDefaultRegistry returns a registry holding paddock's built-in catalog.
func NewDefaultRegistry() *Registry {
	r := NewRegistry()
	RegisterBuiltins(r)
	return r
}

// Register adds f under every given name. It panics on an empty name, a
// name registered before for the same kind family (app and composite;
// filter and filter-app; server) or an invalid factory: registration
// happens at program start and such mistakes are programming errors.
func (r *Registry) Register(f Factory, names ...string) {
	if !f.valid() {
		panic(fmt.Sprintf("pipeline: invalid factory for %q (kind %v)", names, f.Kind))
	}
	if len(names) == 0 {
		panic("pipeline: Register called without a name")
	}
	for _, name := range names {
		key := CanonicalSpec(name)
		if key == "" {
			panic("pipeline: empty factory name")
		}
		for _, e := range r.entries[key] {
			if e.factory.Kind.family() == f.Kind.family() {
				panic(fmt.Sprintf("pipeline: factory %q registered twice", name))
			}
		}
		r.entries[key] = append(r.entries[key], &registryEntry{spec: name, factory: f})
	}
}

// Lookup returns the factory registered for spec; when the name has
// factories of several kinds, the first registered.
func (r *Registry) Lookup(spec string) (Factory, bool) {
	es := r.entries[CanonicalSpec(spec)]
	if len(es) == 0 {
		return Factory{}, false
	}
	return es[0].factory, true
}

// LookupAll returns every factory registered for spec, one per kind family.
func (r *Registry) LookupAll(spec string) []Factory {
	es := r.entries[CanonicalSpec(spec)]
	out := make([]Factory, len(es))
	for i, e := range es {
		out[i] = e.factory
	}
	return out
}

// Names returns every registered name, sorted, once per name.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.entries))
	for _, es := range r.entries {
		names = append(names, es[0].spec)
	}
	sort.Strings(names)
	return names
}

// family groups kinds the way PasteDeploy's object types do.
func (k Kind) family() int {
	switch k {
	case KindApp, KindComposite:
		return 1
	case KindFilter, KindFilterApp:
		return 2
	}
	return 3
}

// Near returns up to three registered names close to spec, best first, for
// "did you mean" hints.
func (r *Registry) Near(spec string) []string {
	want := strings.ToLower(CanonicalSpec(spec))
	wantTail := specTail(want)
	type scored struct {
		name string
		d    int
	}
	var cands []scored
	for key, es := range r.entries {
		e := es[0]
		k := strings.ToLower(key)
		d := editDistance(want, k)
		if t := specTail(k); t != "" && wantTail != "" {
			if td := editDistance(wantTail, t); td < d {
				d = td
			}
		}
		// Close enough to be a typo: a couple of edits, or a quarter of
		// the name for long ones.
		limit := max(2, len(wantTail)/4)
		if d <= limit {
			cands = append(cands, scored{e.spec, d})
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].d != cands[j].d {
			return cands[i].d < cands[j].d
		}
		return cands[i].name < cands[j].name
	})
	var out []string
	for i := 0; i < len(cands) && i < 3; i++ {
		out = append(out, cands[i].name)
	}
	return out
}

// specTail is the part of a spec that names the object: the entry point of
// an egg, the attribute path of an entry point expression
// ("Healthcheck.factory", not just the "factory" every oslo name ends in).
func specTail(spec string) string {
	if i := strings.LastIndexAny(spec, "#:"); i >= 0 {
		return spec[i+1:]
	}
	return spec
}

var distNormalizer = regexp.MustCompile(`[-_.]+`)

// CanonicalSpec returns the registry key for a factory spec: for
// "egg:Dist#name" the distribution normalised like importlib.metadata
// (lower case, runs of "-_." as "_") and the entry point defaulting to
// "main"; for "call:" and entry point expressions the text without spaces
// and without an "[extras]" suffix.
func CanonicalSpec(spec string) string {
	spec = strings.TrimSpace(spec)
	if len(spec) > 4 && strings.EqualFold(spec[:4], "egg:") {
		rest := spec[4:]
		dist, ep, _ := strings.Cut(rest, "#")
		if ep == "" {
			ep = "main"
		}
		return "egg:" + strings.ToLower(distNormalizer.ReplaceAllString(dist, "_")) + "#" + ep
	}
	if len(spec) > 5 && strings.EqualFold(spec[:5], "call:") {
		spec = "call:" + spec[5:]
		if i := strings.IndexByte(spec, '#'); i >= 0 {
			spec = spec[:i]
		}
	}
	if i := strings.IndexByte(spec, '['); i > 0 {
		spec = spec[:i]
	}
	return strings.Join(strings.Fields(spec), "")
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
