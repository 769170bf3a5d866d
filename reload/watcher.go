package reload

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
)

// Debounce is how long the directories must be quiet after an event
// before the files are re-read. 75 ms coalesces every editor save and
// `kubectl` ConfigMap swap measured here (each is done within a few ms)
// and bursts of saves arriving faster than that, and keeps "saved →
// serving the new config" under 100 ms. A file caught half-written costs
// nothing: it fails validation (the old config keeps serving) or is
// empty, and the write that completes it is one more event.
const Debounce = 75 * time.Millisecond

// Watcher reports content changes of a set of files; see the package doc.
type Watcher struct {
	log      hclog.Logger
	fsw      *fsnotify.Watcher
	changes  chan struct{}
	debounce time.Duration
	rescanC  chan struct{} // SetFiles asks Run to sync the watched dirs

	mu    sync.Mutex
	files []string                     // absolute paths, as given
	sums  map[string][sha256.Size]byte // last non-empty content seen; absent: never read
	dirs  map[string]bool              // directories watched now
}

// New watches the directories of files (made absolute). A file that
// cannot be read now is logged and watched for. log nil discards.
func New(files []string, log hclog.Logger) (*Watcher, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("reload: start watcher: %w", err)
	}
	w := &Watcher{
		log:      log,
		fsw:      fsw,
		changes:  make(chan struct{}, 1),
		debounce: Debounce,
		rescanC:  make(chan struct{}, 1),
		sums:     make(map[string][sha256.Size]byte),
		dirs:     make(map[string]bool),
	}
	if err := w.setFiles(files); err != nil {
		fsw.Close()
		return nil, err
	}
	w.mu.Lock()
	w.syncDirsLocked()
	w.mu.Unlock()
	return w, nil
}

// Changes receives one value after one or more content changes.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// SetFiles replaces the watched set (after a reload: the config and every
// file it read). The current content of a newly added file is its
// baseline, so adding files sends no change.
func (w *Watcher) SetFiles(files []string) error {
	if err := w.setFiles(files); err != nil {
		return err
	}
	select {
	case w.rescanC <- struct{}{}:
	default:
	}
	return nil
}

func (w *Watcher) setFiles(files []string) error {
	abs := make([]string, 0, len(files))
	for _, f := range files {
		a, err := filepath.Abs(f)
		if err != nil {
			return fmt.Errorf("reload: watch %s: %w", f, err)
		}
		if !slices.Contains(abs, a) {
			abs = append(abs, a)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	sums := make(map[string][sha256.Size]byte, len(abs))
	for _, f := range abs {
		if s, ok := w.sums[f]; ok {
			sums[f] = s
			continue
		}
		data, err := readRegular(f)
		switch {
		case err != nil:
			w.log.Warn("cannot read a watched file; watching for it", "path", f, "error", err)
		case len(data) > 0:
			sums[f] = sha256.Sum256(data)
		}
	}
	w.files, w.sums = abs, sums
	return nil
}

// syncDirsLocked watches the directory of every file and of the file its
// symlinks resolve to (a ConfigMap's ..data target or a link elsewhere),
// and stops watching directories no longer needed. w.mu is held.
func (w *Watcher) syncDirsLocked() {
	want := make(map[string]bool)
	for _, f := range w.files {
		want[filepath.Dir(f)] = true
		if r, err := filepath.EvalSymlinks(f); err == nil {
			want[filepath.Dir(r)] = true
		}
	}
	for d := range w.dirs {
		if !want[d] {
			if err := w.fsw.Remove(d); err != nil && !errors.Is(err, fsnotify.ErrNonExistentWatch) {
				w.log.Debug("unwatch directory", "dir", d, "error", err)
			}
			delete(w.dirs, d)
		}
	}
	for d := range want {
		if w.dirs[d] {
			continue
		}
		if err := w.fsw.Add(d); err != nil {
			// Retried at the next rescan (the directory may come back).
			w.log.Warn("cannot watch a config directory", "dir", d, "error", err)
			continue
		}
		w.dirs[d] = true
	}
}

// Run delivers changes until ctx is done (nil) or fsnotify closes its
// channels (an error). It closes the fsnotify watcher when it returns.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.fsw.Close()
	timer := time.NewTimer(w.debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errors.New("reload: fsnotify closed its event channel")
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			w.log.Trace("event", "name", ev.Name, "op", ev.Op.String())
			timer.Reset(w.debounce)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("reload: fsnotify closed its error channel")
			}
			// An overflow lost events; any other error may have too: re-read
			// everything after the debounce (PITFALLS A6).
			w.log.Warn("watcher error; re-reading the config files", "error", err)
			timer.Reset(w.debounce)
		case <-w.rescanC:
			w.mu.Lock()
			w.syncDirsLocked()
			w.mu.Unlock()
		case <-timer.C:
			if w.rescan() {
				select {
				case w.changes <- struct{}{}:
				default: // one pending change stands for all of them
				}
			}
		}
	}
}

// rescan re-reads every file and reports whether one has new, non-empty
// content; it also re-syncs the watched directories (a symlink swap moves
// the target).
func (w *Watcher) rescan() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.syncDirsLocked()
	changed := false
	for _, f := range w.files {
		data, err := readRegular(f)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				w.log.Warn("watched file is gone; serving on, waiting for it to come back", "path", f)
			} else {
				w.log.Warn("cannot read a watched file; serving on", "path", f, "error", err)
			}
			continue
		}
		if len(data) == 0 {
			w.log.Warn("watched file is empty; ignored until it has content", "path", f)
			continue
		}
		sum := sha256.Sum256(data)
		if old, ok := w.sums[f]; ok && old == sum {
			continue
		}
		w.sums[f] = sum
		w.log.Info("config file changed", "path", f)
		changed = true
	}
	return changed
}

// readRegular reads a watched file, refusing anything but a regular file:
// opening a FIFO put at a config path would block the watcher until a
// writer comes (O_NONBLOCK makes that open return at once), and a device
// may never end.
func readRegular(name string) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("not a regular file (mode %v)", fi.Mode())}
	}
	return io.ReadAll(f)
}
