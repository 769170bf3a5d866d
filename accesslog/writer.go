package accesslog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of WriterOptions.
const (
	DefaultLimit        = 1 << 20
	DefaultWarnInterval = 10 * time.Second
)

// DropReport is what OnDrop gets: lines lost since the last report.
type DropReport struct {
	// Full is how many lines were dropped because the buffer was full.
	Full uint64
	// Failed is how many lines were lost because writing them failed
	// (Err is the last such error).
	Failed uint64
	// Total is every line lost since the Writer started.
	Total uint64
	Err   error
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Limit bounds the bytes waiting to be written; a line that does not
	// fit is dropped. 0 means DefaultLimit (1 MiB).
	Limit int
	// MaxWrite, when > 0, splits writes into chunks of at most this many
	// bytes at line ends (a line longer than that is written alone): a
	// pipe shared by several processes keeps their lines whole only for
	// writes up to PIPE_BUF (4096 bytes). 0: one write per batch.
	MaxWrite int
	// OnDrop, if set, is called from the Writer's report goroutine (not
	// the one writing, so also while the output is stuck) as soon as a
	// line is lost, then at most once per WarnInterval while lines are
	// being lost, and once more at Close if some were lost since. It must not write to this Writer's output
	// synchronously in a way that could block forever.
	OnDrop func(DropReport)
	// WarnInterval is the shortest time between two OnDrop calls; 0
	// means DefaultWarnInterval (10 s).
	WarnInterval time.Duration
}

// Writer is a bounded asynchronous writer: Write never waits for the
// output. See the package doc for the policy when the buffer is full.
type Writer struct {
	out      io.Writer
	limit    int
	maxWrite int
	onDrop   func(DropReport)
	interval time.Duration

	mu     sync.Mutex
	buf    []byte
	closed bool
	full   uint64 // dropped for lack of room since the last report

	failed  atomic.Uint64 // lost to write errors since the last report
	lastErr atomic.Pointer[error]
	total   atomic.Uint64
	wake    chan struct{} // 1 slot: there is something to write
	lost    chan struct{} // 1 slot: a line was lost (report it)
	quit    chan struct{} // closed by Close
	drained chan struct{} // closed when run has returned
	done    chan struct{} // closed when both goroutines have returned
	once    sync.Once
}

// NewWriter starts a Writer on out. Its two goroutines (one writes, one
// reports drops) run until Close.
func NewWriter(out io.Writer, opts WriterOptions) *Writer {
	w := &Writer{
		out: out, limit: opts.Limit, maxWrite: opts.MaxWrite, onDrop: opts.OnDrop, interval: opts.WarnInterval,
		wake: make(chan struct{}, 1), lost: make(chan struct{}, 1), quit: make(chan struct{}), drained: make(chan struct{}), done: make(chan struct{}),
	}
	if w.limit <= 0 {
		w.limit = DefaultLimit
	}
	if w.interval <= 0 {
		w.interval = DefaultWarnInterval
	}
	go w.run()
	go w.reportLoop()
	return w
}

// Write queues a copy of p (one or more whole lines) and returns at once:
// len(p) and nil, also when p was dropped because the buffer is full or
// the Writer is closed (the caller, serving a request, could do nothing
// better; drops are counted and reported instead).
func (w *Writer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.mu.Lock()
	if w.closed || len(w.buf)+len(p) > w.limit {
		w.full += lines(p)
		w.mu.Unlock()
		w.total.Add(lines(p))
		w.signalLost()
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// lines counts the lines of p (a last line without newline counts).
func lines(p []byte) uint64 {
	n := uint64(bytes.Count(p, []byte{'\n'}))
	if len(p) > 0 && p[len(p)-1] != '\n' {
		n++
	}
	return n
}

// Dropped is every line lost since the Writer started (buffer full or
// write failed).
func (w *Writer) Dropped() uint64 { return w.total.Load() }

// Buffered is how many bytes wait to be written.
func (w *Writer) Buffered() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.buf)
}

// Reopen reopens the output when it can be (a *File); see File.Reopen.
func (w *Writer) Reopen() error {
	if r, ok := w.out.(interface{ Reopen() error }); ok {
		return r.Reopen()
	}
	return nil
}

// Close stops accepting lines, writes what is buffered and stops the
// goroutine. It waits at most until ctx is done: a write blocked in the
// kernel (a hung NFS server) cannot be interrupted, and the goroutines
// then end when that write returns. It does not close the output.
func (w *Writer) Close(ctx context.Context) error {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.quit)
	})
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("accesslog: flush: %d bytes not written: %w", w.Buffered(), context.Cause(ctx))
	}
}

// run is the Writer's drain goroutine: it writes batches as they come
// until Close, then writes what is left.
func (w *Writer) run() {
	defer close(w.drained)
	var spare []byte
	for {
		select {
		case <-w.wake:
			spare = w.flush(spare)
		case <-w.quit:
			w.flush(spare)
			return
		}
	}
}

// signalLost wakes the report goroutine; never blocks.
func (w *Writer) signalLost() {
	select {
	case w.lost <- struct{}{}:
	default:
	}
}

// reportLoop is the Writer's report goroutine: separate from run, so drops
// are reported while the output is stuck in a write. The first loss is
// reported at once (a full disk shows in the error log when it happens,
// not an interval later); the next report waits until an interval has
// passed since the previous one, so a stream of failures is a line per
// interval, never a line per request. It ends after the drain goroutine,
// with a last report.
func (w *Writer) reportLoop() {
	defer close(w.done)
	timer := time.NewTimer(w.interval)
	timer.Stop()
	defer timer.Stop()
	var last time.Time // of the last report; zero: none yet
	pending := false   // timer runs for a report
	for {
		select {
		case <-w.lost:
			if pending {
				continue
			}
			if wait := w.interval - time.Since(last); !last.IsZero() && wait > 0 {
				timer.Reset(wait)
				pending = true
				continue
			}
			if w.report() {
				last = time.Now()
			}
		case <-timer.C:
			pending = false
			if w.report() {
				last = time.Now()
			}
		case <-w.drained:
			w.report()
			return
		}
	}
}

// flush writes everything buffered; spare is the buffer to swap in.
func (w *Writer) flush(spare []byte) []byte {
	w.mu.Lock()
	batch := w.buf
	w.buf = spare[:0]
	w.mu.Unlock()
	if len(batch) == 0 {
		return batch
	}
	for rest := batch; len(rest) > 0; {
		chunk := rest
		if w.maxWrite > 0 && len(chunk) > w.maxWrite {
			if i := bytes.LastIndexByte(chunk[:w.maxWrite], '\n'); i >= 0 {
				chunk = chunk[:i+1]
			} else if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
				chunk = chunk[:i+1] // one line longer than maxWrite
			}
		}
		rest = rest[len(chunk):]
		if _, err := w.out.Write(chunk); err != nil {
			n := lines(chunk)
			w.failed.Add(n)
			w.total.Add(n)
			w.lastErr.Store(&err)
			w.signalLost()
		}
	}
	if cap(batch) > 2*w.limit {
		return nil // do not keep a buffer grown past the limit
	}
	return batch
}

// report calls OnDrop when lines were lost since the last call, and
// reports whether there were.
func (w *Writer) report() bool {
	w.mu.Lock()
	full := w.full
	w.full = 0
	w.mu.Unlock()
	failed := w.failed.Swap(0)
	if full == 0 && failed == 0 {
		return false
	}
	r := DropReport{Full: full, Failed: failed, Total: w.total.Load()}
	if failed > 0 {
		if err := w.lastErr.Load(); err != nil {
			r.Err = *err
		}
	}
	if w.onDrop != nil {
		w.onDrop(r)
	}
	return true
}
