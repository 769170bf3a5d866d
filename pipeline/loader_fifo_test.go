package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A FIFO (or a device) at the config path is refused at once with an
// error naming the path; opening it for reading would block the loader
// (the master's reload) until some writer came.
func TestLoadRefusesFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "paste.ini")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := Load(LoadOptions{Path: path, Name: "main", Kind: ObjectApp})
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a regular file (a FIFO)") {
			t.Errorf("Load(FIFO) = %v; want a refusal naming %s", err, path)
		}
	case <-time.After(5 * time.Second):
		// Unblock the loader so the test ends.
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("Load blocked on a FIFO")
	}
	if _, err := ReadRegularFile("/dev/null"); err == nil || !strings.Contains(err.Error(), "a device") {
		t.Errorf("ReadRegularFile(/dev/null) = %v; want a refusal", err)
	}
}
