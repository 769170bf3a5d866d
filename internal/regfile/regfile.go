// Package regfile reads the files an operator points paddock at (the
// config and the files it reads, TLS keys, htpasswd, error pages) the one
// safe way: only a regular file, of bounded size, checked on the open
// descriptor.
//
// Invariants: opening never blocks (O_NONBLOCK, so a FIFO put at the path
// does not hang the master until a writer comes; it is then refused); a
// directory, FIFO, socket or device is refused; no more than max bytes
// are read, even from a file that grows during the read. Errors are
// *fs.PathError values naming the path. It imports only the standard
// library, so the loader and the listener can use it.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrIsDir is the error of a path that is a directory.
var ErrIsDir = errors.New("is a directory")

// ErrTooLarge is wrapped by the error of a file over the limit.
var ErrTooLarge = errors.New("file too large")

// Read reads the regular file name, of at most max bytes.
func Read(name string, max int64) ([]byte, error) {
	data, _, err := ReadInfo(name, max)
	return data, err
}

// ReadInfo is Read that also returns what fstat(2) said of the
// descriptor it read (size, modification time) before the read.
func ReadInfo(name string, max int64) ([]byte, fs.FileInfo, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	switch {
	case fi.IsDir():
		return nil, nil, &fs.PathError{Op: "open", Path: name, Err: ErrIsDir}
	case !fi.Mode().IsRegular():
		return nil, nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("not a regular file (%s)", Kind(fi.Mode()))}
	case fi.Size() > max:
		return nil, nil, tooLarge(name, max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	if int64(len(data)) > max { // grew since the Stat
		return nil, nil, tooLarge(name, max)
	}
	return data, fi, nil
}

func tooLarge(name string, max int64) error {
	return &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w: larger than %d bytes", ErrTooLarge, max)}
}

// Kind names a non-regular file's type for errors: "a FIFO", "a socket",
// "a device", else the mode.
func Kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}
