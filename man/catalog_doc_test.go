package man

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"paddock/pipeline"
)

// docs/catalog.md's table of factories is the registry's: every factory
// is a row, with its kind and every name it is registered under, and no
// row names something the registry does not have.
func TestCatalogDocMatchesRegistry(t *testing.T) {
	doc, err := os.ReadFile("../docs/catalog.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| \\[[^]]+\\]\\(#[^)]+\\) \\| (\\w+) \\| (.*) \\|$")
	names := regexp.MustCompile("`([^`]+)`")
	documented := make(map[string]string) // kind and first name -> "kind: names"
	for _, line := range strings.Split(string(doc), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var ns []string
		for _, n := range names.FindAllStringSubmatch(m[2], -1) {
			ns = append(ns, n[1])
		}
		slices.Sort(ns)
		documented[m[1]+" "+ns[0]] = m[1] + ": " + strings.Join(ns, " ")
	}
	if len(documented) == 0 {
		t.Fatal("no factory table found in docs/catalog.md")
	}
	registered := make(map[string]string)
	for _, f := range factories(pipeline.NewDefaultRegistry()) {
		if f.kind == pipeline.KindServer {
			continue // server factories are documented with the settings
		}
		ns := slices.Clone(f.names)
		slices.Sort(ns)
		kind := map[pipeline.Kind]string{pipeline.KindApp: "app", pipeline.KindComposite: "composite", pipeline.KindFilter: "filter", pipeline.KindFilterApp: "filter"}[f.kind]
		registered[kind+" "+ns[0]] = kind + ": " + strings.Join(ns, " ")
	}
	for first, want := range registered {
		if got, ok := documented[first]; !ok {
			t.Errorf("registered factory %q is not in docs/catalog.md's table", want)
		} else if got != want {
			t.Errorf("docs/catalog.md says %q, the registry %q", got, want)
		}
	}
	for first, got := range documented {
		if _, ok := registered[first]; !ok {
			t.Errorf("docs/catalog.md lists %q, which is not registered", got)
		}
	}
}
