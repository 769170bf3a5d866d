package accesslog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// FileMode is the mode of a log file Open creates (before the umask).
const FileMode = 0o640

// pipeBuf is PIPE_BUF on Linux: writes up to this size to a pipe are
// atomic, so lines of processes sharing it never interleave.
const pipeBuf = 4096

// File is an append-only log file that can be reopened at its path, for
// logrotate's rename-then-signal rotation. Writes and Reopen may run
// concurrently: a write in progress finishes on the file it started on.
type File struct {
	path string // "" for standard output
	f    atomic.Pointer[os.File]
	mu   sync.Mutex // serialises Reopen and Close
	stdo io.Writer  // standard output; nil for a file
}

// Open opens path for appending (O_WRONLY|O_APPEND|O_CREATE, mode 0640
// before the umask); "-" is standard output (see Stdout). The error names
// the path.
func Open(path string) (*File, error) {
	if path == "-" {
		return Stdout(os.Stdout), nil
	}
	if path == "" {
		return nil, errors.New("accesslog: no log file path")
	}
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	lf := &File{path: path}
	lf.f.Store(f)
	return lf, nil
}

// Stdout is a File writing to w (the process's standard output), which is
// neither reopened nor closed.
func Stdout(w io.Writer) *File {
	lf := &File{stdo: w}
	if f, ok := w.(*os.File); ok {
		lf.f.Store(f)
	}
	return lf
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, FileMode)
	if err != nil {
		return nil, err // *PathError: "open PATH: reason"
	}
	return f, nil
}

// Path is the file's path; "-" for standard output.
func (lf *File) Path() string {
	if lf.stdo != nil {
		return "-"
	}
	return lf.path
}

// Write appends p.
func (lf *File) Write(p []byte) (int, error) {
	if lf.stdo != nil {
		return lf.stdo.Write(p)
	}
	f := lf.f.Load()
	if f == nil {
		return 0, os.ErrClosed
	}
	return f.Write(p)
}

// Reopen opens the path again and writes there from now on; the old file
// is closed once writes in progress on it are done. When the path cannot
// be opened the old file is kept (writing continues there) and the error,
// naming the path, is returned. Standard output is not reopened.
func (lf *File) Reopen() error {
	if lf.stdo != nil {
		return nil
	}
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f.Load() == nil {
		return os.ErrClosed
	}
	f, err := openAppend(lf.path)
	if err != nil {
		return fmt.Errorf("reopen (still writing to the old file): %w", err)
	}
	if old := lf.f.Swap(f); old != nil {
		_ = old.Close()
	}
	return nil
}

// Close closes the file (not standard output).
func (lf *File) Close() error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.stdo != nil {
		return nil
	}
	f := lf.f.Swap(nil)
	if f == nil {
		return nil
	}
	return f.Close()
}

// MaxWrite is the WriterOptions.MaxWrite that keeps lines whole: 0 for a
// regular file (O_APPEND writes are atomic), PIPE_BUF otherwise (a pipe,
// a socket or a terminal another process may share).
func (lf *File) MaxWrite() int {
	f := lf.f.Load()
	if f == nil {
		if lf.stdo != nil {
			return pipeBuf // not a file: maybe a pipe
		}
		return 0
	}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		return 0
	}
	return pipeBuf
}
