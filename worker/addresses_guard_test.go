package worker

import (
	"path/filepath"
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
	// b is a unix socket: the held case opens it, and a path of the
	// test's own cannot be taken by another process as a port could.
	a, b, c := spec("127.0.0.1:9001"), spec("unix:"+filepath.Join(t.TempDir(), "b.sock")), spec("127.0.0.1:9003")
	withServer := []byte("[server:main]\nuse = egg:paddock#http\n\n[app:main]\nuse = egg:paddock#hello\n")
	noServer := []byte("[app:main]\nuse = egg:paddock#hello\n")
	tests := []struct {
		name    string
		running []listener.Spec
		from    Source // where the running bind came from
		next    []listener.Spec
		nextSrc Source          // where the new bind comes from
		held    []listener.Spec // removed binds still held for draining workers
		data    []byte
		refused string // "" when applied
	}{
		{"same binds", []listener.Spec{a, b}, SourceFile, []listener.Spec{b, a}, SourceFile, nil, withServer, ""},
		{"one added", []listener.Spec{a}, SourceFile, []listener.Spec{a, b}, SourceFile, nil, withServer, ""},
		{"one of two removed", []listener.Spec{a, b}, SourceFile, []listener.Spec{a}, SourceFile, nil, withServer, ""},
		{"moved to another address", []listener.Spec{a}, SourceFile, []listener.Spec{c}, SourceFile, nil, withServer, "every address"},
		{"every address replaced", []listener.Spec{a, b}, SourceFile, []listener.Spec{c}, SourceFile, nil, withServer, "every address"},
		// A config applied from a file caught half written moved the
		// server to a; the whole file names b (still held) and c.
		{"back onto a held address", []listener.Spec{a}, SourceFile, []listener.Spec{b, c}, SourceFile, []listener.Spec{b}, withServer, ""},
		{"no server section drops a file bind", []listener.Spec{a, b}, SourceFile, []listener.Spec{a}, SourceDefault, nil, noServer, "no [server:*] section"},
		{"no bind line drops a file bind", []listener.Spec{a, b}, SourceFile, []listener.Spec{a}, SourceDefault, nil, withServer, "names no bind"},
		{"no server section, bind from a flag", []listener.Spec{a, b}, SourceFlag, []listener.Spec{a}, SourceFlag, nil, noServer, ""},
		{"no server section, nothing dropped", []listener.Spec{a}, SourceEnv, []listener.Spec{a}, SourceEnv, nil, noServer, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arb := &Arbiter{
				opts:     ArbiterOptions{ConfigPath: "paste.ini"},
				set:      &listener.Set{},
				settings: &Settings{Bind: tt.running, Origins: map[string]Origin{"bind": {Source: tt.from}}},
			}
			if tt.held != nil {
				held, err := listener.Open(t.Context(), tt.held, listener.Options{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { held.Close() })
				arb.retiring = []retiringSet{{gen: 1, set: held}}
			}
			err := arb.guardAddresses(&Settings{Bind: tt.next, Origins: map[string]Origin{"bind": {Source: tt.nextSrc}}}, tt.data)
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
