package worker

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// startLogsArbiter is startArbiter with a ReopenLogs hook for the
// master's own files.
func startLogsArbiter(t *testing.T, reopen func() error) *harness {
	t.Helper()
	return runHarness(t, ArbiterOptions{Settings: harnessSettings(), ReopenLogs: reopen})
}

// ReopenLogs reopens the master's files, tells every worker, waits for
// their acks and reports each failure by who and what; USR1 does the same
// without waiting.
func TestArbiterReopenLogs(t *testing.T) {
	var masterReopens atomic.Int32
	var masterErr atomic.Pointer[error]
	h := startLogsArbiter(t, func() error {
		masterReopens.Add(1)
		if e := masterErr.Load(); e != nil {
			return *e
		}
		return nil
	})
	p1, p2 := h.bootTwo()
	waitReadyCount(t, h.a, 2) // a booting worker is told, not waited for

	// Both answer: ok.
	done := make(chan error, 1)
	go func() { done <- h.a.ReopenLogs(t.Context()) }()
	wantSent(t, p1, MsgReopenLogs)
	wantSent(t, p2, MsgReopenLogs)
	p1.say(Message{Type: MsgAck, Command: MsgReopenLogs})
	select {
	case err := <-done:
		t.Fatalf("ReopenLogs returned %v before every worker answered", err)
	case <-time.After(100 * time.Millisecond):
	}
	p2.say(Message{Type: MsgAck, Command: MsgReopenLogs})
	if err := <-done; err != nil {
		t.Fatalf("ReopenLogs = %v", err)
	}
	if masterReopens.Load() != 1 {
		t.Errorf("master reopened %d times, want 1", masterReopens.Load())
	}

	// The master's error log and one worker's access log fail: both are
	// named; the old files are kept (the workers' business).
	merr := errors.New("errorlog: reopen (still writing to the old file): open /x/error.log: permission denied")
	masterErr.Store(&merr)
	go func() { done <- h.a.ReopenLogs(t.Context()) }()
	wantSent(t, p1, MsgReopenLogs)
	wantSent(t, p2, MsgReopenLogs)
	p1.say(Message{Type: MsgAck, Command: MsgReopenLogs, Error: "accesslog: reopen (still writing to the old file): open /x/access.log: not a directory"})
	p2.say(Message{Type: MsgAck, Command: MsgReopenLogs})
	err := <-done
	if !errors.Is(err, ErrReopenLogs) {
		t.Fatalf("ReopenLogs = %v, want ErrReopenLogs", err)
	}
	for _, want := range []string{"master: errorlog: reopen (still writing to the old file): open /x/error.log: permission denied",
		"worker 1 (pid 1001): accesslog: reopen (still writing to the old file): open /x/access.log: not a directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "worker 2") {
		t.Errorf("error %q names the worker that succeeded", err)
	}
	masterErr.Store(nil)

	// A worker that exits instead of answering releases the call; one
	// that never answers is named after the timeout.
	defer func(d time.Duration) { reopenAckTimeout = d }(reopenAckTimeout)
	reopenAckTimeout = 300 * time.Millisecond
	go func() { done <- h.a.ReopenLogs(t.Context()) }()
	wantSent(t, p1, MsgReopenLogs)
	wantSent(t, p2, MsgReopenLogs)
	p1.exit("signal: killed")
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "worker 2 (pid 1002): no answer within 300ms") || strings.Contains(err.Error(), "worker 1") {
		t.Fatalf("ReopenLogs = %v, want worker 2 named as silent", err)
	}

	// USR1: the same, nobody waits.
	p3 := h.spawned()
	p3.say(Message{Type: MsgReady})
	before := masterReopens.Load()
	h.sigs <- syscall.SIGUSR1
	wantSent(t, p2, MsgReopenLogs)
	wantSent(t, p3, MsgReopenLogs)
	if masterReopens.Load() != before+1 {
		t.Errorf("USR1: master reopened %d times, want %d", masterReopens.Load(), before+1)
	}
}

func TestErrorLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "error.log")
	s := &Settings{ErrorLog: path, Origins: map[string]Origin{"errorlog": {Source: SourceFile, Where: "paste.ini:7", Value: path}}}
	e, err := OpenErrorLog(s, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	log := hclog.New(&hclog.LoggerOptions{Output: e.Writer()})
	e.SetLogger(log)
	log.Info("one")
	// Drain the buffer before renaming, as a rotation would find it.
	for deadline := time.Now().Add(5 * time.Second); fileText(path) == ""; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nothing written")
		}
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := e.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info("two")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if old, cur := fileText(path+".1"), fileText(path); !strings.Contains(old, "one") || strings.Contains(old, "two") || !strings.Contains(cur, "two") {
		t.Errorf("rotated %q, current %q", old, cur)
	}

	// An unwritable path at start names the setting's file:line and the
	// path.
	s.ErrorLog = filepath.Join(path, "x.log") // under a file
	if _, err := OpenErrorLog(s, os.Stderr); err == nil || err.Error() != "paste.ini:7: errorlog: open "+s.ErrorLog+": not a directory" {
		t.Errorf("OpenErrorLog = %v", err)
	}
	// stderr needs neither opening nor reopening.
	s.ErrorLog = "-"
	e, err = OpenErrorLog(s, os.Stderr)
	if err != nil || e.Writer() != os.Stderr || e.Reopen() != nil || e.Close() != nil {
		t.Errorf("errorlog - : %v", err)
	}
}

func fileText(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// A worker's access log: the format, the Vars, the file, flushed on
// close; PrepareLogs names a bad path.
func TestWorkerAccessLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	s := &Settings{AccessLog: path, AccessLogFormat: `%(m)s %(U)s %(s)s %(b)s %({paddock.app}e)s %({paddock.worker_id}e)s %({paddock.generation}e)s`,
		Origins: map[string]Origin{"accesslog": {Source: SourceFile, Where: "paste.ini:9"}}}
	if err := PrepareLogs(s); err != nil {
		t.Fatal(err)
	}
	gen := 3
	a, err := openAccessLog(s, false, nil, serverVars("api", 2, func() int { return gen }), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	h := observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) }), a, nil)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/one", nil))
	gen = 4
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/two", nil))
	a.close()
	if got, want := fileText(path), "GET /one 200 2 api 2 3\nPOST /two 200 2 api 2 4\n"; got != want {
		t.Errorf("access log %q, want %q", got, want)
	}

	if h := observe(http.NotFoundHandler(), nil, nil); h == nil {
		t.Error("observe without an access log")
	}
	s.AccessLog = filepath.Join(path, "x") // under a file
	if err := PrepareLogs(s); err == nil || err.Error() != "paste.ini:9: accesslog: open "+s.AccessLog+": not a directory" {
		t.Errorf("PrepareLogs = %v", err)
	}
	if _, err := openAccessLog(s, false, nil, nil, hclog.NewNullLogger()); err == nil || !strings.Contains(err.Error(), s.AccessLog) {
		t.Errorf("openAccessLog = %v", err)
	}
	s.AccessLog = ""
	if a, err := openAccessLog(s, false, nil, nil, hclog.NewNullLogger()); a != nil || err != nil {
		t.Errorf("no accesslog: %v, %v", a, err)
	}
}

// Lines reach the shared output whole, however the pipe cut them.
func TestLineWriter(t *testing.T) {
	var out strings.Builder
	var writes []string
	rec := writerFunc(func(p []byte) (int, error) { writes = append(writes, string(p)); return out.Write(p) })
	lw, flush := workerOutput(rec)
	for _, chunk := range []string{"one\ntw", "o\n", "thr", "ee\nfour\nfi", "ve"} {
		lw.Write([]byte(chunk))
	}
	flush()
	if want := []string{"one\n", "two\n", "three\nfour\n", "five\n"}; strings.Join(writes, "|") != strings.Join(want, "|") {
		t.Errorf("writes %q, want %q", writes, want)
	}
	if f, _ := workerOutput(os.Stderr); f != os.Stderr {
		t.Error("a file is not passed on as is")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
