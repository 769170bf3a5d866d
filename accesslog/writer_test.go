package accesslog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// blockedWriter blocks every Write until released, like a disk that
// stopped answering.
type blockedWriter struct {
	entered chan struct{} // a Write started
	release chan struct{}
	mu      sync.Mutex
	got     []string
}

func newBlockedWriter() *blockedWriter {
	return &blockedWriter{entered: make(chan struct{}, 100), release: make(chan struct{})}
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	b.entered <- struct{}{}
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, string(p))
	return len(p), nil
}

func (b *blockedWriter) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.got, "")
}

func tenBytes(i int) []byte { return []byte(strings.Repeat(string(rune('a'+i%26)), 9) + "\n") }

// With the output blocked, Write still returns at once; once the buffer
// holds Limit bytes further lines are dropped, counted, and reported
// (while the output is still stuck) once per interval; what was buffered
// is written when the output moves again, and Close flushes.
func TestWriterDropsWhenFull(t *testing.T) {
	out := newBlockedWriter()
	reports := make(chan DropReport, 10)
	w := NewWriter(out, WriterOptions{Limit: 100, WarnInterval: 50 * time.Millisecond, OnDrop: func(r DropReport) { reports <- r }})

	w.Write(tenBytes(0))
	<-out.entered // the goroutine holds line 0 and is stuck writing it
	start := time.Now()
	for i := 1; i <= 15; i++ { // 10 fit in the 100 bytes, 5 are dropped
		if n, err := w.Write(tenBytes(i)); n != 10 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("15 writes to a blocked output took %v", d)
	}
	if got := w.Dropped(); got != 5 {
		t.Errorf("Dropped = %d, want 5", got)
	}
	if got := w.Buffered(); got != 100 {
		t.Errorf("Buffered = %d, want 100", got)
	}
	// Reports come at most once per interval, each with the drops since
	// the previous one (a tick may fall between two drops: sum them).
	waitDrops := func(want, total uint64) {
		t.Helper()
		var sum uint64
		for sum < want {
			select {
			case r := <-reports:
				if r.Failed != 0 || r.Full == 0 {
					t.Errorf("report %+v", r)
				}
				sum += r.Full
				if r.Total > total {
					t.Errorf("report %+v: total over %d", r, total)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("reports sum to %d dropped lines, want %d (the output is stuck)", sum, want)
			}
		}
		if sum != want {
			t.Errorf("reports sum to %d, want %d", sum, want)
		}
	}
	waitDrops(5, 5)
	w.Write(tenBytes(16))
	w.Write(tenBytes(17))
	waitDrops(2, 7)
	select {
	case r := <-reports:
		t.Errorf("a report without new drops: %+v", r)
	case <-time.After(150 * time.Millisecond):
	}

	close(out.release) // the disk answers again
	for deadline := time.Now().Add(5 * time.Second); w.Buffered() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the buffer did not drain")
		}
	}
	w.Write(tenBytes(18))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 18} {
		want.Write(tenBytes(i))
	}
	if got := out.text(); got != want.String() {
		t.Errorf("written\n%q\nwant\n%q", got, want.String())
	}
	if n, _ := w.Write(tenBytes(19)); n != 10 || w.Dropped() != 8 {
		t.Errorf("Write after Close: n=%d dropped=%d, want a counted drop", n, w.Dropped())
	}
}

// Close gives up at its deadline when the output never answers.
func TestWriterCloseDeadline(t *testing.T) {
	out := newBlockedWriter()
	w := NewWriter(out, WriterOptions{})
	w.Write(tenBytes(0))
	<-out.entered
	w.Write(tenBytes(1))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "10 bytes not written") {
		t.Errorf("Close = %v", err)
	}
	close(out.release) // the goroutines end once the write returns
	<-w.done
}

type failingWriter struct{ calls int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.calls++
	return 0, &os.PathError{Op: "write", Path: "/var/log/x", Err: syscall.ENOSPC}
}

// Lines whose write fails are counted and reported with the error: the
// first loss at once, not an interval later.
func TestWriterWriteErrors(t *testing.T) {
	reports := make(chan DropReport, 10)
	w := NewWriter(&failingWriter{}, WriterOptions{WarnInterval: time.Hour, OnDrop: func(r DropReport) { reports <- r }})
	w.Write([]byte("a\nb\n"))
	select {
	case r := <-reports:
		if r.Failed != 2 || r.Full != 0 || r.Total != 2 || !errors.Is(r.Err, syscall.ENOSPC) {
			t.Errorf("first report %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first failed write was not reported at once")
	}
	w.Write([]byte("c\n"))
	select {
	case r := <-reports:
		t.Errorf("a second report within the interval: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := <-reports // the last one, at Close
	if r.Failed != 1 || r.Total != 3 || !errors.Is(r.Err, syscall.ENOSPC) {
		t.Errorf("report at Close %+v", r)
	}
}

// A stream of failing writes is reported once per interval, not once per
// line, each report counting the lines lost since the previous one.
func TestWriterWriteErrorsRateLimited(t *testing.T) {
	const interval = 200 * time.Millisecond
	reports := make(chan DropReport, 100)
	w := NewWriter(&failingWriter{}, WriterOptions{WarnInterval: interval, OnDrop: func(r DropReport) { reports <- r }})
	start := time.Now()
	n := 0
	for time.Since(start) < 5*interval {
		w.Write([]byte("x\n"))
		n++
		time.Sleep(time.Millisecond)
	}
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(reports)
	var got []DropReport
	var sum uint64
	for r := range reports {
		got = append(got, r)
		sum += r.Failed
	}
	// ~5 intervals: the first report at once, about one per interval
	// after it, one at Close; a loaded machine may run fewer.
	if len(got) < 2 || len(got) > 8 {
		t.Errorf("%d reports for %d failed lines over %v; want one per %v", len(got), n, time.Since(start).Round(time.Millisecond), interval)
	}
	if sum != uint64(n) {
		t.Errorf("reports sum to %d failed lines, want %d", sum, n)
	}
}

type recordingWriter struct {
	mu     sync.Mutex
	writes []string
}

func (r *recordingWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

// MaxWrite splits a batch at line ends into writes of at most MaxWrite
// bytes; a longer line is written alone.
func TestWriterMaxWrite(t *testing.T) {
	out := &recordingWriter{}
	w := NewWriter(out, WriterOptions{MaxWrite: 25})
	w.mu.Lock() // queue everything before the goroutine can take a batch
	w.buf = append(w.buf, "aaaaaaaaa\nbbbbbbbbb\nccccccccc\n"+strings.Repeat("d", 40)+"\neeeee\n"...)
	w.mu.Unlock()
	w.wake <- struct{}{}
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{"aaaaaaaaa\nbbbbbbbbb\n", "ccccccccc\n", strings.Repeat("d", 40) + "\n", "eeeee\n"}
	if strings.Join(out.writes, "|") != strings.Join(want, "|") {
		t.Errorf("writes %q, want %q", out.writes, want)
	}
}

// Reopen after a rename writes to a new file at the path; a path that can
// no longer be opened keeps the old file and names the path.
func TestFileReopen(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(logs, "access.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.MaxWrite() != 0 || f.Path() != path {
		t.Errorf("MaxWrite %d, Path %q", f.MaxWrite(), f.Path())
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm()&^0o640 != 0 {
		t.Errorf("mode %v, %v; want at most 0640", st.Mode(), err)
	}
	f.Write([]byte("one\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("two\n")) // still the renamed file
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("three\n"))
	readFile := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	if got := readFile(path + ".1"); got != "one\ntwo\n" {
		t.Errorf("rotated file %q", got)
	}
	if got := readFile(path); got != "three\n" {
		t.Errorf("new file %q", got)
	}

	// The directory goes away and a file takes its name: open fails.
	if err := os.Rename(logs, logs+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err = f.Reopen()
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("Reopen = %v, want ENOTDIR naming %s", err, path)
	}
	f.Write([]byte("four\n"))
	if got := readFile(filepath.Join(logs+".old", "access.log")); got != "three\nfour\n" {
		t.Errorf("old file after a failed reopen %q", got)
	}

	if _, err := Open(filepath.Join(logs, "x.log")); err == nil || !strings.Contains(err.Error(), filepath.Join(logs, "x.log")) {
		t.Errorf("Open under a file: %v", err)
	}
}
