package pipeline

import (
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// writeINI writes files into a temp dir and returns the first one's path.
func writeINI(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	var first string
	for i := 0; i+1 < len(files); i += 2 {
		p := filepath.Join(dir, files[i])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(files[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = p
		}
	}
	return first
}

func get(t *testing.T, h http.Handler, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestLoadServesComposedGraph(t *testing.T) {
	path := writeINI(t, "site.ini", `
[DEFAULT]
greeting = hi

[composite:main]
use = egg:Paste#urlmap
/ = root
/api = api
/api/v2 = config:sub/v2.ini#v2

[app:root]
use = egg:paddock#hello
body = root %(greeting)s

[pipeline:api]
pipeline = request_id sizelimit api_app

[filter:request_id]
paste.filter_factory = oslo_middleware:RequestId.factory

[filter:sizelimit]
use = egg:oslo.middleware#sizelimit
max_request_body_size = 10

[app:api_app]
use = egg:paddock#hello
body = api
`, "sub/v2.ini", `
[app:v2]
use = egg:paddock#hello
body = v2 from %(here)s
`)
	p, err := Load(LoadOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tests := []struct{ path, body string }{
		{"/", "root hi"},
		{"/api/x", "api"},
		{"/api/v2/y", "v2 from " + filepath.Join(filepath.Dir(path), "sub")},
	}
	for _, tc := range tests {
		if code, body := get(t, p.Handler, tc.path); code != 200 || body != tc.body {
			t.Errorf("GET %s = %d %q, want 200 %q", tc.path, code, body, tc.body)
		}
	}
	rec := httptest.NewRecorder()
	p.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/x", nil))
	if rec.Header().Get("X-Openstack-Request-Id") == "" {
		t.Error("request_id filter did not run")
	}
	rec = httptest.NewRecorder()
	p.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/x", strings.NewReader(strings.Repeat("x", 11))))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", rec.Code)
	}
	if len(p.Files) != 2 {
		t.Errorf("Files = %v, want the main file and sub/v2.ini", p.Files)
	}
}

func TestLoadErrorsNameFileLineAndSection(t *testing.T) {
	tests := []struct {
		name, ini string
		want      []string // substrings of the error, in order of lines
	}{
		{"unknown factory with near match", "[app:main]\nuse = egg:paddock#helo\n",
			[]string{`main.ini:2: [app:main]: no factory registered for "egg:paddock#helo" (did you mean "egg:paddock#hello"`}},
		{"unknown explicit factory", "[pipeline:main]\npipeline = auth app\n[filter:auth]\npaste.filter_factory = keystonemiddleware.auth_token:filter_factory\n[app:app]\nuse = egg:paddock#hello\n",
			[]string{`main.ini:4: [filter:auth]: no factory registered for "keystonemiddleware.auth_token:filter_factory"`}},
		{"missing section", "[pipeline:main]\npipeline = nope app\n[app:app]\nuse = egg:paddock#hello\n",
			[]string{`main.ini:2: [pipeline:main]: No section 'nope' (prefixed by 'filter')`}},
		{"bad option value", "[app:main]\nuse = egg:paddock#hello\nstatus = abc\n",
			[]string{`main.ini:3: [app:main]: status: not an integer`}},
		{"filter used as app", "[app:main]\nuse = egg:paddock#cors\n",
			[]string{`main.ini:2: [app:main]: factory "egg:paddock#cors" builds a filter`}},
		{"interpolation", "[app:main]\nuse = egg:paddock#hello\nbody = %(nope)s\n",
			[]string{`main.ini:3: [app:main]: Bad value substitution: option 'body'`, `'nope'`}},
		{"filter-with quirk refused", "[app:main]\nuse = pipe\nfilter-with = f\n[pipeline:pipe]\npipeline = f hello\n[filter:f]\nuse = egg:paddock#cors\n[app:hello]\nuse = egg:paddock#hello\n",
			[]string{`filter-with quirk`, `put the filter into the pipeline`}},
		{"call without a section", "[pipeline:main]\npipeline = call:paddock_test:app\n",
			[]string{`main.ini:2: [pipeline:main]: Protocol None unknown`}},
	}
	reg := NewDefaultRegistry()
	reg.Register(helloFactory(), "call:paddock_test:app")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeINI(t, "main.ini", tc.ini)
			_, err := Load(LoadOptions{Path: path, Registry: reg})
			if err == nil {
				t.Fatal("loaded")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			var le *Error
			if !errors.As(err, &le) || le.Pos.File == "" {
				t.Errorf("error %v carries no position", err)
			}
		})
	}
}

func TestCheckReportsEveryParseError(t *testing.T) {
	path := writeINI(t, "main.ini", "[app:main]\nuse = egg:paddock#hello\njunk line\n[filter:x]\nmore junk\n")
	_, err := Check(LoadOptions{Path: path})
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("want 2 problems, got %v", err)
	}
	for i, w := range []string{"main.ini:3: [app:main]: not a section header or key = value line: 'junk line'", "main.ini:5: [filter:x]:"} {
		if !strings.Contains(list[i].Error(), w) {
			t.Errorf("problem %d = %q, want %q", i, list[i].Error(), w)
		}
	}
}

func TestCheckReportsEveryProblem(t *testing.T) {
	path := writeINI(t, "main.ini", `[pipeline:main]
pipeline = authtoken keystonecontext sizelimit api

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[filter:keystonecontext]
paste.filter_factory = nova.api.auth:NovaKeystoneContext.factory

[filter:sizelimit]
use = egg:paddock#sizelimit
max_request_body_size = 100
colour = blue

[app:api]
paste.app_factory = nova.api.openstack.compute:APIRouterV21.factory
filter-with = status

[filter:status]
use = egg:paddock#healthcheck_filter
detailed = sometimes
`)
	p, err := Check(LoadOptions{Path: path})
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("want an ErrorList, got %v", err)
	}
	want := []string{
		"main.ini:16: [app:api]: no factory registered",
		"main.ini:5: [filter:authtoken]: no factory registered",
		"main.ini:8: [filter:keystonecontext]: no factory registered",
		"main.ini:21: [filter:status]: detailed",
	}
	if len(list) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(list), len(want), list)
	}
	for i, w := range want {
		if !strings.Contains(list[i].Error(), w) {
			t.Errorf("problem %d = %q, want %q", i, list[i].Error(), w)
		}
	}
	if p == nil || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Error(), `main.ini:13: [filter:sizelimit]: option "colour" is not used`) {
		t.Errorf("warnings = %v, want the unused option colour at line 13", p.Warnings)
	}
}

// TestGraphText compares `check --graph text` output with golden files;
// go test -run TestGraphText -update rewrites them.
func TestGraphText(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/graph/*.ini")
	if len(inputs) == 0 {
		t.Fatal("no testdata/graph/*.ini")
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			g, err := Graph(in, "", ObjectApp)
			if err != nil {
				t.Fatal(err)
			}
			abs, _ := filepath.Abs(filepath.Dir(in))
			got := strings.ReplaceAll(GraphText(g), abs, ".")
			golden := strings.TrimSuffix(in, ".ini") + ".txt"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("graph text differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestRegistryRejectsMistakes(t *testing.T) {
	mustPanic := func(name string, fn func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		fn()
	}
	r := NewRegistry()
	r.Register(helloFactory(), "egg:x#a")
	mustPanic("duplicate", func() { r.Register(helloFactory(), "egg:X#a") })
	mustPanic("empty name", func() { r.Register(helloFactory(), "") })
	mustPanic("no name", func() { r.Register(helloFactory()) })
	mustPanic("nil func", func() { r.Register(Factory{Kind: KindApp}, "egg:x#b") })
	for _, spec := range []string{"egg:x#a", "EGG:X#a", "egg:x.#a"} {
		if _, ok := r.Lookup(spec); !ok && spec != "egg:x.#a" {
			t.Errorf("Lookup(%q) failed", spec)
		}
	}
	if got := CanonicalSpec("egg:Oslo.Middleware"); got != "egg:oslo_middleware#main" {
		t.Errorf("CanonicalSpec = %q", got)
	}
	if got := CanonicalSpec("mod.sub : attr [extra]"); got != "mod.sub:attr" {
		t.Errorf("CanonicalSpec = %q", got)
	}
}

func TestGraphDot(t *testing.T) {
	g, err := Graph("testdata/graph/openstack.ini", "", ObjectApp)
	if err != nil {
		t.Fatal(err)
	}
	dot := GraphDot(g)
	for _, want := range []string{
		"digraph paddock {",
		`[label="composite\negg:Paste#urlmap"]`,
		`[label="/v2.1"]`,
		`[label="app\nnova.api.openstack.compute:APIRouterV21.factory"]`,
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("dot output lacks %s:\n%s", want, dot)
		}
	}
	nodes := 0
	for _, line := range strings.Split(dot, "\n") {
		if strings.HasPrefix(line, "  n") && !strings.HasPrefix(line, "  node") && !strings.Contains(line, "->") {
			nodes++
		}
	}
	if strings.Count(dot, "->") != nodes-1 {
		t.Errorf("every node but the root should have one incoming edge:\n%s", dot)
	}
}

func TestCheckLooksInsideUnknownComposites(t *testing.T) {
	path := writeINI(t, "main.ini", `[composite:main]
use = call:nova.api.openstack.urlmap:urlmap_factory
/ = versions
/v2.1 = api

[app:versions]
use = egg:paddock#hello

[pipeline:api]
pipeline = authtoken authtoken2 app

[filter:authtoken]
use = egg:keystonemiddleware#auth_token

[filter:authtoken2]
use = egg:keystonemiddleware#auth_token

[app:app]
use = egg:paddock#hello
status = oops
`)
	_, err := Check(LoadOptions{Path: path})
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("want an ErrorList, got %v", err)
	}
	want := []string{
		`main.ini:2: [composite:main]: no factory registered for "call:nova.api.openstack.urlmap:urlmap_factory"`,
		`main.ini:13: [filter:authtoken]: no factory registered for "egg:keystonemiddleware#auth_token"`,
		`main.ini:16: [filter:authtoken2]: no factory registered`,
		`main.ini:20: [app:app]: status`,
	}
	if len(list) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(list), len(want), list)
	}
	for i, w := range want {
		if !strings.Contains(list[i].Error(), w) {
			t.Errorf("problem %d = %q, want %q", i, list[i].Error(), w)
		}
	}
}

// A load given an earlier load's Contents builds from those bytes, not
// from the files as they are now: a worker loads exactly what its master
// validated.
func TestLoadFromContents(t *testing.T) {
	path := writeINI(t, "main.ini", "[composite:main]\nuse = egg:paddock#urlmap\n/ = root\n/sub = config:sub.ini#sub\n\n[app:root]\nuse = egg:paddock#hello\nbody = root A\n",
		"sub.ini", "[app:sub]\nuse = egg:paddock#hello\nbody = sub A\n")
	first, err := Load(LoadOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	if len(first.Contents) != 2 || len(first.Files) != 2 {
		t.Fatalf("Files %v, Contents for %d files; want the main file and sub.ini", first.Files, len(first.Contents))
	}
	// The files change on disk (one becomes invalid) after validation.
	sub := first.Files[1]
	if err := os.WriteFile(path, []byte("[app:main]\nbroken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sub, []byte("[app:sub]\nuse = egg:paddock#hello\nbody = sub B\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(LoadOptions{Path: path, Files: first.Contents})
	if err != nil {
		t.Fatalf("load from the validated contents: %v", err)
	}
	defer p.Close()
	for _, tc := range []struct{ path, body string }{{"/", "root A"}, {"/sub/x", "sub A"}} {
		if code, body := get(t, p.Handler, tc.path); code != 200 || body != tc.body {
			t.Errorf("GET %s = %d %q, want 200 %q", tc.path, code, body, tc.body)
		}
	}
	if !slices.Equal(p.Files, first.Files) {
		t.Errorf("Files = %v, want %v", p.Files, first.Files)
	}
	// Without Contents the load sees the disk.
	if _, err := Load(LoadOptions{Path: path}); err == nil {
		t.Error("load of the broken file on disk succeeded")
	}
}
