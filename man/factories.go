package man

import (
	"fmt"
	"slices"
	"strings"

	"paddock/pipeline"
)

// factory is one built-in factory with every name it is registered under.
type factory struct {
	kind  pipeline.Kind
	doc   string
	names []string
}

// factories groups the names of r by factory. Registry entries carry no
// identity, so a factory is its kind and its Doc line; two factories
// with the same kind and Doc would be shown as one.
func factories(r *pipeline.Registry) []*factory {
	type key struct {
		kind pipeline.Kind
		doc  string
	}
	byKey := make(map[key]*factory)
	var out []*factory
	for _, name := range r.Names() {
		for _, f := range r.LookupAll(name) {
			k := key{f.Kind, f.Doc}
			g := byKey[k]
			if g == nil {
				g = &factory{kind: f.Kind, doc: f.Doc}
				byKey[k] = g
				out = append(out, g)
			}
			g.names = append(g.names, name)
		}
	}
	for _, g := range out {
		slices.SortStableFunc(g.names, func(a, b string) int { return nameRank(a) - nameRank(b) })
	}
	slices.SortFunc(out, func(a, b *factory) int { return strings.Compare(a.names[0], b.names[0]) })
	return out
}

// nameRank orders a factory's names: paddock's own egg name first, then
// other egg names, then entry points (Names is sorted already).
func nameRank(n string) int {
	switch {
	case strings.HasPrefix(strings.ToLower(n), "egg:paddock#"):
		return 0
	case strings.HasPrefix(n, "egg:"):
		return 1
	}
	return 2
}

// kindWords is how the page names a kind, with its PasteDeploy protocol.
func kindWords(k pipeline.Kind) string {
	article := "A"
	if k == pipeline.KindApp {
		article = "An"
	}
	return fmt.Sprintf("%s %s (%s)", article, k, code(k.Protocol()))
}

// namesLine is the generated sentence under a factory's heading: its kind
// and every name it is registered under.
func namesLine(f *factory) string {
	names := make([]string, len(f.names))
	for i, n := range f.names {
		names[i] = code(n)
	}
	return kindWords(f.kind) + ", registered as " + strings.Join(names, ", ") + "."
}

// factoryNotes expands the factory markers of the ini(5) page. A marker
// "factory KIND NAME" is replaced by the names line of the factory of that
// kind registered as NAME; "other-factories" by a short entry for every
// factory no marker named (a factory added without its documentation
// still shows up, with its names and one-line Doc). A marker naming no
// factory, or one named twice, is an error: the page would be wrong.
type factoryNotes struct {
	all  []*factory
	used map[*factory]bool
}

func newFactoryNotes(r *pipeline.Registry) *factoryNotes {
	return &factoryNotes{all: factories(r), used: make(map[*factory]bool)}
}

func (fn *factoryNotes) named(kind, name string) ([]string, error) {
	for _, f := range fn.all {
		if f.kind.String() != kind || !slices.Contains(f.names, name) {
			continue
		}
		if fn.used[f] {
			return nil, fmt.Errorf("man: factory %s %s is documented twice", kind, name)
		}
		fn.used[f] = true
		return []string{namesLine(f)}, nil
	}
	return nil, fmt.Errorf("man: no built-in %s factory is registered as %q (the page documents one that is gone or renamed)", kind, name)
}

func (fn *factoryNotes) others() []string {
	var out []string
	for _, f := range fn.all {
		if fn.used[f] {
			continue
		}
		fn.used[f] = true
		title := f.names[0]
		if i := strings.IndexByte(title, '#'); i >= 0 {
			title = title[i+1:]
		}
		out = append(out, "### "+inline(title), "", inline(f.doc)+".", "", namesLine(f), "")
	}
	return out
}
