// Package reload watches the config files of a running server and says
// when their content really changed (docs/pitfalls.md A1–A7).
//
// A Watcher watches the directories of its files, never the files
// themselves: editors and `sed -i` save by renaming a new file over the
// old one (a watch on the file dies with it), and Kubernetes ConfigMap
// volumes swap a `..data` symlink, so no event names the file at all. Any
// event in a watched directory (Chmod aside), an fsnotify error, or a
// queue overflow (re)arms one debounce timer (Debounce, 50 ms, Reset on
// every event); when it fires, every file is read (through symlinks), and
// read again Settle (25 ms) later. Only when the two reads agree (bytes,
// size and modification time of every file) and no event came between
// them is the reading settled: a file written in place in pieces is never
// reported half-written. A settled reading whose sha256 of a file differs
// from the last content seen sends on Changes (buffered 1, coalescing: a
// slow reader gets one event for many changes), and becomes the Snapshot
// the caller applies, so it never reads the files again itself.
//
// What is not a change: an unchanged file (a touch, a chmod, a save of the
// same bytes); an empty file (a truncate-then-write editor caught half
// way: logged, ignored, and looked at again on the next event); a missing
// file (deleted, or between the unlink and the rename of a save: logged,
// and picked up when it comes back with new content). None of these stop
// the watcher; neither do fsnotify errors (docs/pitfalls.md A7).
//
// The package knows nothing of paddock's config format: its caller
// decides what "changed" means for the server (the master validates the
// whole config and keeps the old one when it is broken) and hands the new
// set of files to SetFiles after a reload (the config and every file it
// read). Run is owned by its caller and returns when its context is done.
// Network file systems deliver no inotify events; SIGHUP and
// `paddock ctl reload` remain the way to reload there.
package reload
