package pipeline

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestConformance loads every run of the PasteDeploy conformance suite
// (testdata/conformance, copied from ../shared/conformance with the graphs
// the real Python PasteDeploy produced) and compares the canonical graph.
// Error runs compare the exception class, as check.sh ERRORS=class does.
func TestConformance(t *testing.T) {
	dirs, err := filepath.Glob("testdata/conformance/*/*")
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "main.ini")); err != nil {
			continue
		}
		expected, _ := filepath.Glob(filepath.Join(dir, "expected*.json"))
		sort.Strings(expected)
		for _, exp := range expected {
			runs++
			name, kind := conformanceArgs(t, dir, exp)
			t.Run(strings.TrimPrefix(dir, "testdata/conformance/")+"/"+filepath.Base(exp), func(t *testing.T) {
				want, err := os.ReadFile(exp)
				if err != nil {
					t.Fatal(err)
				}
				got, ok := GraphJSON(filepath.Join(dir, "main.ini"), name, kind)
				var wantV map[string]any
				if err := json.Unmarshal(want, &wantV); err != nil {
					t.Fatalf("%s: %v", exp, err)
				}
				if class, isErr := wantV["error"]; isErr {
					var gotV map[string]any
					if err := json.Unmarshal(got, &gotV); err != nil {
						t.Fatalf("output is not JSON: %v\n%s", err, got)
					}
					if ok || gotV["error"] != class {
						t.Fatalf("want error class %v, got:\n%s", class, got)
					}
					return
				}
				if !ok {
					t.Fatalf("load failed:\n%s", got)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("graph differs from PasteDeploy's\n--- want\n%s\n--- got\n%s", want, got)
				}
			})
		}
	}
	if runs < 300 {
		t.Fatalf("only %d conformance runs found; testdata/conformance is incomplete", runs)
	}
}

// conformanceArgs reads the run's args file as check.sh does.
func conformanceArgs(t *testing.T, dir, exp string) (string, ObjectKind) {
	t.Helper()
	s := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(exp), "expected"), ".json")
	s = strings.TrimPrefix(s, "-")
	argsFile := filepath.Join(dir, "args.txt")
	name := "main"
	if s != "" {
		argsFile = filepath.Join(dir, "args-"+s+".txt")
		name = s
	}
	kind := ObjectApp
	data, err := os.ReadFile(argsFile)
	if err != nil {
		return name, kind
	}
	fields := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	for i := 0; i+1 < len(fields); i++ {
		switch fields[i] {
		case "--name":
			name = fields[i+1]
		case "--kind":
			kind = ObjectKind(fields[i+1])
		}
	}
	return name, kind
}
