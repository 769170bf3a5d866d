package reload

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs a Watcher on files until the test ends.
func start(t *testing.T, files ...string) *Watcher {
	t.Helper()
	w, err := New(files, hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: t.Output()}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx := t.Context()
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return w
}

func wantChange(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case <-w.Changes():
	case <-time.After(3 * time.Second):
		t.Fatal("no change reported")
	}
}

func wantNone(t *testing.T, w *Watcher, d time.Duration) {
	t.Helper()
	select {
	case <-w.Changes():
		t.Fatal("unexpected change reported")
	case <-time.After(d):
	}
}

// quiet is long enough for a debounce to fire.
const quiet = 3 * (Debounce + Settle)

func TestWatcherSaves(t *testing.T) {
	tests := []struct {
		name string
		save func(t *testing.T, path string)
	}{
		{"rename save", func(t *testing.T, path string) {
			tmp := path + ".tmp"
			write(t, tmp, "[app:main]\nv = 2\n")
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"vim save", func(t *testing.T, path string) {
			if err := os.Rename(path, path+"~"); err != nil {
				t.Fatal(err)
			}
			write(t, path, "[app:main]\nv = 2\n")
			if err := os.Remove(path + "~"); err != nil {
				t.Fatal(err)
			}
		}},
		{"in-place write", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("v = 2\n"); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncate and write", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			time.Sleep(20 * time.Millisecond) // an editor between its two steps
			if _, err := f.WriteString("[app:main]\nv = 2\n"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.ini")
			write(t, path, "[app:main]\nv = 1\n")
			w := start(t, path)
			tc.save(t, path)
			wantChange(t, w)
			wantNone(t, w, quiet)
			// The watch survived the save.
			write(t, path, "[app:main]\nv = 3\n")
			wantChange(t, w)
		})
	}
}

// A Kubernetes ConfigMap volume: app.ini -> ..data/app.ini, ..data ->
// ..v1; an update writes ..v2 and renames a new ..data symlink over the
// old one. No event names app.ini.
func TestWatcherConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(v, content string) {
		if err := os.Mkdir(filepath.Join(dir, v), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, v, "app.ini"), content)
	}
	swap := func(v string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(v, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	mk("..v1", "v = 1\n")
	swap("..v1")
	path := filepath.Join(dir, "app.ini")
	if err := os.Symlink(filepath.Join("..data", "app.ini"), path); err != nil {
		t.Fatal(err)
	}
	w := start(t, path)
	mk("..v2", "v = 2\n")
	swap("..v2")
	if err := os.RemoveAll(filepath.Join(dir, "..v1")); err != nil {
		t.Fatal(err)
	}
	wantChange(t, w)
	mk("..v3", "v = 3\n")
	swap("..v3")
	wantChange(t, w)
}

func TestWatcherDeleteAndRecreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.ini")
	write(t, path, "v = 1\n")
	w := start(t, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	wantNone(t, w, quiet) // gone: warned, nothing to reload
	write(t, path, "v = 1\n")
	wantNone(t, w, quiet) // back as it was
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(quiet)
	write(t, path, "v = 2\n")
	wantChange(t, w)
}

func TestWatcherDebouncesBursts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.ini")
	write(t, path, "v = 0\n")
	w := start(t, path)
	n := 0
	stop := time.After(1500 * time.Millisecond)
	count := func() {
		for {
			select {
			case <-w.Changes():
				n++
			case <-stop:
				return
			}
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); count() }()
	for i := range 100 {
		write(t, path, "v = "+string(rune('a'+i%26))+"\n")
		time.Sleep(10 * time.Millisecond)
	}
	<-done
	if n < 1 || n > 3 {
		t.Fatalf("%d changes for 100 writes in 1 s, want 1 to 3", n)
	}
}

func TestWatcherIgnoresNonChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.ini")
	write(t, path, "v = 1\n")
	w := start(t, path)
	// A touch, a chmod, the same bytes saved again, a neighbour's file.
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	write(t, path, "v = 1\n")
	write(t, filepath.Join(dir, "other.txt"), "x")
	wantNone(t, w, quiet)
	// An empty file (truncated, not written yet) is not a config.
	write(t, path, "")
	wantNone(t, w, quiet)
	write(t, path, "v = 2\n")
	wantChange(t, w)
}

func TestWatcherSetFiles(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	path, inc := filepath.Join(dir, "app.ini"), filepath.Join(other, "inc.ini")
	write(t, path, "v = 1\n")
	write(t, inc, "x = 1\n")
	w := start(t, path)
	if err := w.SetFiles([]string{path, inc}); err != nil {
		t.Fatal(err)
	}
	wantNone(t, w, quiet) // adding a file is not a change
	write(t, inc, "x = 2\n")
	wantChange(t, w)
	if err := w.SetFiles([]string{path}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(quiet)
	write(t, inc, "x = 3\n")
	wantNone(t, w, quiet)
}

// A file written in place in small pieces (truncate, then write a few
// bytes at a time with short pauses) is reported only once whole: every
// Snapshot after a change holds one of the complete versions, never a
// prefix, and the last one holds the last version.
func TestWatcherNeverReportsAFileHalfWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.ini")
	version := func(i int) string {
		return fmt.Sprintf("[server:main]\nbind = 127.0.0.1:%d\n\n[app:main]\nuse = egg:paddock#hello\nbody = v%d\n", 8000+i, i)
	}
	write(t, path, version(0))
	w := start(t, path)
	complete := map[string]bool{version(0): true}
	const versions = 12
	for i := 1; i <= versions; i++ {
		complete[version(i)] = true
	}
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-w.Changes():
				got = append(got, string(w.Snapshot()[path]))
			case <-time.After(2 * quiet):
				return
			}
		}
	}()
	for i := 1; i <= versions; i++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		data := []byte(version(i))
		for len(data) > 0 {
			n := min(7, len(data))
			if _, err := f.Write(data[:n]); err != nil {
				t.Fatal(err)
			}
			data = data[n:]
			time.Sleep(2 * time.Millisecond) // far below Debounce
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		// Around the debounce: some versions are replaced before they
		// settle, some are reported.
		time.Sleep(time.Duration(i%4) * (Debounce + Settle) / 2)
	}
	<-done
	if len(got) == 0 {
		t.Fatal("no change reported")
	}
	for _, s := range got {
		if !complete[s] {
			t.Errorf("reported a file half-written: %q", s)
		}
	}
	if last := got[len(got)-1]; last != version(versions) {
		t.Errorf("last snapshot %q, want the last version", last)
	}
}

// Two reads that disagree in bytes, size or modification time, or in
// whether the file could be read, are not a settled file.
func TestReadingSame(t *testing.T) {
	now := time.Now()
	base := fileState{data: []byte("a=1\n"), size: 4, modTime: now}
	tests := []struct {
		name string
		b    fileState
		same bool
	}{
		{"identical", base, true},
		{"other bytes", fileState{data: []byte("a=2\n"), size: 4, modTime: now}, false},
		{"other size", fileState{data: []byte("a=1\n"), size: 5, modTime: now}, false},
		{"other mtime", fileState{data: []byte("a=1\n"), size: 4, modTime: now.Add(time.Nanosecond)}, false},
		{"unreadable", fileState{err: os.ErrNotExist}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := reading{"f": base}, reading{"f": tt.b}
			if got := a.same(b); got != tt.same {
				t.Errorf("same = %v, want %v", got, tt.same)
			}
		})
	}
	if !(reading{"f": {err: os.ErrNotExist}}).same(reading{"f": {err: os.ErrPermission}}) {
		t.Error("a file failing both reads is settled (nothing to apply)")
	}
	if (reading{"f": base}).same(reading{"g": base}) {
		t.Error("readings of different files agree")
	}
}
