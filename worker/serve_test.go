package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/pipeline"
)

// syncBuffer is a log sink safe to read while Serve writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testSettings(t *testing.T, flags map[string]string) *Settings {
	t.Helper()
	if _, ok := flags["bind"]; !ok {
		flags["bind"] = "127.0.0.1:0"
	}
	s, _, err := Resolve(Input{Flags: flags, LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer runs a server on 127.0.0.1:0 with the given settings and
// handler and returns its address; it is closed when the test ends.
func startServer(t *testing.T, s *Settings, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t.Context(), h, s, hclog.NewNullLogger())
	srv.start([]net.Listener{ln})
	t.Cleanup(func() {
		srv.close()
		srv.wait()
	})
	return ln.Addr().String()
}

// rawRequest sends req as is and returns the response status and whether
// the server asked to close the connection.
func rawRequest(t *testing.T, addr, req string) (int, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// Write from a goroutine: a server that answers before reading a huge
	// head would otherwise deadlock us.
	go io.WriteString(c, req)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Close
}

func hello() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi\n") })
}

func TestLimits(t *testing.T) {
	s := testSettings(t, map[string]string{"limit_request_line": "100", "limit_request_fields": "5", "limit_request_field_size": "50"})
	addr := startServer(t, s, hello())

	line := func(n int) string {
		// "GET " + target + " HTTP/1.1" is n bytes.
		return "GET /" + strings.Repeat("a", n-len("GET / HTTP/1.1")) + " HTTP/1.1\r\n"
	}
	fields := func(n int) string {
		var b strings.Builder
		b.WriteString("Host: x\r\n")
		for i := 1; i < n; i++ {
			fmt.Fprintf(&b, "X-F%d: v\r\n", i)
		}
		return b.String()
	}
	tests := []struct {
		name      string
		req       string
		want      int
		wantClose bool
	}{
		{name: "ok", req: line(30) + fields(2) + "\r\n", want: 200},
		{name: "line at limit", req: line(100) + fields(1) + "\r\n", want: 200},
		{name: "line over limit", req: line(101) + fields(1) + "\r\n", want: 414, wantClose: true},
		{name: "fields at limit", req: line(30) + fields(5) + "\r\n", want: 200},
		{name: "fields over limit", req: line(30) + fields(6) + "\r\n", want: 431, wantClose: true},
		{name: "repeated field counts each time", req: line(30) + "Host: x\r\n" + strings.Repeat("X-A: 1\r\n", 5) + "\r\n", want: 431, wantClose: true},
		// A field's line counts with its CRLF, as gunicorn counts it.
		{name: "field at limit", req: line(30) + "Host: x\r\nX-Big: " + strings.Repeat("v", 50-len("X-Big: \r\n")) + "\r\n\r\n", want: 200},
		{name: "field over limit", req: line(30) + "Host: x\r\nX-Big: " + strings.Repeat("v", 51-len("X-Big: \r\n")) + "\r\n\r\n", want: 431, wantClose: true},
		{name: "host over limit", req: line(30) + "Host: " + strings.Repeat("h", 50) + "\r\n\r\n", want: 431, wantClose: true},
		{name: "garbage is a 400", req: "NOT HTTP AT ALL\r\n\r\n", want: 400, wantClose: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, closed := rawRequest(t, addr, tc.req)
			if got != tc.want {
				t.Errorf("status = %d, want %d", got, tc.want)
			}
			if closed != tc.wantClose {
				t.Errorf("Connection: close = %v, want %v", closed, tc.wantClose)
			}
		})
	}
}

func TestLimitsDefaults(t *testing.T) {
	addr := startServer(t, testSettings(t, map[string]string{}), hello())
	req := func(value string) string {
		return "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + value + "\r\n\r\n"
	}
	if got, _ := rawRequest(t, addr, req(strings.Repeat("v", 8000))); got != 200 {
		t.Errorf("8 KB field: %d, want 200", got)
	}
	if got, _ := rawRequest(t, addr, req(strings.Repeat("v", 8190))); got != 431 {
		t.Errorf("field over 8190: %d, want 431", got)
	}
	if got, _ := rawRequest(t, addr, "GET /"+strings.Repeat("a", 4094)+" HTTP/1.1\r\nHost: x\r\n\r\n"); got != 414 {
		t.Errorf("request line over 4094: %d, want 414", got)
	}
}

// With the per-field limit off, Go's total (MaxHeaderBytes) still applies.
func TestLimitsTotal(t *testing.T) {
	s := testSettings(t, map[string]string{"limit_request_fields": "2", "limit_request_field_size": "0"})
	if got := newLimits(s).maxHeaderBytes(); got != 4094+2+2*(unlimitedBudget+2)+2 {
		t.Fatalf("maxHeaderBytes = %d", got)
	}
	addr := startServer(t, s, hello())
	big := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("v", 3<<20) + "\r\n\r\n"
	if got, _ := rawRequest(t, addr, big); got != 431 {
		t.Errorf("3 MB head: %d, want 431", got)
	}
}

func TestMaxHeaderBytesCap(t *testing.T) {
	l := limits{line: 0, fields: maxRequestFields, fieldSize: 0}
	if got := l.maxHeaderBytes(); got != maxHeaderBytesCap {
		t.Errorf("maxHeaderBytes = %d, want the cap %d", got, maxHeaderBytesCap)
	}
}

// slowRegistry adds egg:test#slow: an app that answers after ?ms= (or when
// the test ends), for drain tests.
func slowRegistry(t *testing.T, started chan<- struct{}) *pipeline.Registry {
	reg := pipeline.NewDefaultRegistry()
	reg.Register(pipeline.App("slow app for tests", func(c *pipeline.Config) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d, _ := time.ParseDuration(r.URL.Query().Get("d"))
			select {
			case started <- struct{}{}:
			default:
			}
			select {
			case <-time.After(d):
			case <-t.Context().Done():
			}
			io.WriteString(w, "slow done\n")
		}), nil
	}), "egg:test#slow")
	return reg
}

const slowINI = `[composite:main]
use = egg:paddock#urlmap
/ = hello
/slow = slow

[app:hello]
use = egg:paddock#hello

[app:slow]
use = egg:test#slow
`

type served struct {
	addr    string
	logs    *syncBuffer
	done    chan error
	stop    chan Stop
	pidfile string
}

func serveTest(t *testing.T, flags map[string]string, ini string, reg *pipeline.Registry) *served {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "paste.ini")
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	sv := &served{logs: &syncBuffer{}, done: make(chan error, 1), stop: make(chan Stop, 2), pidfile: filepath.Join(dir, "paddock.pid")}
	flags["pidfile"] = sv.pidfile
	s := testSettings(t, flags)
	ready := make(chan string, 1)
	log := hclog.New(&hclog.LoggerOptions{Output: sv.logs, Level: hclog.Debug})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		sv.done <- Serve(ctx, Options{ConfigPath: cfg, Settings: s, Logger: log, Registry: reg, Stop: sv.stop,
			OnReady: func(addrs []net.Addr) { ready <- addrs[0].String() }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-sv.done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
	select {
	case sv.addr = <-ready:
	case err := <-sv.done:
		t.Fatalf("Serve: %v\n%s", err, sv.logs)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	return sv
}

func (sv *served) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-sv.done:
		sv.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("Serve did not return\n%s", sv.logs)
	}
	return nil
}

func get(addr, path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestServeGracefulStopFinishesInFlight(t *testing.T) {
	started := make(chan struct{}, 1)
	sv := serveTest(t, map[string]string{"graceful_timeout": "10"}, slowINI, slowRegistry(t, started))

	if b, err := os.ReadFile(sv.pidfile); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Errorf("pidfile = %q, %v; want our pid", b, err)
	}
	if code, body, err := get(sv.addr, "/"); err != nil || code != 200 || body != "Hello from paddock\n" {
		t.Fatalf("GET / = %d %q %v", code, body, err)
	}

	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		code, body, err := get(sv.addr, "/slow?d=300ms")
		slow <- result{code, body, err}
	}()
	<-started
	sv.stop <- StopGraceful

	r := <-slow
	if r.err != nil || r.code != 200 || r.body != "slow done\n" {
		t.Errorf("in-flight request during drain = %d %q %v, want 200", r.code, r.body, r.err)
	}
	if err := sv.wait(t); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if _, err := net.Dial("tcp", sv.addr); err == nil {
		t.Error("still accepting after the stop")
	}
	if _, err := os.Stat(sv.pidfile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile left behind: %v", err)
	}
	logs := sv.logs.String()
	for _, want := range []string{"listener: listening: addr=" + sv.addr, "master: ready:", "master: draining: graceful_timeout=10s", "master: drained", "master: stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

func TestServeGracefulTimeout(t *testing.T) {
	started := make(chan struct{}, 1)
	sv := serveTest(t, map[string]string{"graceful_timeout": "0.2"}, slowINI, slowRegistry(t, started))
	go get(sv.addr, "/slow?d=1h")
	<-started
	begin := time.Now()
	sv.stop <- StopGraceful
	if err := sv.wait(t); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("graceful stop took %v with graceful_timeout 0.2s", d)
	}
	if logs := sv.logs.String(); !strings.Contains(logs, "drain incomplete; closing remaining connections: error=\"graceful_timeout reached\"") {
		t.Errorf("logs lack the drain timeout:\n%s", logs)
	}
}

func TestServeImmediateStop(t *testing.T) {
	started := make(chan struct{}, 1)
	sv := serveTest(t, map[string]string{}, slowINI, slowRegistry(t, started))
	failed := make(chan error, 1)
	go func() {
		_, _, err := get(sv.addr, "/slow?d=1h")
		failed <- err
	}()
	<-started
	sv.stop <- StopImmediate
	if err := sv.wait(t); err != nil {
		t.Fatal(err)
	}
	if err := <-failed; err == nil {
		t.Error("in-flight request survived an immediate stop")
	}
	if logs := sv.logs.String(); !strings.Contains(logs, "stopping immediately") || strings.Contains(logs, "draining") {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestServeImmediateCutsDrainShort(t *testing.T) {
	started := make(chan struct{}, 1)
	sv := serveTest(t, map[string]string{"graceful_timeout": "1h"}, slowINI, slowRegistry(t, started))
	go get(sv.addr, "/slow?d=1h")
	<-started
	sv.stop <- StopGraceful
	sv.stop <- StopImmediate
	if err := sv.wait(t); err != nil {
		t.Fatal(err)
	}
	if logs := sv.logs.String(); !strings.Contains(logs, `error="immediate stop requested"`) {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestServeContextDoneIsGraceful(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "paste.ini")
	os.WriteFile(cfg, []byte("[app:main]\nuse = egg:paddock#hello\n"), 0o644)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Options{ConfigPath: cfg, Settings: testSettings(t, map[string]string{}), Stop: make(chan Stop),
			Logger: hclog.New(&hclog.LoggerOptions{Output: logs}), OnReady: func([]net.Addr) { cancel() }})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if !strings.Contains(logs.String(), "draining") {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestServeConfigError(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "paste.ini")
	os.WriteFile(cfg, []byte("[app:main]\nuse = egg:paddock#nope\n"), 0o644)
	err := Serve(t.Context(), Options{ConfigPath: cfg, Settings: testSettings(t, map[string]string{}), Stop: make(chan Stop)})
	var pe *pipeline.Error
	if !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), cfg+":2: [app:main]: ") {
		t.Fatalf("Serve = %v, want a file:line error", err)
	}
}

func TestServeListenError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "paste.ini")
	os.WriteFile(cfg, []byte("[app:main]\nuse = egg:paddock#hello\n"), 0o644)
	s := testSettings(t, map[string]string{"bind": "127.0.0.1:0 " + taken.Addr().String()})
	err = Serve(t.Context(), Options{ConfigPath: cfg, Settings: s, Stop: make(chan Stop)})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Serve = %v, want address already in use", err)
	}
}

func TestPidfileRefusesLiveProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.pid")
	// pid 1 is alive and is neither us nor our parent (unless the test
	// runs as a container's init's child: then skip).
	if os.Getppid() == 1 {
		t.Skip("parent is pid 1")
	}
	os.WriteFile(path, []byte("1\n"), 0o644)
	if err := writePidfile(path, os.Getpid()); err == nil || !strings.Contains(err.Error(), "already running as pid 1") {
		t.Fatalf("writePidfile = %v", err)
	}
	// A stale pidfile is replaced.
	os.WriteFile(path, []byte("999999999\n"), 0o644)
	if err := writePidfile(path, os.Getpid()); err != nil {
		t.Fatalf("writePidfile over a stale file: %v", err)
	}
	if err := removePidfile(path, os.Getpid()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("removePidfile removed another process's pidfile: %v", err)
	}
	if err := removePidfile(path, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile still there: %v", err)
	}
}

func TestSignals(t *testing.T) {
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	stops := Signals(ctx, hclog.New(&hclog.LoggerOptions{Output: logs}))

	// HUP would kill an unprepared process; here it is logged.
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case st := <-stops:
		if st != StopGraceful {
			t.Errorf("TERM gave %v, want graceful", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no stop after TERM")
	}
	syscall.Kill(os.Getpid(), syscall.SIGQUIT)
	if st := <-stops; st != StopImmediate {
		t.Errorf("QUIT gave %v, want immediate", st)
	}
	if !strings.Contains(logs.String(), "signal not supported yet; ignored: signal=HUP") {
		t.Errorf("logs:\n%s", logs)
	}
	cancel()
	if _, ok := <-stops; ok {
		t.Error("channel not closed after ctx is done")
	}
}
