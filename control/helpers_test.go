package control

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fake is a Controller with canned answers. err, when set, is what every
// method returns; panicMsg makes every method panic; block makes Reload
// wait for its ctx.
type fake struct {
	mu       sync.Mutex
	err      error
	panicMsg string
	block    bool
	calls    []string
	stopped  chan stopCall
}

type stopCall struct {
	graceful bool
	grace    time.Duration
}

func newFake() *fake { return &fake{stopped: make(chan stopCall, 4)} }

func (f *fake) call(ctx context.Context, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	err, msg, block := f.err, f.panicMsg, f.block
	f.mu.Unlock()
	if msg != "" {
		panic(msg)
	}
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fake) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

var t0 = time.Date(2026, 11, 24, 1, 40, 0, 0, time.UTC)

func (f *fake) Status(ctx context.Context) (Status, error) {
	if err := f.call(ctx, "Status"); err != nil {
		return Status{}, err
	}
	return Status{Pid: 4120, State: "running", UptimeS: 3605.5, Generation: 7,
		Config:     ConfigRef{Path: "/etc/paddock/paddock.ini", SHA256: "ab12"},
		Workers:    WorkerCounts{Target: 4, Ready: 4},
		Listeners:  []Listener{{Bind: ":80", Network: "tcp", Addr: "0.0.0.0:80"}},
		LastReload: &ReloadOutcome{OK: true, At: t0}}, nil
}

func (f *fake) Workers(ctx context.Context) ([]Worker, error) {
	if err := f.call(ctx, "Workers"); err != nil {
		return nil, err
	}
	return []Worker{{ID: 1, Pid: 4121, Generation: 7, State: "ready", StartedAt: t0, Requests: 1820, InFlight: 2, RSSBytes: 31457280, LastHeartbeatS: 0.5}}, nil
}

func (f *fake) AddWorkers(ctx context.Context, n int) (int, int, error) {
	if err := f.call(ctx, "AddWorkers"); err != nil {
		return 0, 0, err
	}
	return 4, 4 + n, nil
}

func (f *fake) RemoveWorkers(ctx context.Context, n int) (int, int, error) {
	if err := f.call(ctx, "RemoveWorkers"); err != nil {
		return 0, 0, err
	}
	return 4, max(1, 4-n), nil
}

func (f *fake) SetTarget(ctx context.Context, n int) (int, int, error) {
	if err := f.call(ctx, "SetTarget"); err != nil {
		return 0, 0, err
	}
	return 4, n, nil
}

func (f *fake) KillWorker(ctx context.Context, pid int, force bool) error {
	if err := f.call(ctx, "KillWorker"); err != nil {
		return err
	}
	if pid != 4121 {
		return ErrNoSuchWorker
	}
	return nil
}

func (f *fake) Reload(ctx context.Context) (ReloadResult, error) {
	if err := f.call(ctx, "Reload"); err != nil {
		return ReloadResult{}, err
	}
	return ReloadResult{OK: true, Generation: 8, Changed: []string{"pipeline:main"}, DurationS: 0.25}, nil
}

func (f *fake) CheckConfig(ctx context.Context, path string) (CheckResult, error) {
	if err := f.call(ctx, "CheckConfig"); err != nil {
		return CheckResult{}, err
	}
	if path == "" {
		path = "/etc/paddock/paddock.ini"
	}
	return CheckResult{OK: true, Path: path}, nil
}

func (f *fake) Upgrade(ctx context.Context) (UpgradeResult, error) {
	if err := f.call(ctx, "Upgrade"); err != nil {
		return UpgradeResult{}, err
	}
	return UpgradeResult{OK: true, OldPid: 4120, NewPid: 5210, OldVersion: "1.4.0", NewVersion: "1.5.0"}, nil
}

func (f *fake) Stop(ctx context.Context, graceful bool, grace time.Duration) error {
	err := f.call(ctx, "Stop")
	f.stopped <- stopCall{graceful, grace}
	return err
}

func (f *fake) Config(ctx context.Context) (ConfigView, error) {
	if err := f.call(ctx, "Config"); err != nil {
		return ConfigView{}, err
	}
	return ConfigView{Path: "/etc/paddock/paddock.ini", Settings: map[string]SettingValue{
		"workers": {Value: "4", Source: "flag", Where: "--workers"}}}, nil
}

func (f *fake) ConfigFile(ctx context.Context) ([]byte, error) {
	if err := f.call(ctx, "ConfigFile"); err != nil {
		return nil, err
	}
	return []byte("[server:main]\nworkers = 4\n"), nil
}

func (f *fake) Pipeline(ctx context.Context, format string) ([]byte, error) {
	if err := f.call(ctx, "Pipeline"); err != nil {
		return nil, err
	}
	switch format {
	case "json":
		return []byte(`{"entry":"app:main"}`), nil
	case "dot":
		return []byte("digraph {}\n"), nil
	}
	return []byte("app:main\n"), nil
}

func (f *fake) ReopenLogs(ctx context.Context) error { return f.call(ctx, "ReopenLogs") }

func (f *fake) Listeners(ctx context.Context) ([]Listener, error) {
	if err := f.call(ctx, "Listeners"); err != nil {
		return nil, err
	}
	return []Listener{{Bind: "unix:/run/app.sock", Network: "unix", Addr: "/run/app.sock"}}, nil
}

func (f *fake) Upstreams(ctx context.Context) (UpstreamsResponse, error) {
	if err := f.call(ctx, "Upstreams"); err != nil {
		return UpstreamsResponse{}, err
	}
	return UpstreamsResponse{
		Proxies: []ProxyUpstreams{{Section: "app:backend", Balance: "least_conn", Upstreams: []Upstream{{
			URL: "http://10.0.0.11:8774",
			Workers: []UpstreamState{{Pid: 4121, WorkerID: 1, Generation: 7, Healthy: false, State: "down", Reason: "failures",
				Failures: 3, DownForS: 7.5, Active: 0, Check: "off", Requests: 90, Errors: 3}},
		}}}},
		Workers: []UpstreamsWorker{{ID: 1, Pid: 4121, Generation: 7, Answered: true}},
	}, nil
}

// shortDir is a temporary directory with a short path: t.TempDir()'s can
// exceed a unix socket path's 108 bytes.
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pdc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serve starts a Server for ctrl on a fresh socket and returns a Client
// for it.
func serve(t testing.TB, opts ServerOptions) (*Client, *Server) {
	t.Helper()
	path := filepath.Join(shortDir(t), "ctl.sock")
	ln, err := Listen(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(opts)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	c := &Client{Path: path, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		c.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c, s
}

// request sends a raw request through c's transport.
func request(t *testing.T, c *Client, method, path, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://localhost"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return resp, string(b)
}
