package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// This file is the stub world of the conformance suite
// (../shared/conformance/FORMAT.md): every factory is replaced by a recorder
// and the load yields the composition graph PasteDeploy itself would
// build, as canonical JSON. It needs no registered factories, so
// `paddock check --graph json` answers for any config, Python names
// included.

// Node is one value of the composition graph: keys kind, factory, protocol,
// local_conf, global_conf and, by kind, app, not_found_app, apps, call,
// callee, arg.
type Node map[string]any

// closedEggs are the distributions whose entry points are known exactly
// (their real metadata); every other distribution is open.
var closedEggs = map[string]map[string][]string{
	"paste": {
		protoApp:       {"cgi", "pkg_resources", "proxy", "static", "test", "test_slow", "transparent_proxy", "urlparser", "watch_threads"},
		protoComposite: {"cascade", "urlmap"},
		protoFilterApp: {"auth_basic", "auth_cookie", "auth_digest", "auth_form", "auth_tkt", "cgitb", "config", "cowbell", "error_catcher", "errordocument", "evalerror", "flup_session", "grantip", "gzip", "httpexceptions", "lint", "openid", "paste_session", "pony", "printdebug", "profile", "recursive", "registry", "translogger", "wdg_validate"},
		protoServerRun: {"http"},
	},
	"pastedeploy": {protoFilterApp: {"config", "prefix"}},
	"pastescript": {
		protoApp:       {"test"},
		protoServerRun: {"cgi", "cherrypy", "flup_ajp_fork", "flup_ajp_thread", "flup_fcgi_fork", "flup_fcgi_thread", "flup_scgi_fork", "flup_scgi_thread", "twisted", "wsgiutils"},
	},
	"fakeapp": {
		protoApp:       {"basic_app", "other", "configed"},
		protoComposit:  {"remote_addr"},
		protoFilter:    {"caps"},
		protoFilterApp: {"caps2"},
	},
	"waitress": {protoServerRun: {"main"}},
}

var openGroups = map[string]bool{protoApp: true, protoFilter: true, protoServer: true}

func normalizeDist(name string) string {
	return strings.ToLower(distNormalizer.ReplaceAllString(name, "_"))
}

// recorder stands in for every factory PasteDeploy would import.
type recorder struct {
	spec     string
	isModule bool
}

// stubFilter is what a paste.filter_factory recorder returns: a callable
// taking the app.
type stubFilter struct{ data Node }

type stubWorld struct{ st *loadState }

func (w *stubWorld) findEgg(dist, name, uri string, groups [][]string, r ref) (any, string, error) {
	table, closed := closedEggs[normalizeDist(dist)]
	has := func(group string) bool {
		if closed {
			for _, n := range table[group] {
				if n == name {
					return true
				}
			}
			return false
		}
		return openGroups[group]
	}
	var possible []string
	for _, g := range groups {
		for _, p := range g {
			if has(p) {
				possible = append(possible, p)
				break
			}
		}
	}
	all := flatten(groups)
	switch {
	case len(possible) == 0:
		return nil, "", r.errorf("LookupError", "Entry point %s not found in egg %s (protocols: %s; entry_points: )", pyRepr(name), pyRepr(dist), strings.Join(all, ", "))
	case len(possible) > 1:
		return nil, "", r.errorf("LookupError", "Ambiguous entry points for %s in egg %s (protocols: %s)", pyRepr(name), pyRepr(dist), strings.Join(groups[len(groups)-1], ", "))
	}
	return &recorder{spec: uri}, possible[0], nil
}

// pyWord and pySpace approximate Python's Unicode \w and \s.
const (
	pyWord  = `[\p{L}\p{N}_]`
	pySpace = `[\t\n\v\f\r \x1c-\x1f\x85\p{Z}]`
)

// entryPointRe is importlib.metadata.EntryPoint.pattern.
var entryPointRe = regexp.MustCompile(`^(?P<module>(?:` + pyWord + `|\.)+)` + pySpace + `*(?::` + pySpace + `*(?P<attr>(?:` + pyWord + `|\.)+)` + pySpace + `*)?(?:(?P<extras>\[[^\n]*\])` + pySpace + `*)?\n?$`)

// parseEntryPoint splits an entry point expression into module and attr.
func parseEntryPoint(value string) (module, attr string, ok bool) {
	m := entryPointRe.FindStringSubmatch(value)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

func (w *stubWorld) entryPoint(value string, r ref) (any, error) {
	_, attr, ok := parseEntryPoint(value)
	if !ok {
		return nil, r.errorf("AttributeError", "'NoneType' object has no attribute 'group' (malformed entry point %s)", pyRepr(value))
	}
	return &recorder{spec: value, isModule: attr == ""}, nil
}

func (w *stubWorld) lookupObject(spec, uri string, r ref) (any, error) {
	parts := strings.Split(spec, ":")
	if len(parts) > 2 {
		return nil, r.errorf("ValueError", "too many values to unpack (expected 2)")
	}
	if parts[0] == "" {
		return nil, r.errorf("ValueError", "Empty module name")
	}
	return &recorder{spec: uri, isModule: parts[1] == ""}, nil
}

var kindByProtocol = map[string]string{
	protoApp:       "app",
	protoComposite: "composite",
	protoComposit:  "composite",
	protoFilter:    "filter",
	protoFilterApp: "filter",
	protoServer:    "server",
	protoServerRun: "server",
}

func baseNode(spec, protocol string, global, local *dict) Node {
	return Node{
		"kind":        kindByProtocol[protocol],
		"factory":     spec,
		"protocol":    protocol,
		"local_conf":  local.plain(),
		"global_conf": global.plain(),
	}
}

// IsURLKey reports whether a urlmap-like composite treats key as a path
// expression naming an app.
func IsURLKey(key string) bool {
	if strings.HasPrefix(key, "/") || strings.HasPrefix(key, "http://") || strings.HasPrefix(key, "https://") {
		return true
	}
	words := strings.FieldsFunc(key, pyIsSpace)
	return len(words) > 0 && (words[0] == "domain" || words[0] == "port")
}

func (w *stubWorld) invoke(obj any, inv *invocation) (any, error) {
	rec, ok := obj.(*recorder)
	if !ok {
		return nil, inv.ctx.ref.errorf("TypeError", "object is not callable")
	}
	if rec.isModule {
		return nil, inv.ctx.ref.errorf("TypeError", "'module' object is not callable")
	}
	switch p := inv.protocol; p {
	case protoApp, protoServer:
		return baseNode(rec.spec, p, inv.global, inv.local), nil
	case protoComposite, protoComposit:
		n := baseNode(rec.spec, p, inv.global, inv.local)
		conf := inv.local.copy()
		nf, ok := conf.pop("not_found_app")
		if !ok {
			nf, _ = inv.global.get("not_found_app")
		}
		n["not_found_app"] = nil
		if nf != "" {
			app, err := w.st.getApp(inv.loader, nf, inv.global, ref{pos: inv.local.posOf("not_found_app"), section: inv.ctx.section})
			if err != nil {
				return nil, err
			}
			n["not_found_app"] = app
		}
		apps := map[string]any{}
		for _, k := range conf.keys {
			if !IsURLKey(k) {
				continue
			}
			v, _ := conf.get(k)
			app, err := w.st.getApp(inv.loader, v, inv.global, ref{pos: conf.posOf(k), section: inv.ctx.section})
			if err != nil {
				return nil, err
			}
			apps[k] = app
		}
		n["apps"] = apps
		return n, nil
	case protoFilter:
		return &stubFilter{data: baseNode(rec.spec, p, inv.global, inv.local)}, nil
	case protoFilterApp, protoServerRun:
		n := baseNode(rec.spec, p, inv.global, inv.local)
		n["app"] = inv.app
		return n, nil
	}
	return nil, inv.ctx.ref.errorf("AssertionError", "oracle: recorder called with protocol %s", pyProtocol(inv.protocol))
}

func (w *stubWorld) apply(fn, arg any, r ref) (any, error) {
	switch f := fn.(type) {
	case *stubFilter:
		n := make(Node, len(f.data)+1)
		for k, v := range f.data {
			n[k] = v
		}
		n["app"] = arg
		return n, nil
	case Node:
		// An already built app called like a filter (the filter-with quirk).
		return Node{"kind": "misapplied", "callee": f, "arg": arg}, nil
	}
	return nil, r.errorf("TypeError", "object is not callable")
}

var placeholder = Node{"kind": "placeholder"}

// toGraph converts a loaded value to its JSON form, applying functions to
// the placeholder app.
func toGraph(st *loadState, v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case Node:
		out := make(map[string]any, len(x))
		for k, val := range x {
			switch k {
			case "app", "not_found_app", "callee", "arg":
				g, err := toGraph(st, val)
				if err != nil {
					return nil, err
				}
				out[k] = g
			case "apps":
				apps := map[string]any{}
				for ak, av := range val.(map[string]any) {
					g, err := toGraph(st, av)
					if err != nil {
						return nil, err
					}
					apps[ak] = g
				}
				out[k] = apps
			default:
				out[k] = val
			}
		}
		return out, nil
	case loaderFunc, *stubFilter:
		called, err := st.apply(x, placeholder, ref{})
		if err != nil {
			return nil, err
		}
		g, err := toGraph(st, called)
		if err != nil {
			return nil, err
		}
		return map[string]any{"kind": "function", "call": g}, nil
	}
	return nil, fmt.Errorf("pipeline: unexpected loaded object %T", v)
}

// Graph loads name (default "main") of the given kind from the config file
// at path in the stub world and returns the canonical composition graph:
// the value PasteDeploy's loader builds, as a JSON-ready tree. Load errors
// are *Error values carrying PasteDeploy's exception class.
func Graph(path, name string, kind ObjectKind) (any, error) {
	return GraphFrom(path, name, kind, nil)
}

// GraphFrom is Graph over files, config file contents by the names the
// load uses (LoadOptions.Files): a reload draws the graph from the same
// bytes it validated, not from the files as they are now.
func GraphFrom(path, name string, kind ObjectKind, files map[string][]byte) (any, error) {
	st := &loadState{files: maps.Clone(files)}
	st.world = &stubWorld{st: st}
	v, err := st.load(path, name, kind)
	if err != nil {
		return nil, err
	}
	return toGraph(st, v)
}

// GraphJSON renders Graph's result, or its error as {"error", "message"},
// as FORMAT.md's canonical JSON with the config's directory shown as ".".
// The boolean reports whether the load succeeded.
func GraphJSON(path, name string, kind ObjectKind) ([]byte, bool) {
	return GraphJSONFrom(path, name, kind, nil)
}

// GraphJSONFrom is GraphJSON over files (see GraphFrom).
func GraphJSONFrom(path, name string, kind ObjectKind, files map[string][]byte) ([]byte, bool) {
	g, err := GraphFrom(path, name, kind, files)
	ok := err == nil
	var v any = g
	if err != nil {
		v = ErrorObject(err)
	}
	abs, aerr := filepath.Abs(path)
	if aerr == nil {
		v = relativize(v, filepath.Dir(abs))
	}
	return canonicalJSON(v), ok
}

// ErrorObject is the {"error": CLASS, "message": MESSAGE} form of a load
// error.
func ErrorObject(err error) map[string]any {
	var pe *Error
	var list ErrorList
	switch {
	case errors.As(err, &list) && len(list) > 0:
		msgs := make([]string, len(list))
		for i, e := range list {
			msgs[i] = e.Error()
		}
		return map[string]any{"error": list[0].Class, "message": strings.Join(msgs, "\n")}
	case errors.As(err, &pe):
		return map[string]any{"error": pe.Class, "message": pe.Msg}
	}
	return map[string]any{"error": "Error", "message": err.Error()}
}

func relativize(v any, base string) any {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(x, base, ".")
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[strings.ReplaceAll(k, base, ".")] = relativize(val, base)
		}
		return out
	case map[string]string:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[strings.ReplaceAll(k, base, ".")] = strings.ReplaceAll(val, base, ".")
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = relativize(val, base)
		}
		return out
	}
	return v
}

// canonicalJSON is Python's json.dumps(v, indent=2, sort_keys=True,
// ensure_ascii=False) plus a newline.
func canonicalJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return []byte(fmt.Sprintf("{\"error\": \"TypeError\", \"message\": %q}\n", err.Error()))
	}
	// Python leaves U+2028/U+2029 unescaped with ensure_ascii=False.
	out := bytes.ReplaceAll(buf.Bytes(), []byte(`\u2028`), []byte("\u2028"))
	return bytes.ReplaceAll(out, []byte(`\u2029`), []byte("\u2029"))
}

// GraphText renders a graph as an indented tree for people.
func GraphText(g any) string {
	var b strings.Builder
	writeGraphText(&b, g, "", "")
	return b.String()
}

func writeGraphText(b *strings.Builder, v any, indent, label string) {
	m, ok := v.(map[string]any)
	if !ok {
		fmt.Fprintf(b, "%s%s(none)\n", indent, label)
		return
	}
	kind, _ := m["kind"].(string)
	switch kind {
	case "function":
		fmt.Fprintf(b, "%s%sfunction, applied to <app>:\n", indent, label)
		writeGraphText(b, m["call"], indent+"  ", "")
		return
	case "placeholder":
		fmt.Fprintf(b, "%s%s<app>\n", indent, label)
		return
	case "misapplied":
		fmt.Fprintf(b, "%s%smisapplied: an app called as a filter\n", indent, label)
		writeGraphText(b, m["callee"], indent+"  ", "callee: ")
		writeGraphText(b, m["arg"], indent+"  ", "arg: ")
		return
	}
	fmt.Fprintf(b, "%s%s%s %s (%s)\n", indent, label, kind, m["factory"], m["protocol"])
	if local, ok := m["local_conf"].(map[string]string); ok && len(local) > 0 {
		keys := make([]string, 0, len(local))
		for k := range local {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(b, "%s    %s = %s\n", indent, k, strings.ReplaceAll(local[k], "\n", "\n"+indent+"      "))
		}
	}
	if nf, ok := m["not_found_app"]; ok && nf != nil {
		writeGraphText(b, nf, indent+"  ", "not found: ")
	}
	if apps, ok := m["apps"].(map[string]any); ok {
		keys := make([]string, 0, len(apps))
		for k := range apps {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			writeGraphText(b, apps[k], indent+"  ", k+" -> ")
		}
	}
	if app, ok := m["app"]; ok {
		writeGraphText(b, app, indent+"  ", "")
	}
}
