package worker

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The table in protocol.go's comment lists every message type the
// channel has: a constant added without its line there fails here.
func TestProtocolTable(t *testing.T) {
	src, err := os.ReadFile("protocol.go")
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "protocol.go", src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Msg") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				n++
				if doc := gd.Doc.Text(); !strings.Contains(doc, `{"type":"`+v+`"`) {
					t.Errorf("%s (%q) is not in protocol.go's table of messages", name.Name, v)
				}
			}
		}
	}
	if n < 17 {
		t.Errorf("found %d message types, want at least 17", n)
	}
}
