package regfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		max        int64
		want       string // data, or a part of the error
		is         error
	}{
		{"regular", small, 10, "0123456789", nil},
		{"over the limit", small, 9, "larger than 9 bytes", ErrTooLarge},
		{"directory", dir, 10, "is a directory", ErrIsDir},
		{"fifo", fifo, 10, "not a regular file (a FIFO)", nil},
		{"missing", filepath.Join(dir, "nope"), 10, "no such file", os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			var data []byte
			var err error
			go func() { defer close(done); data, err = Read(tt.path, tt.max) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Read blocked")
			}
			if tt.name == "regular" {
				if err != nil || string(data) != tt.want {
					t.Fatalf("Read = %q, %v", data, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("Read = %q, %v; want an error naming the path and %q", data, err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}
