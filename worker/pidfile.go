package worker

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// writePidfile writes pid to path atomically (a temporary file renamed over
// it), so a reader never sees a half-written pid. Like gunicorn it refuses
// to replace the pidfile of a process that is still alive; a pidfile naming
// our parent is replaced, since a parent master handing over to us is the
// upgrade path.
func writePidfile(path string, pid int) error {
	if old, err := readPidfile(path); err == nil && old != pid && old != os.Getppid() && alive(old) {
		return fmt.Errorf("pidfile %s: already running as pid %d (remove the file if that process is not paddock)", path, old)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := fmt.Fprintf(tmp, "%d\n", pid); err != nil {
		tmp.Close()
		return fmt.Errorf("write pidfile: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write pidfile: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	return nil
}

// removePidfile removes path if it still names pid: after an upgrade it
// names the new master, which must keep it.
func removePidfile(path string, pid int) error {
	old, err := readPidfile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || old != pid {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pidfile: %w", err)
	}
	return nil
}

func readPidfile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(bytes.TrimSpace(b)))
}

// alive reports whether a process with this pid exists (EPERM: it does,
// under another user).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
