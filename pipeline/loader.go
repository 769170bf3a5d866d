package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"paddock/internal/regfile"
)

// This file is a port of PasteDeploy 3.0.1's paste/deploy/loadwsgi.py: the
// same contexts, the same order of lookups and the same errors, so that a
// config loads to the same graph. The Python function each part mirrors is
// named in its comment. What PasteDeploy imports (entry points, eggs,
// call: functions) is delegated to a world: the stub world of the
// conformance graph (graph.go) or the factory registry (build.go).

// objType is loadwsgi's object type (APP, FILTER, SERVER and the virtual
// PIPELINE, FILTER_APP, FILTER_WITH).
type objType int

const (
	otApp objType = iota
	otFilter
	otServer
	otPipeline
	otFilterApp
	otFilterWith
)

// ObjectKind selects what to load: an application (the default), a
// filter or a server.
type ObjectKind string

// Object kinds accepted by Load and check --kind.
const (
	ObjectApp    ObjectKind = "app"
	ObjectFilter ObjectKind = "filter"
	ObjectServer ObjectKind = "server"
)

func (k ObjectKind) objType() (objType, error) {
	switch k {
	case ObjectApp, "":
		return otApp, nil
	case ObjectFilter:
		return otFilter, nil
	case ObjectServer:
		return otServer, nil
	}
	return 0, fmt.Errorf("pipeline: unknown object kind %q (want app, filter or server)", string(k))
}

// egg_protocols of each object type.
var typeProtocols = map[objType][][]string{
	otApp:    {{protoApp}, {protoComposite}, {protoComposit}},
	otFilter: {{protoFilter, protoFilterApp}},
	otServer: {{protoServer, protoServerRun}},
}

// config_prefixes of each object type.
var typePrefixes = map[objType][][]string{
	otApp:    {{"app", "application"}, {"composite", "composit"}, {"pipeline"}, {"filter-app"}},
	otFilter: {{"filter"}},
	otServer: {{"server"}},
}

func flatten(groups [][]string) []string {
	var out []string
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// ref says where a name was written, for error positions.
type ref struct {
	pos     Pos
	section string
}

func (r ref) errorf(class, format string, args ...any) *Error {
	return &Error{Pos: r.pos, Section: r.section, Class: class, Msg: fmt.Sprintf(format, args...)}
}

// world resolves what PasteDeploy imports and calls the factories.
type world interface {
	// findEgg is EggLoader.find_egg_entry_point: the factory object and
	// protocol of entry point name in distribution dist, searching the
	// protocol groups in order.
	findEgg(dist, name, uri string, groups [][]string, r ref) (obj any, protocol string, err error)
	// entryPoint loads an explicit paste.*_factory value.
	entryPoint(value string, r ref) (any, error)
	// lookupObject resolves call:module:attr (spec is "module:attr").
	lookupObject(spec, uri string, r ref) (any, error)
	// invoke calls a factory object with the protocol's arguments
	// (util.fix_call in _App/_Filter/_Server.invoke).
	invoke(obj any, inv *invocation) (any, error)
	// apply calls v(arg) when v is not a function the loader made: a
	// filter applied to an app, or (the filter-with quirk) an app misused
	// as a filter.
	apply(v, arg any, r ref) (any, error)
}

// invocation is one factory call.
type invocation struct {
	protocol string
	global   *dict
	local    *dict
	app      any        // filter_app_factory and server_runner
	loader   loaderImpl // composites
	ctx      *lcontext
}

// loaderFunc is a Python closure made by the loader itself (filter_wrapper,
// server_wrapper, composed): a callable waiting for an app.
type loaderFunc func(arg any) (any, error)

// lcontext is loadwsgi.LoaderContext.
type lcontext struct {
	object   any
	ot       objType
	protocol string // "" is Python's None
	global   *dict
	local    *dict
	loader   loaderImpl

	// pipeline, filter-app and filter-with parts
	appCtx     *lcontext
	filterCtxs []*lcontext
	nextCtx    *lcontext
	filterCtx  *lcontext

	// where the factory was named and which section configured it
	spec    string
	ref     ref
	section string
	sectPos Pos
}

// loaderImpl is loadwsgi._Loader.
type loaderImpl interface {
	getContext(st *loadState, ot objType, name string, global *dict, r ref) (*lcontext, error)
}

// loadState is what one load shares: the world and a recursion guard
// (PasteDeploy ends use cycles in RecursionError).
type loadState struct {
	world world
	top   *lcontext // the context load asked for
	depth int
	files map[string][]byte // contents by name: read, or given in LoadOptions.Files
	read  map[string]bool   // the names this load used
}

const maxDepth = 200

func (st *loadState) enter(r ref) error {
	st.depth++
	if st.depth > maxDepth {
		return r.errorf("RecursionError", "maximum recursion depth exceeded (a use/config: cycle?)")
	}
	return nil
}

func (st *loadState) leave() { st.depth-- }

var absoluteRe = regexp.MustCompile(`^[a-zA-Z]+:`)

// loadContext is loadwsgi.loadcontext. name is nil when not given.
func loadContext(st *loadState, ot objType, uri string, name *string, relativeTo string, global *dict, r ref) (*lcontext, error) {
	if err := st.enter(r); err != nil {
		return nil, err
	}
	defer st.leave()
	written := uri // what the graph reports as the factory spec
	if i := strings.IndexByte(uri, '#'); i >= 0 {
		if name == nil {
			n := uri[i+1:]
			name = &n
		}
		uri = uri[:i]
	}
	if name == nil {
		n := "main"
		name = &n
	}
	scheme, path, ok := strings.Cut(uri, ":")
	if !ok {
		return nil, r.errorf("LookupError", "URI has no scheme: %s", pyRepr(uri))
	}
	switch strings.ToLower(scheme) {
	case "config":
		return loadConfig(st, ot, uri, path, *name, relativeTo, global, r)
	case "egg":
		l := &eggLoader{spec: path, uri: written}
		return l.getContext(st, ot, *name, global, r)
	case "call":
		if !strings.Contains(path, ":") {
			return nil, r.errorf("LookupError", "Configuration not in format module:function")
		}
		l := &funcLoader{spec: path, uri: written}
		return l.getContext(st, ot, *name, global, r)
	}
	return nil, r.errorf("LookupError", "URI scheme not known: %s (from config, egg, call)", pyRepr(strings.ToLower(scheme)))
}

// loadConfig is loadwsgi._loadconfig.
func loadConfig(st *loadState, ot objType, uri, path, name, relativeTo string, global *dict, r ref) (*lcontext, error) {
	isAbs := strings.HasPrefix(path, "/")
	path = strings.ReplaceAll(path, `\`, "/")
	if !isAbs {
		if relativeTo == "" {
			return nil, r.errorf("ValueError", "Cannot resolve relative uri %s; no relative_to keyword argument given", pyRepr(uri))
		}
		relativeTo = strings.ReplaceAll(relativeTo, `\`, "/")
		if strings.HasSuffix(relativeTo, "/") {
			path = relativeTo + path
		} else {
			path = relativeTo + "/" + path
		}
	}
	if strings.HasPrefix(path, "///") {
		path = path[2:]
	}
	if p, err := url.PathUnescape(pyUnquotable(path)); err == nil {
		path = p
	}
	l, err := newConfigLoader(st, path, r)
	if err != nil {
		return nil, err
	}
	if global != nil && global.len() > 0 {
		l.updateDefaults(global)
	}
	return l.getContext(st, ot, name, global, r)
}

// pyUnquotable protects "%" not followed by two hex digits, which Python's
// unquote leaves alone but url.PathUnescape rejects.
func pyUnquotable(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && !(i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2])) {
			b.WriteString("%25")
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// configLoader is loadwsgi.ConfigLoader.
type configLoader struct {
	filename string
	file     *File
}

func newConfigLoader(st *loadState, filename string, r ref) (*configLoader, error) {
	filename = pyStrip(filename)
	abs, err := filepath.Abs(filename)
	if err != nil {
		return nil, r.errorf("ValueError", "resolve %s: %v", filename, err)
	}
	data, err := readConfigFile(st, filename)
	if err != nil {
		return nil, r.errorf(osErrorClass(err), "%s", pyOSError(err, filename))
	}
	defaults := []*Option{
		{Key: "here", Value: filepath.Dir(abs), Pos: Pos{File: filename}},
		{Key: "__file__", Value: abs, Pos: Pos{File: filename}},
	}
	f, err := Parse(filename, data, defaults)
	if err != nil {
		return nil, err
	}
	return &configLoader{filename: filename, file: f}, nil
}

func readConfigFile(st *loadState, name string) ([]byte, error) {
	if data, ok := st.files[name]; ok {
		st.markRead(name)
		return data, nil
	}
	data, err := ReadRegularFile(name)
	if err != nil {
		return nil, err
	}
	if st.files == nil {
		st.files = make(map[string][]byte)
	}
	st.files[name] = data
	st.markRead(name)
	return data, nil
}

// markRead records that the load used file name (from disk or from
// LoadOptions.Files).
func (st *loadState) markRead(name string) {
	if st.read == nil {
		st.read = make(map[string]bool)
	}
	st.read[name] = true
}

// errIsDir is the error of a config path that is a directory.
var errIsDir = regfile.ErrIsDir

// ReadRegularFile reads a config file and refuses anything but a regular
// file (or one over 16 MiB), without blocking on a FIFO put at the path
// (package regfile).
func ReadRegularFile(name string) ([]byte, error) {
	return regfile.Read(name, maxFileBytes)
}

func osErrorClass(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "FileNotFoundError"
	case errors.Is(err, fs.ErrPermission):
		return "PermissionError"
	case errors.Is(err, errIsDir):
		return "IsADirectoryError"
	}
	return "OSError"
}

func pyOSError(err error, name string) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "[Errno 2] No such file or directory: " + pyRepr(name)
	case errors.Is(err, fs.ErrPermission):
		return "[Errno 13] Permission denied: " + pyRepr(name)
	case errors.Is(err, errIsDir):
		return "[Errno 21] Is a directory: " + pyRepr(name)
	}
	return err.Error()
}

// updateDefaults is ConfigLoader.update_defaults(overwrite=False).
func (l *configLoader) updateDefaults(global *dict) {
	for _, k := range global.keys {
		if l.file.Defaults.Get(k) != nil {
			continue
		}
		l.file.Defaults.set(&Option{Key: k, Value: global.m[k].val, Pos: global.m[k].pos})
	}
}

// defaults is NicerConfigParser.defaults: every DEFAULT value interpolated,
// the raw text kept when interpolation yields "".
func (l *configLoader) defaults() (*dict, error) {
	d := newDict()
	for _, o := range l.file.Defaults.Options {
		v, err := l.interpolate(nil, o)
		if err != nil {
			return nil, err
		}
		if v == "" {
			v = o.Value
		}
		d.set(o.Key, v, o.Pos)
	}
	return d, nil
}

// options is RawConfigParser.options: the section's keys, then the DEFAULT
// keys it does not redefine.
func (l *configLoader) options(s *Section) []*Option {
	out := append([]*Option(nil), s.Options...)
	for _, o := range l.file.Defaults.Options {
		if s.Get(o.Key) == nil {
			out = append(out, o)
		}
	}
	return out
}

const maxInterpolationDepth = 10

var interpKeyRe = regexp.MustCompile(`^%\(([^)]+)\)s`)

// interpolate is BasicInterpolation.before_get for option o of section s
// (nil for DEFAULT), re-labelled like NicerConfigParser.InterpolateWrapper.
func (l *configLoader) interpolate(s *Section, o *Option) (string, error) {
	if !strings.Contains(o.Value, "%") {
		return o.Value, nil
	}
	sectName := "DEFAULT"
	if s != nil {
		sectName = s.Name
	}
	lookup := func(name string) (string, bool) {
		if s != nil {
			if v := s.Get(name); v != nil {
				return v.Value, true
			}
		}
		if v := l.file.Defaults.Get(name); v != nil {
			return v.Value, true
		}
		return "", false
	}
	var b strings.Builder
	var walk func(rest string, depth int) error
	walk = func(rest string, depth int) error {
		if depth > maxInterpolationDepth {
			return fmt.Errorf("InterpolationDepthError\x00Recursion limit exceeded in value substitution: option %s in section %s contains an interpolation key which cannot be substituted in %d steps. Raw value: %s",
				pyRepr(o.Key), pyRepr(sectName), maxInterpolationDepth, pyRepr(o.Value))
		}
		for rest != "" {
			p := strings.IndexByte(rest, '%')
			if p < 0 {
				b.WriteString(rest)
				return nil
			}
			b.WriteString(rest[:p])
			rest = rest[p:]
			c := ""
			if len(rest) > 1 {
				c = rest[1:2]
			}
			switch c {
			case "%":
				b.WriteByte('%')
				rest = rest[2:]
			case "(":
				m := interpKeyRe.FindStringSubmatch(rest)
				if m == nil {
					return fmt.Errorf("InterpolationSyntaxError\x00bad interpolation variable reference %s", pyRepr(rest))
				}
				name := m[1]
				rest = rest[len(m[0]):]
				v, ok := lookup(name)
				if !ok {
					return fmt.Errorf("InterpolationMissingOptionError\x00Bad value substitution: option %s in section %s contains an interpolation key %s which is not a valid option name. Raw value: %s",
						pyRepr(o.Key), pyRepr(sectName), pyRepr(name), pyRepr(o.Value))
				}
				if strings.Contains(v, "%") {
					if err := walk(v, depth+1); err != nil {
						return err
					}
				} else {
					b.WriteString(v)
				}
			default:
				return fmt.Errorf("InterpolationSyntaxError\x00'%%' must be followed by '%%' or '(', found: %s", pyRepr(rest))
			}
		}
		return nil
	}
	if err := walk(o.Value, 1); err != nil {
		class, msg, _ := strings.Cut(err.Error(), "\x00")
		return "", &Error{Pos: o.Pos, Section: sectName, Class: class,
			Msg: fmt.Sprintf("Error in file %s: %s", l.filename, msg)}
	}
	return b.String(), nil
}

// getValue is ConfigParser.get(section, option) with interpolation.
func (l *configLoader) getValue(s *Section, o *Option) (string, error) {
	// An option inherited from DEFAULT interpolates in the section's scope.
	return l.interpolate(s, o)
}

// getContext is ConfigLoader.get_context.
func (l *configLoader) getContext(st *loadState, ot objType, name string, global *dict, r ref) (*lcontext, error) {
	if err := st.enter(r); err != nil {
		return nil, err
	}
	defer st.leave()
	if absoluteRe.MatchString(name) {
		return loadContext(st, ot, name, nil, filepath.Dir(l.filename), global, r)
	}
	sect, err := l.findConfigSection(ot, name, r)
	if err != nil {
		return nil, err
	}
	defaults, err := l.defaults()
	if err != nil {
		return nil, err
	}
	g := defaults.copy()
	if global != nil {
		g.update(global)
	}
	local := newDict()
	additions := newDict()
	type getLine struct {
		glob string
		pos  Pos
	}
	var getNames []string
	gets := map[string]getLine{}
	for _, o := range l.options(sect) {
		switch {
		case strings.HasPrefix(o.Key, "set "):
			n := pyStrip(o.Key[4:])
			v, err := l.getValue(sect, o)
			if err != nil {
				return nil, err
			}
			additions.set(n, v, o.Pos)
			g.set(n, v, o.Pos)
		case strings.HasPrefix(o.Key, "get "):
			n := pyStrip(o.Key[4:])
			v, err := l.getValue(sect, o)
			if err != nil {
				return nil, err
			}
			if _, seen := gets[n]; !seen {
				getNames = append(getNames, n)
			}
			gets[n] = getLine{v, o.Pos}
		default:
			if defaults.has(o.Key) {
				continue
			}
			v, err := l.getValue(sect, o)
			if err != nil {
				return nil, err
			}
			local.set(o.Key, v, o.Pos)
		}
	}
	for _, n := range getNames {
		gl := gets[n]
		v, ok := g.get(gl.glob)
		if !ok {
			return nil, &Error{Pos: gl.pos, Section: sect.Name, Class: "KeyError", Msg: pyRepr(gl.glob)}
		}
		local.set(n, v, gl.pos)
	}
	here := ref{pos: sect.Pos, section: sect.Name}
	var filterWith string
	var filterWithRef ref
	hasFilterWith := false
	if ot == otApp || ot == otFilter {
		if v, ok := local.get("filter-with"); ok {
			filterWithRef = ref{pos: local.posOf("filter-with"), section: sect.Name}
			local.del("filter-with")
			filterWith, hasFilterWith = v, true
		}
	}
	if local.has("require") {
		// Distributions are Python's business; paddock has none to check.
		local.del("require")
	}
	var ctx *lcontext
	switch {
	case strings.HasPrefix(sect.Name, "filter-app:"):
		ctx, err = l.filterAppContext(st, sect, g, local, additions)
	case strings.HasPrefix(sect.Name, "pipeline:"):
		ctx, err = l.pipelineContext(st, sect, g, local)
	case local.has("use"):
		ctx, err = l.contextFromUse(st, ot, sect, g, local, additions)
	default:
		ctx, err = l.contextFromExplicit(st, ot, sect, g, local)
	}
	if err != nil {
		return nil, err
	}
	ctx.section, ctx.sectPos = sect.Name, sect.Pos
	if ctx.ref.pos.File == "" {
		ctx.ref = here
	}
	if hasFilterWith {
		fw := &lcontext{ot: otFilterWith, global: g, local: local, loader: l, section: sect.Name, sectPos: sect.Pos, ref: filterWithRef}
		fw.filterCtx, err = l.getContext(st, otFilter, filterWith, g, filterWithRef)
		if err != nil {
			return nil, err
		}
		fw.nextCtx = ctx
		return fw, nil
	}
	return ctx, nil
}

// contextFromUse is ConfigLoader._context_from_use.
func (l *configLoader) contextFromUse(st *loadState, ot objType, sect *Section, g, local, additions *dict) (*lcontext, error) {
	useRef := ref{pos: local.posOf("use"), section: sect.Name}
	use, _ := local.pop("use")
	ctx, err := l.getContext(st, ot, use, g, useRef)
	if err != nil {
		return nil, err
	}
	ctx.global.update(additions)
	ctx.local.update(local)
	if v, ok := g.get("__file__"); ok {
		ctx.global.set("__file__", v, g.posOf("__file__"))
	}
	ctx.loader = l
	if ctx.protocol == "" {
		prefix, _, _ := strings.Cut(sect.Name, ":")
		switch prefix {
		case "application", "app":
			ctx.protocol = protoApp
		case "composit", "composite":
			ctx.protocol = protoComposit
		default:
			ctx.protocol = "paste." + prefix + "_factory"
		}
	}
	return ctx, nil
}

// contextFromExplicit is ConfigLoader._context_from_explicit.
func (l *configLoader) contextFromExplicit(st *loadState, ot objType, sect *Section, g, local *dict) (*lcontext, error) {
	type found struct{ protocol, expr string }
	var possible []found
	for _, group := range typeProtocols[ot] {
		for _, p := range group {
			if v, ok := local.get(p); ok {
				possible = append(possible, found{p, v})
				break
			}
		}
	}
	here := ref{pos: sect.Pos, section: sect.Name}
	if len(possible) > 1 {
		parts := make([]string, len(possible))
		for i, p := range possible {
			parts[i] = "(" + pyRepr(p.protocol) + ", " + pyRepr(p.expr) + ")"
		}
		return nil, here.errorf("LookupError", "Multiple protocols given in section %s: [%s]", pyRepr(sect.Name), strings.Join(parts, ", "))
	}
	if len(possible) == 0 {
		return nil, here.errorf("LookupError", "No loader given in section %s", pyRepr(sect.Name))
	}
	p := possible[0]
	keyRef := ref{pos: local.posOf(p.protocol), section: sect.Name}
	local.del(p.protocol)
	obj, err := st.world.entryPoint(p.expr, keyRef)
	if err != nil {
		return nil, err
	}
	return &lcontext{object: obj, ot: ot, protocol: p.protocol, global: g, local: local, loader: l, spec: p.expr, ref: keyRef}, nil
}

// filterAppContext is ConfigLoader._filter_app_context.
func (l *configLoader) filterAppContext(st *loadState, sect *Section, g, local, additions *dict) (*lcontext, error) {
	here := ref{pos: sect.Pos, section: sect.Name}
	if !local.has("next") {
		return nil, here.errorf("LookupError", "The [%s] section in %s is missing a 'next' setting", sect.Name, l.filename)
	}
	nextRef := ref{pos: local.posOf("next"), section: sect.Name}
	next, _ := local.pop("next")
	ctx := &lcontext{ot: otFilterApp, global: g, local: local, loader: l}
	var err error
	if ctx.nextCtx, err = l.getContext(st, otApp, next, g, nextRef); err != nil {
		return nil, err
	}
	if local.has("use") {
		ctx.filterCtx, err = l.contextFromUse(st, otFilter, sect, g, local, additions)
	} else {
		ctx.filterCtx, err = l.contextFromExplicit(st, otFilter, sect, g, local)
	}
	if err != nil {
		return nil, err
	}
	ctx.filterCtx.section, ctx.filterCtx.sectPos = sect.Name, sect.Pos
	return ctx, nil
}

// pipelineContext is ConfigLoader._pipeline_app_context.
func (l *configLoader) pipelineContext(st *loadState, sect *Section, g, local *dict) (*lcontext, error) {
	here := ref{pos: sect.Pos, section: sect.Name}
	if !local.has("pipeline") {
		return nil, here.errorf("LookupError", "The [%s] section in %s is missing a 'pipeline' setting", sect.Name, l.filename)
	}
	pRef := ref{pos: local.posOf("pipeline"), section: sect.Name}
	v, _ := local.pop("pipeline")
	names := strings.FieldsFunc(v, pyIsSpace)
	if local.len() > 0 {
		return nil, here.errorf("LookupError", "The [%s] pipeline section in %s has extra (disallowed) settings: %s", sect.Name, l.filename, strings.Join(local.keys, ", "))
	}
	if len(names) == 0 {
		return nil, pRef.errorf("IndexError", "list index out of range (the pipeline setting is empty)")
	}
	ctx := &lcontext{ot: otPipeline, global: g, local: local, loader: l}
	var err error
	if ctx.appCtx, err = l.getContext(st, otApp, names[len(names)-1], g, pRef); err != nil {
		return nil, err
	}
	for _, n := range names[:len(names)-1] {
		fc, err := l.getContext(st, otFilter, n, g, pRef)
		if err != nil {
			return nil, err
		}
		ctx.filterCtxs = append(ctx.filterCtxs, fc)
	}
	return ctx, nil
}

// findConfigSection is ConfigLoader.find_config_section.
func (l *configLoader) findConfigSection(ot objType, name string, r ref) (*Section, error) {
	var possible []*Section
	for _, group := range typePrefixes[ot] {
		for _, prefix := range group {
			found := l.findSections(prefix, name)
			if len(found) > 0 {
				possible = append(possible, found...)
				break
			}
		}
	}
	prefixes := flatten(typePrefixes[ot])
	quoted := make([]string, len(prefixes))
	for i, p := range prefixes {
		quoted[i] = pyRepr(p)
	}
	if len(possible) == 0 {
		return nil, r.errorf("LookupError", "No section %s (prefixed by %s) found in config %s", pyRepr(name), strings.Join(quoted, " or "), l.filename)
	}
	if len(possible) > 1 {
		names := make([]string, len(possible))
		for i, s := range possible {
			names[i] = pyRepr(s.Name)
		}
		return nil, r.errorf("LookupError", "Ambiguous section names [%s] for section %s (prefixed by %s) found in config %s", strings.Join(names, ", "), pyRepr(name), strings.Join(quoted, " or "), l.filename)
	}
	return possible[0], nil
}

// findSections is ConfigLoader._find_sections (name is never None here).
func (l *configLoader) findSections(prefix, name string) []*Section {
	var found []*Section
	for _, s := range l.file.Sections {
		if strings.HasPrefix(s.Name, prefix+":") && pyStrip(s.Name[len(prefix)+1:]) == name {
			found = append(found, s)
		}
	}
	return found
}

// eggLoader is loadwsgi.EggLoader.
type eggLoader struct {
	spec string // the distribution
	uri  string // the URI as written, for the graph
}

func (l *eggLoader) getContext(st *loadState, ot objType, name string, global *dict, r ref) (*lcontext, error) {
	if absoluteRe.MatchString(name) {
		return loadContext(st, ot, name, nil, "", global, r)
	}
	obj, protocol, err := st.world.findEgg(l.spec, name, l.uri, typeProtocols[ot], r)
	if err != nil {
		return nil, err
	}
	if global == nil || global.len() == 0 {
		global = newDict()
	}
	return &lcontext{object: obj, ot: ot, protocol: protocol, global: global, local: newDict(), loader: l, spec: l.uri, ref: r}, nil
}

// funcLoader is loadwsgi.FuncLoader.
type funcLoader struct {
	spec string // module:attr
	uri  string
}

func (l *funcLoader) getContext(st *loadState, ot objType, name string, global *dict, r ref) (*lcontext, error) {
	obj, err := st.world.lookupObject(l.spec, l.uri, r)
	if err != nil {
		return nil, err
	}
	if global == nil || global.len() == 0 {
		global = newDict()
	}
	return &lcontext{object: obj, ot: ot, global: global, local: newDict(), loader: l, spec: l.uri, ref: r}, nil
}

// create is LoaderContext.create: the object type's invoke.
func (st *loadState) create(c *lcontext) (any, error) {
	if err := st.enter(c.ref); err != nil {
		return nil, err
	}
	defer st.leave()
	switch c.ot {
	case otApp:
		switch c.protocol {
		case protoComposite, protoComposit:
			return st.world.invoke(c.object, &invocation{protocol: c.protocol, global: c.global, local: c.local, loader: c.loader, ctx: c})
		case protoApp:
			return st.world.invoke(c.object, &invocation{protocol: c.protocol, global: c.global, local: c.local, ctx: c})
		}
		return nil, c.ref.errorf("AssertionError", "Protocol %s unknown", pyProtocol(c.protocol))
	case otFilter, otServer:
		// A filter_factory / server_factory is called now; a
		// filter_app_factory / server_runner waits for its app
		// (filter_wrapper and server_wrapper in loadwsgi).
		direct, deferred := protoFilter, protoFilterApp
		if c.ot == otServer {
			direct, deferred = protoServer, protoServerRun
		}
		switch c.protocol {
		case direct:
			return st.world.invoke(c.object, &invocation{protocol: c.protocol, global: c.global, local: c.local, ctx: c})
		case deferred:
			return loaderFunc(func(app any) (any, error) {
				return st.world.invoke(c.object, &invocation{protocol: c.protocol, global: c.global, local: c.local, app: app, ctx: c})
			}), nil
		}
		return nil, c.ref.errorf("AssertionError", "Protocol %s unknown", pyProtocol(c.protocol))
	case otPipeline:
		app, err := st.create(c.appCtx)
		if err != nil {
			return nil, err
		}
		filters := make([]any, len(c.filterCtxs))
		for i, fc := range c.filterCtxs {
			if filters[i], err = st.create(fc); err != nil {
				return nil, err
			}
		}
		for i := len(filters) - 1; i >= 0; i-- {
			if app, err = st.apply(filters[i], app, c.filterCtxs[i].ref); err != nil {
				return nil, err
			}
		}
		return app, nil
	case otFilterApp:
		next, err := st.create(c.nextCtx)
		if err != nil {
			return nil, err
		}
		filter, err := st.create(c.filterCtx)
		if err != nil {
			return nil, err
		}
		return st.apply(filter, next, c.filterCtx.ref)
	case otFilterWith:
		filter, err := st.create(c.filterCtx)
		if err != nil {
			return nil, err
		}
		filtered, err := st.create(c.nextCtx)
		if err != nil {
			return nil, err
		}
		if c.nextCtx.ot == otApp {
			return st.apply(filter, filtered, c.ref)
		}
		return loaderFunc(func(app any) (any, error) {
			inner, err := st.apply(filtered, app, c.nextCtx.ref)
			if err != nil {
				return nil, err
			}
			return st.apply(filter, inner, c.ref)
		}), nil
	}
	return nil, c.ref.errorf("AssertionError", "unknown object type %d", c.ot)
}

// apply calls fn(arg).
func (st *loadState) apply(fn, arg any, r ref) (any, error) {
	if f, ok := fn.(loaderFunc); ok {
		return f(arg)
	}
	return st.world.apply(fn, arg, r)
}

func pyProtocol(p string) string {
	if p == "" {
		return "None"
	}
	return pyRepr(p)
}

// getApp is _Loader.get_app, for composites.
func (st *loadState) getApp(l loaderImpl, name string, global *dict, r ref) (any, error) {
	ctx, err := l.getContext(st, otApp, name, global, r)
	if err != nil {
		return nil, err
	}
	return st.create(ctx)
}

// load is loadwsgi.loadobj(type, "config:"+abspath, name).
func (st *loadState) load(path, name string, kind ObjectKind) (any, error) {
	ot, err := kind.objType()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("pipeline: resolve %s: %w", path, err)
	}
	var namep *string
	if name != "" {
		namep = &name
	}
	top := ref{pos: Pos{File: abs}}
	ctx, err := loadContext(st, ot, "config:"+abs, namep, "", nil, top)
	if err != nil {
		return nil, err
	}
	st.top = ctx
	return st.create(ctx)
}
