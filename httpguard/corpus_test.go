package httpguard

import (
	"os"
	"path/filepath"
	"testing"
)

// Every request of the HTTP corpora (../../shared/corpora/http when
// present, else the main package's copy of part of it): net/http, reading
// what the guard delivers, sees no request the guard did not and ends each
// where it does, and the verdict does not depend on how the bytes arrive.
func TestCorpusAgainstGo(t *testing.T) {
	root := filepath.Join("..", "..", "shared", "corpora", "http")
	if _, err := os.Stat(root); err != nil {
		root = filepath.Join("..", "testdata", "corpus")
	}
	var files []string
	for _, pattern := range []string{"gunicorn/wire/*/*.bin", "llhttp/wire/*.bin"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 100 {
		t.Fatalf("only %d corpus files under %s", len(files), root)
	}
	refused := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		whole := follow(b, nil)
		checkAgainstGo(t, b, whole)
		if got := follow(b, cutsFrom(b)); !got.equal(whole) {
			t.Errorf("%s: split reads %v, whole %v", f, got, whole)
		}
		if whole.reason != "" {
			refused++
		}
	}
	t.Logf("%d requests from %s, %d refused by the guard", len(files), root, refused)
}
