package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/accesslog"
	"paddock/metrics"
	"paddock/pipeline"
)

// Log files (README "Logs").
//
// errorlog: "-" (the default) is the process's stderr, as before. A FILE
// is opened by the master (or the in-process server) with O_APPEND|
// O_CREATE, mode 0640, behind a bounded asynchronous writer
// (accesslog.Writer), and the master's hclog output goes there. Workers
// keep logging to their stderr, which is then a pipe the master copies,
// line by line, into the same file: only the master holds the error log,
// so USR1 reopens it in one place, workers switched to another user
// need no access to it, and whatever else a worker prints to stderr (a Go
// panic) lands in the error log too.
//
// accesslog: unset (the default) logs nothing, "-" is stdout, a FILE is
// opened by each worker (O_APPEND: lines of workers never interleave)
// behind its own bounded asynchronous writer. The master checks at start
// and on reload that the path can be opened (creating the file; with
// user/group it chowns it to them, as gunicorn does, so workers can reopen
// it after a rotation). USR1 and ctl logs reopen make the master reopen the
// error log and tell every worker (reopen_logs) to reopen its access log;
// a path that cannot be opened keeps the old file and is reported.

// flushTimeout bounds how long a stopping process waits for its log
// buffers to reach the disk.
const flushTimeout = 5 * time.Second

// settingError names the setting's origin (file:line, flag, variable).
func settingError(s *Settings, name string, err error) error {
	err = fmt.Errorf("%s: %w", name, err)
	o, ok := s.Origins[name]
	if !ok || o.Where == "" {
		return err
	}
	return &SettingError{Setting: name, Origin: o, Err: err}
}

// ErrorLog is the errorlog setting opened: stderr, or a file behind a
// bounded asynchronous writer that can be reopened.
type ErrorLog struct {
	out  io.Writer
	file *accesslog.File
	w    *accesslog.Writer
	mu   sync.Mutex
	log  hclog.Logger // for drop reports; nil until SetLogger
}

// OpenErrorLog opens the errorlog of s: "" and "-" give stderr itself; a
// path is opened for appending (created 0640). The error names the path
// and where the setting came from (file:line).
func OpenErrorLog(s *Settings, stderr io.Writer) (*ErrorLog, error) {
	if s.ErrorLog == "" || s.ErrorLog == "-" {
		return &ErrorLog{out: stderr}, nil
	}
	f, err := accesslog.Open(s.ErrorLog)
	if err != nil {
		return nil, settingError(s, "errorlog", err)
	}
	e := &ErrorLog{file: f}
	e.w = accesslog.NewWriter(f, accesslog.WriterOptions{MaxWrite: f.MaxWrite(), OnDrop: e.dropped})
	e.out = e.w
	return e, nil
}

// Writer is where loggers (and the workers' stderr) write.
func (e *ErrorLog) Writer() io.Writer { return e.out }

// Path is the file's path; "" for stderr.
func (e *ErrorLog) Path() string {
	if e.file == nil {
		return ""
	}
	return e.file.Path()
}

// SetLogger sets the logger that reports lines the error log dropped
// (they are reported into the error log itself, once there is room).
func (e *ErrorLog) SetLogger(l hclog.Logger) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = l
}

func (e *ErrorLog) dropped(r accesslog.DropReport) {
	e.mu.Lock()
	l := e.log
	e.mu.Unlock()
	if l != nil {
		logDrops(l, "error log", e.Path(), r)
	}
}

// Reopen reopens the file at its path (USR1, ctl logs reopen); stderr is
// not reopened. On error the old file is kept and the error names the
// path.
func (e *ErrorLog) Reopen() error {
	if e.file == nil {
		return nil
	}
	if err := e.file.Reopen(); err != nil {
		return fmt.Errorf("errorlog: %w", err)
	}
	return nil
}

// Close flushes the buffer (at most flushTimeout) and closes the file.
func (e *ErrorLog) Close() error {
	if e.file == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	err := e.w.Close(ctx)
	if err == nil {
		err = e.file.Close()
	}
	return err
}

// logDrops reports lines a log writer lost, once per interval.
func logDrops(l hclog.Logger, what, path string, r accesslog.DropReport) {
	args := []any{"path", path, "dropped", r.Full + r.Failed, "dropped_total", r.Total}
	if r.Full > 0 {
		args = append(args, "buffer_full", r.Full)
	}
	if r.Failed > 0 {
		args = append(args, "write_failed", r.Failed, "error", r.Err)
	}
	l.Warn(what+": lines dropped (the disk is not keeping up; requests are never held for the log)", args...)
}

// accessLog is a process's access log: the compiled format, the file and
// the bounded writer between them.
type accessLog struct {
	logger *accesslog.Logger
	w      *accesslog.Writer
	file   *accesslog.File
	log    hclog.Logger
}

// openAccessLog opens the accesslog of s ("" logs nothing: nil, nil);
// "-" is stdout. json renders JSON lines (--log-format json, or the json
// preset of access_log_format). Errors name the path and the setting's
// origin.
func openAccessLog(s *Settings, json bool, stdout io.Writer, vars []accesslog.Var, log hclog.Logger) (*accessLog, error) {
	if s.AccessLog == "" {
		return nil, nil
	}
	format, err := accesslog.Parse(s.AccessLogFormat)
	if err != nil {
		return nil, settingError(s, "access_log_format", err)
	}
	var f *accesslog.File
	if s.AccessLog == "-" {
		if stdout == nil {
			stdout = os.Stdout
		}
		f = accesslog.Stdout(stdout)
	} else if f, err = accesslog.Open(s.AccessLog); err != nil {
		return nil, settingError(s, "accesslog", err)
	}
	a := &accessLog{file: f, log: log.Named("access")}
	a.w = accesslog.NewWriter(f, accesslog.WriterOptions{MaxWrite: f.MaxWrite(), OnDrop: func(r accesslog.DropReport) {
		logDrops(a.log, "access log", f.Path(), r)
	}})
	a.logger = accesslog.New(accesslog.Options{Format: format, JSON: json, Out: a.w, Vars: vars})
	return a, nil
}

// reopen reopens the access log file at its path; on error the old file
// is kept.
func (a *accessLog) reopen() error {
	if a == nil {
		return nil
	}
	if err := a.file.Reopen(); err != nil {
		return fmt.Errorf("accesslog: %w", err)
	}
	return nil
}

// close flushes what is buffered (at most flushTimeout) and closes the
// file.
func (a *accessLog) close() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := a.w.Close(ctx); err != nil {
		a.log.Warn("access log not fully written at exit", "path", a.file.Path(), "error", err)
	}
	if err := a.file.Close(); err != nil {
		a.log.Warn("close access log", "path", a.file.Path(), "error", err)
	}
}

// observe wraps the handler a serving process runs (RunWorker's, and
// Serve's with workers = 0) with what watches every request; it is the
// one place both modes add such observers, outermost, so they see every
// answer the pipeline gives: the request metrics (nil: none) and, around
// them, the access log (nil: none).
func observe(h http.Handler, access *accessLog, m *metrics.HTTP) http.Handler {
	if m != nil {
		h = m.Instrument(h, pipeline.TrackRoute)
	}
	if access != nil {
		h = access.logger.Wrap(h)
	}
	return h
}

// serverVars are paddock's own variables for %({name}e)s atoms and JSON
// access lines.
func serverVars(app string, workerID int, generation func() int) []accesslog.Var {
	if app == "" {
		app = "main"
	}
	vars := []accesslog.Var{{Name: "paddock.app", JSONKey: "app", Append: func(b []byte) []byte { return append(b, app...) }}}
	if workerID > 0 {
		vars = append(vars, accesslog.Var{Name: "paddock.worker_id", JSONKey: "worker_id", Number: true,
			Append: func(b []byte) []byte { return strconv.AppendInt(b, int64(workerID), 10) }})
	}
	if generation != nil {
		vars = append(vars, accesslog.Var{Name: "paddock.generation", JSONKey: "generation", Number: true,
			Append: func(b []byte) []byte { return strconv.AppendInt(b, int64(generation()), 10) }})
	}
	return vars
}

// PrepareLogs checks, at start and on reload, that the access log can be
// opened: it creates the file (0640) if needed, and with user or group
// set (the master is root) gives it to them, as gunicorn does, so workers
// can open and later reopen it. The error names the path and the
// setting's origin (file:line).
func PrepareLogs(s *Settings) error {
	if s.AccessLog == "" || s.AccessLog == "-" {
		return nil
	}
	if err := prepareLogFile(s.AccessLog, s.User, s.Group); err != nil {
		return settingError(s, "accesslog", err)
	}
	return nil
}

func prepareLogFile(path, userName, groupName string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, accesslog.FileMode)
	if err != nil {
		return err
	}
	defer f.Close()
	// A bad user or group is reported by the arbiter, which needs it.
	if cred, cerr := credential(userName, groupName); cerr == nil && cred != nil {
		if err := f.Chown(int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("chown %s to the workers' user: %w", path, err)
		}
	}
	return nil
}

// lineWriter passes whole lines on to out, one Write per batch of lines:
// the copy of a worker's stderr into the master's error log, where lines
// of several workers must not interleave. A line longer than
// maxPartialLine is passed on in pieces.
type lineWriter struct {
	out     io.Writer
	mu      sync.Mutex
	partial []byte
}

const maxPartialLine = 64 << 10

func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	i := bytes.LastIndexByte(p, '\n')
	if i < 0 {
		lw.partial = append(lw.partial, p...)
		if len(lw.partial) >= maxPartialLine {
			lw.flushLocked()
		}
		return len(p), nil
	}
	if len(lw.partial) > 0 {
		lw.partial = append(lw.partial, p[:i+1]...)
		lw.flushLocked()
	} else if _, err := lw.out.Write(p[:i+1]); err != nil {
		return 0, err
	}
	lw.partial = append(lw.partial, p[i+1:]...)
	return len(p), nil
}

func (lw *lineWriter) flushLocked() {
	if len(lw.partial) > 0 {
		_, _ = lw.out.Write(lw.partial)
		lw.partial = lw.partial[:0]
	}
}

// flush passes on a last line without newline (the worker exited).
func (lw *lineWriter) flush() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if len(lw.partial) > 0 {
		lw.partial = append(lw.partial, '\n')
	}
	lw.flushLocked()
}

// workerOutput is what a worker's stdout or stderr is set to: w itself
// when it is a file (the descriptor is inherited), else a lineWriter that
// exec's copy goroutine feeds, and the flush to call once the worker is
// gone.
func workerOutput(w io.Writer) (io.Writer, func()) {
	if w == nil {
		return nil, func() {}
	}
	if _, ok := w.(*os.File); ok {
		return w, func() {}
	}
	lw := &lineWriter{out: w}
	return lw, lw.flush
}

// Reopening in the master (USR1, ReopenLogs).

// reopenAckTimeout bounds how long ReopenLogs waits for the workers (a
// variable for tests).
var reopenAckTimeout = 5 * time.Second

// reopenWaiter is a ReopenLogs call waiting for the workers' answers.
// Its fields belong to the Run goroutine until done is closed.
type reopenWaiter struct {
	pending map[int]*wproc // by pid
	errs    []string
	done    chan struct{}
}

func (w *reopenWaiter) finish() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
}

// reopenLogs reopens the master's log files (ArbiterOptions.ReopenLogs),
// makes sure the access log can be opened by the workers, and tells every
// worker to reopen its logs (USR1, ReopenLogs). It runs in the Run
// goroutine and returns the answers to wait for; a failure keeps the old
// file and is logged here, and again when a worker reports one.
func (a *Arbiter) reopenLogs() *reopenWaiter {
	rw := &reopenWaiter{pending: make(map[int]*wproc), done: make(chan struct{})}
	if a.opts.ReopenLogs != nil {
		if err := a.opts.ReopenLogs(); err != nil {
			a.log.Error("cannot reopen the error log; still writing to the old file", "error", err)
			rw.errs = append(rw.errs, "master: "+err.Error())
		} else {
			a.log.Info("log files reopened")
		}
	}
	if err := PrepareLogs(a.settings); err != nil {
		a.log.Error("the access log cannot be opened; workers keep writing to the old file", "error", err)
		rw.errs = append(rw.errs, "master: "+err.Error())
	}
	for _, w := range a.sorted() {
		if w.killed {
			continue
		}
		if err := w.proc.Send(Message{Type: MsgReopenLogs}); err != nil {
			w.log.Warn("cannot send reopen_logs", "error", err)
			rw.errs = append(rw.errs, fmt.Sprintf("worker %d (pid %d): cannot send reopen_logs: %v", w.id, w.proc.Pid(), err))
			continue
		}
		// A booting worker may have opened its files before a rotation:
		// it reopens once booted (the message waits on its channel), but
		// nobody waits for that.
		if w.state != stateBooting {
			rw.pending[w.proc.Pid()] = w
		}
	}
	if len(rw.pending) == 0 {
		rw.finish()
	}
	return rw
}

// reopenAnswered handles a worker's ack of reopen_logs.
func (a *Arbiter) reopenAnswered(w *wproc, m *Message) {
	if m.Error != "" {
		w.log.Error("worker cannot reopen a log file; it keeps writing to the old one", "error", m.Error)
	} else {
		w.log.Debug("worker reopened its log files")
	}
	pid := w.proc.Pid()
	for _, rw := range a.reopenWaiters {
		if rw.pending[pid] == nil {
			continue
		}
		delete(rw.pending, pid)
		if m.Error != "" {
			rw.errs = append(rw.errs, fmt.Sprintf("worker %d (pid %d): %s", w.id, pid, m.Error))
		}
	}
	a.checkReopenWaiters()
}

// checkReopenWaiters releases the ReopenLogs calls every worker has
// answered; a worker that exited meanwhile answers nothing, and needs
// not (its successor opens the files anew).
func (a *Arbiter) checkReopenWaiters() {
	keep := a.reopenWaiters[:0]
	for _, rw := range a.reopenWaiters {
		for pid := range rw.pending {
			if a.workers[pid] == nil {
				delete(rw.pending, pid)
			}
		}
		if len(rw.pending) == 0 {
			rw.finish()
			continue
		}
		keep = append(keep, rw)
	}
	clear(a.reopenWaiters[len(keep):])
	a.reopenWaiters = keep
}

// ErrReopenLogs is wrapped by ReopenLogs' error when a log file could not
// be reopened (the old one is kept).
var ErrReopenLogs = errors.New("cannot reopen every log file; the old ones are kept")

// ReopenLogs is USR1 through the control socket: the master reopens its
// error log and every worker its access log; it returns once every
// worker has answered (at most 5 s), with an error naming each file that
// could not be reopened.
func (a *Arbiter) ReopenLogs(ctx context.Context) error {
	rw, err := call(a, ctx, func() *reopenWaiter {
		a.log.Info("reopening log files", "by", "control socket")
		rw := a.reopenLogs()
		if len(rw.pending) > 0 {
			a.reopenWaiters = append(a.reopenWaiters, rw)
		}
		return rw
	})
	if err != nil {
		return err
	}
	timer := time.NewTimer(reopenAckTimeout)
	defer timer.Stop()
	var errs []string
	select {
	case <-rw.done:
		errs = rw.errs
	case <-timer.C:
	case <-ctx.Done():
	}
	if errs == nil {
		select {
		case <-rw.done:
			errs = rw.errs
		default:
			// Not every worker answered: collect what is known in the Run
			// goroutine, which owns the waiter.
			errs, err = call(a, context.WithoutCancel(ctx), func() []string {
				out := rw.errs
				for pid, w := range rw.pending {
					out = append(out, fmt.Sprintf("worker %d (pid %d): no answer within %s", w.id, pid, reopenAckTimeout))
				}
				clear(rw.pending)
				a.checkReopenWaiters()
				return out
			})
			if err != nil {
				return err
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrReopenLogs, strings.Join(errs, "; "))
	}
	return nil
}
