package reload

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A FIFO put at a watched path is not read (opening it would block the
// watcher until a writer comes): no change is reported, and a regular
// file put back afterwards still is.
func TestWatcherFIFONotRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "paste.ini")
	write(t, path, "a")
	w := start(t, path)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// Should the watcher block on it anyway, a writer opening the FIFO
	// (by its other name) lets the test end instead of hanging.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(fifo, path); err != nil {
		t.Fatal(err)
	}
	wantNone(t, w, quiet)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	write(t, path, "b")
	wantChange(t, w)
	if _, _, err := readRegular(fifo); err == nil {
		t.Error("readRegular read a FIFO")
	}
}
