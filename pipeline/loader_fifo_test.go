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

// The files factories read at load (an htpasswd file, an error page) are
// refused at once when a FIFO is put at their path, as config files are:
// a reload's validation must not hang on them.
func TestFactoriesRefuseFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	tests := []struct {
		name  string
		build func() error
	}{
		{"htpasswd", func() error {
			_, err := basicAuthFactory().Filter(catConfig(map[string]string{"htpasswd": fifo}))
			return err
		}},
		{"error page", func() error {
			_, err := errordocumentFactory().Filter(catConfig(map[string]string{"404": fifo}))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() { errc <- tt.build() }()
			select {
			case err := <-errc:
				if err == nil || !strings.Contains(err.Error(), "not a regular file (a FIFO)") {
					t.Errorf("build = %v; want a refusal of the FIFO", err)
				}
			case <-time.After(5 * time.Second):
				if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
				t.Fatal("the factory blocked on a FIFO")
			}
		})
	}
}
