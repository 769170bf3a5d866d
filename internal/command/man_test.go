package command

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"paddock/man"
)

// update rewrites golden files: go test -run TestManPages -update ./internal/command/internal/command
var update = flag.Bool("update", false, "rewrite the committed man pages (man/paddock.8, man/paddock.ini.5)")

// manFiles are the committed pages, by section.
var manFiles = []struct{ section, path string }{
	{"8", "../../man/paddock.8"},
	{"5", "../../man/paddock.ini.5"},
}

// TestManPages regenerates both pages and compares them with the committed
// files (golang's TestDocsUpToDate): a flag, a setting, a factory or a
// word of man/*.md changed without the pages being rendered again fails
// here. -update rewrites them.
func TestManPages(t *testing.T) {
	for _, mf := range manFiles {
		t.Run(mf.section, func(t *testing.T) {
			got, err := manPage(mf.section, man.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(mf.path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(mf.path)
			if err != nil {
				t.Fatalf("%v\nrender it with: go test -run TestManPages -update ./internal/command", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale (the CLI, worker.Known(), the registry or man/*.md changed):\n%s\nregenerate it with: go test -run TestManPages -update ./internal/command",
					mf.path, firstDiff(want, got))
			}

			// paddock man prints the same bytes.
			t.Setenv("SOURCE_DATE_EPOCH", "")
			var stdout, stderr bytes.Buffer
			if code := Run([]string{"paddock", "man", "--section", mf.section}, &stdout, &stderr, Build{}); code != ExitOK {
				t.Fatalf("paddock man --section %s: exit %d: %s", mf.section, code, stderr.String())
			}
			if !bytes.Equal(stdout.Bytes(), got) {
				t.Errorf("paddock man --section %s differs from the rendered page:\n%s", mf.section, firstDiff(got, stdout.Bytes()))
			}
		})
	}
}

// firstDiff shows the first line where got differs from want, with two
// lines of context.
func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	var b strings.Builder
	for j := max(0, i-2); j < i; j++ {
		fmt.Fprintf(&b, "  %5d   %s\n", j+1, w[j])
	}
	if i < len(w) {
		fmt.Fprintf(&b, "- %5d   %s\n", i+1, w[i])
	}
	if i < len(g) {
		fmt.Fprintf(&b, "+ %5d   %s\n", i+1, g[i])
	}
	return b.String()
}

// TestManPagesLint runs the CI lint on a fresh rendering when groff is
// installed (.ci/run installs it and lints the committed files too).
func TestManPagesLint(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff not installed")
	}
	for _, mf := range manFiles {
		page, err := manPage(mf.section, man.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(groff, "-man", "-ww", "-z")
		cmd.Stdin = bytes.NewReader(page)
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff -man -ww -z on section %s: %v\n%s", mf.section, err, out)
		}
	}
}

func TestManCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		epoch    string
		wantCode int
		want     string // in stdout, or in stderr when wantCode != 0
	}{
		{"default is 8", []string{"man"}, "", ExitOK, "\n.TH PADDOCK 8 \"\" \"paddock\" \"System Manager's Manual\"\n"},
		{"section 5", []string{"man", "-s", "5"}, "", ExitOK, "\n.TH PADDOCK.INI 5 \"\" \"paddock\" \"File Formats Manual\"\n"},
		{"dated", []string{"man", "--section", "8"}, "86400", ExitOK, "\n.TH PADDOCK 8 \"1970-01-02\" \"paddock\""},
		{"bad section", []string{"man", "--section", "1"}, "", ExitUsage, `--section "1": want 8 (paddock) or 5 (paddock.ini)`},
		{"argument", []string{"man", "5"}, "", ExitUsage, `unexpected argument "5"`},
		{"bad epoch", []string{"man"}, "yesterday", ExitUsage, "SOURCE_DATE_EPOCH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tc.epoch)
			var stdout, stderr bytes.Buffer
			code := Run(append([]string{"paddock"}, tc.args...), &stdout, &stderr, Build{})
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.wantCode, stderr.String())
			}
			out := stdout.String()
			if code != ExitOK {
				out = stderr.String()
				if stdout.Len() > 0 {
					t.Errorf("stdout on failure: %.200s", stdout.String())
				}
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output lacks %q:\n%.400s", tc.want, out)
			}
		})
	}
}

// TestManEnvironment checks the ENVIRONMENT section of paddock(8) against
// the code, both ways: every variable the code reads or sets is
// documented (exactly, or by a family such as PADDOCK_WORKER_*), and every
// variable man.Environ documents is still in the code.
func TestManEnvironment(t *testing.T) {
	inCode := envVarsInCode(t, "../..") // the whole module
	if len(inCode) < 10 {
		t.Fatalf("found only %d variables in the code; the scan is broken: %v", len(inCode), inCode)
	}
	documented := man.EnvNames(newApp(io.Discard, io.Discard))
	page, err := manPage("8", man.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var families []string
	for _, d := range documented {
		if strings.HasSuffix(d, "*") {
			families = append(families, strings.TrimSuffix(d, "*"))
		}
	}
	for _, name := range sortedNames(inCode) {
		onPage := name
		if !slices.Contains(documented, name) {
			i := slices.IndexFunc(families, func(p string) bool { return strings.HasPrefix(name, p) })
			if i < 0 {
				t.Errorf("%s (%s) is not in paddock(8)'s ENVIRONMENT: declare it on a flag, or add it to man.Environ (man/env.go)", name, strings.Join(inCode[name], ", "))
				continue
			}
			onPage = families[i] + "*"
		}
		if !bytes.Contains(page, []byte(onPage)) {
			t.Errorf("%s is documented but not on the rendered page", onPage)
		}
	}
	for _, v := range man.Environ {
		if p, family := strings.CutSuffix(v.Name, "*"); family {
			if !slices.ContainsFunc(sortedNames(inCode), func(n string) bool { return strings.HasPrefix(n, p) }) {
				t.Errorf("man.Environ documents %s, but the code has no such variable any more", v.Name)
			}
			continue
		}
		if _, ok := inCode[v.Name]; !ok {
			t.Errorf("man.Environ documents %s, but the code no longer reads or sets it: remove it from man/env.go", v.Name)
		}
	}
}

func sortedNames(m map[string][]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// envName is what an environment variable's name looks like; a trailing
// "_" is a prefix (PADDOCK_ + setting), not a variable.
var envName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*[A-Z0-9]$`)

// isEnvWord reports whether an identifier is about the environment:
// Getenv, LookupEnv, env, EnvVars, FallbackEnvs, envListenPID, notifyEnv.
func isEnvWord(name string) bool { return strings.Contains(strings.ToLower(name), "env") }

// envVarsInCode finds the environment variables the non-test Go code
// under root names, with where: string literals that are arguments of a
// call to a function whose name says env (os.Getenv, os.LookupEnv,
// lookupEnv, env), or sit in the value of a constant, variable, field or
// struct key whose name says env (EnvVars, Envs, envListenPID,
// upgradeEnvVar); a constant passed to such a call counts too. man/ (whose
// list is what is checked), bench/, examples/ and testdata are skipped.
func envVarsInCode(t *testing.T, root string) map[string][]string {
	t.Helper()
	found := make(map[string][]string)
	fset := token.NewFileSet()
	add := func(lit *ast.BasicLit) {
		if lit == nil || lit.Kind != token.STRING {
			return
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil || !envName.MatchString(s) {
			return
		}
		p := fset.Position(lit.Pos())
		found[s] = append(found[s], fmt.Sprintf("%s:%d", p.Filename, p.Line))
	}
	addAll := func(n ast.Node) {
		ast.Inspect(n, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok {
				add(lit)
			}
			return true
		})
	}
	name := func(e ast.Expr) string {
		switch e := e.(type) {
		case *ast.Ident:
			return e.Name
		case *ast.SelectorExpr:
			return e.Sel.Name
		}
		return ""
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "man", "bench", "examples", "testdata":
				return filepath.SkipDir
			}
			if path != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		consts := make(map[string]*ast.BasicLit) // string constants of the file, for env(NAME)
		ast.Inspect(f, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok {
				for i, id := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
							consts[id.Name] = lit
						}
					}
				}
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if isEnvWord(name(n.Fun)) {
					for _, a := range n.Args {
						switch a := a.(type) {
						case *ast.BasicLit:
							add(a)
						case *ast.Ident:
							add(consts[a.Name])
						}
					}
				}
			case *ast.ValueSpec:
				for _, id := range n.Names {
					if isEnvWord(id.Name) {
						for _, v := range n.Values {
							addAll(v)
						}
						break
					}
				}
			case *ast.KeyValueExpr:
				if isEnvWord(name(n.Key)) {
					addAll(n.Value)
				}
			case *ast.AssignStmt:
				for _, l := range n.Lhs {
					if isEnvWord(name(l)) {
						for _, r := range n.Rhs {
							addAll(r)
						}
						break
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
