package worker

import (
	"strings"
	"testing"

	"paddock/listener"
)

// guardAddresses refuses the watcher's reloads that would take the server
// off its addresses, and lets every other bind change through.
func TestGuardAddresses(t *testing.T) {
	spec := func(s string) listener.Spec {
		t.Helper()
		sp, err := listener.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	a, b, c := spec("127.0.0.1:9001"), spec("127.0.0.1:9002"), spec("127.0.0.1:9003")
	withServer := []byte("[server:main]\nuse = egg:paddock#http\n\n[app:main]\nuse = egg:paddock#hello\n")
	noServer := []byte("[app:main]\nuse = egg:paddock#hello\n")
	tests := []struct {
		name    string
		running []listener.Spec
		from    Source // where the running bind came from
		next    []listener.Spec
		data    []byte
		refused string // "" when applied
	}{
		{"same binds", []listener.Spec{a, b}, SourceFile, []listener.Spec{b, a}, withServer, ""},
		{"one added", []listener.Spec{a}, SourceFile, []listener.Spec{a, b}, withServer, ""},
		{"one of two removed", []listener.Spec{a, b}, SourceFile, []listener.Spec{a}, withServer, ""},
		{"moved to another address", []listener.Spec{a}, SourceFile, []listener.Spec{c}, withServer, "every address"},
		{"every address replaced", []listener.Spec{a, b}, SourceFile, []listener.Spec{c}, withServer, "every address"},
		{"no server section drops a file bind", []listener.Spec{a, b}, SourceFile, []listener.Spec{a}, noServer, "no [server:*] section"},
		{"no server section, bind from a flag", []listener.Spec{a, b}, SourceFlag, []listener.Spec{a}, noServer, ""},
		{"no server section, nothing dropped", []listener.Spec{a}, SourceEnv, []listener.Spec{a}, noServer, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arb := &Arbiter{
				opts:     ArbiterOptions{ConfigPath: "paste.ini"},
				set:      &listener.Set{},
				settings: &Settings{Bind: tt.running, Origins: map[string]Origin{"bind": {Source: tt.from}}},
			}
			err := arb.guardAddresses(&Settings{Bind: tt.next}, tt.data)
			switch {
			case tt.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refused != "" && err == nil:
				t.Fatal("applied, want refused")
			case tt.refused != "":
				for _, want := range []string{"paste.ini", "not applied", tt.refused, "paddock ctl reload"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
			}
		})
	}
}
