package reload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"paddock/internal/regfile"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
)

// Debounce is how long the directories must be quiet after an event
// before the files are read. 50 ms coalesces every editor save and
// `kubectl` ConfigMap swap measured here (each is done within a few ms)
// and bursts of saves arriving faster than that.
const Debounce = 50 * time.Millisecond

// Settle is how long after that first read the files are read again: a
// change is reported only when both reads agree (the same bytes, size
// and modification time for every file) and no event came in between,
// so a file still being written in place (truncate, then write, maybe
// in pieces) is never reported half-written. Debounce + Settle (75 ms)
// keeps "saved -> serving the new config" under 100 ms (docs/pitfalls.md
// A4).
const Settle = 25 * time.Millisecond

// MaxFileSize bounds a watched file read: the loader refuses config files
// over 16 MiB, and TLS files and htpasswd are smaller still.
const MaxFileSize = 16 << 20

// Watcher reports content changes of a set of files; see the package doc.
type Watcher struct {
	log      hclog.Logger
	fsw      *fsnotify.Watcher
	changes  chan struct{}
	debounce time.Duration
	settle   time.Duration
	rescanC  chan struct{} // SetFiles asks Run to sync the watched dirs

	mu    sync.Mutex
	files []string                     // absolute paths, as given
	sums  map[string][sha256.Size]byte // last non-empty content seen; absent: never read
	dirs  map[string]bool              // directories watched now
	// snapshot is the content of every readable watched file as of the
	// last reported change: the bytes that were stable.
	snapshot map[string][]byte
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
		settle:   Settle,
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

// Snapshot is the content of the watched files as of the newest change
// reported, by absolute path: bytes that two reads Settle apart agreed
// on (an empty file is there, empty). A file that could not be read is
// absent. The caller applies these bytes rather than reading the files
// again, which could catch a save half-way. The map is the caller's.
func (w *Watcher) Snapshot() map[string][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.snapshot)
}

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
		data, _, err := readRegular(f)
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
//
// An event (re)arms the debounce timer and drops a pending first read;
// when the timer fires the files are read (first), and read again when
// the settle timer fires; a change is reported only when the two agree.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.fsw.Close()
	debounce := time.NewTimer(w.debounce)
	debounce.Stop()
	defer debounce.Stop()
	settle := time.NewTimer(w.settle)
	settle.Stop()
	defer settle.Stop()
	var first reading // nil: no read waiting for its confirmation
	rearm := func() {
		first = nil
		settle.Stop()
		debounce.Reset(w.debounce)
	}
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
			rearm()
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("reload: fsnotify closed its error channel")
			}
			// An overflow lost events; any other error may have too: re-read
			// everything after the debounce (docs/pitfalls.md A6).
			w.log.Warn("watcher error; re-reading the config files", "error", err)
			rearm()
		case <-w.rescanC:
			w.mu.Lock()
			w.syncDirsLocked()
			w.mu.Unlock()
		case <-debounce.C:
			first = w.read()
			settle.Reset(w.settle)
		case <-settle.C:
			again := w.read()
			if first == nil || !first.same(again) {
				// Written between the two reads: wait for it to settle.
				w.log.Debug("config files still changing; waiting for them to settle")
				rearm()
				continue
			}
			first = nil
			if w.commit(again) {
				select {
				case w.changes <- struct{}{}:
				default: // one pending change stands for all of them
				}
			}
		}
	}
}

// fileState is one read of a watched file.
type fileState struct {
	data    []byte
	size    int64
	modTime time.Time
	err     error
}

// reading is one read of every watched file, by path.
type reading map[string]fileState

// read reads every watched file once, with its size and modification
// time as fstat gave them on the descriptor it read.
func (w *Watcher) read() reading {
	w.mu.Lock()
	files := slices.Clone(w.files)
	w.mu.Unlock()
	r := make(reading, len(files))
	for _, f := range files {
		var st fileState
		var fi fs.FileInfo
		st.data, fi, st.err = readRegular(f)
		if fi != nil {
			st.size, st.modTime = fi.Size(), fi.ModTime()
		}
		r[f] = st
	}
	return r
}

// same reports whether two readings agree: the same files, each with the
// same bytes, size and modification time, or failing both times.
func (r reading) same(o reading) bool {
	if len(r) != len(o) {
		return false
	}
	for f, a := range r {
		b, ok := o[f]
		if !ok || (a.err == nil) != (b.err == nil) {
			return false
		}
		if a.err != nil {
			continue
		}
		if a.size != b.size || !a.modTime.Equal(b.modTime) || !bytes.Equal(a.data, b.data) {
			return false
		}
	}
	return true
}

// commit takes a settled reading: it reports whether a file has new,
// non-empty content and, if so, makes the reading the Snapshot. It also
// re-syncs the watched directories (a symlink swap moves the target).
func (w *Watcher) commit(r reading) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.syncDirsLocked()
	changed := false
	snapshot := make(map[string][]byte, len(r))
	for _, f := range w.files {
		st, ok := r[f]
		if !ok {
			continue // added by SetFiles since the read: its baseline is set
		}
		if st.err != nil {
			if errors.Is(st.err, fs.ErrNotExist) {
				w.log.Warn("watched file is gone; serving on, waiting for it to come back", "path", f)
			} else {
				w.log.Warn("cannot read a watched file; serving on", "path", f, "error", st.err)
			}
			continue
		}
		snapshot[f] = st.data
		if len(st.data) == 0 {
			w.log.Warn("watched file is empty; ignored until it has content", "path", f)
			continue
		}
		sum := sha256.Sum256(st.data)
		if old, ok := w.sums[f]; ok && old == sum {
			continue
		}
		w.sums[f] = sum
		w.log.Info("config file changed", "path", f)
		changed = true
	}
	if changed {
		w.snapshot = snapshot
	}
	return changed
}

// readRegular reads a watched file, refusing anything but a regular file
// (package regfile: opening a FIFO put at a config path would block the
// watcher until a writer came, and a device may never end), with what
// fstat said of it.
func readRegular(name string) ([]byte, fs.FileInfo, error) {
	return regfile.ReadInfo(name, MaxFileSize)
}
