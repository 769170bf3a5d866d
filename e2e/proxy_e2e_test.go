package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"paddock/control"
)

// End-to-end tests of the proxy app through `paddock serve`: worker
// processes, the catalog's filters in front, the control socket.

// goUpstream is a Go HTTP server on 127.0.0.1 that answers with its name
// (X-Upstream and the body); kill closes its listener and every
// connection at once, as a killed process's would be.
type goUpstream struct {
	name string
	url  string
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	hits atomic.Int64
	sick atomic.Bool // /healthz answers 503
}

func startGoUpstream(t *testing.T, name string) *goUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &goUpstream{name: name, url: "http://" + ln.Addr().String(), ln: ln, done: make(chan struct{})}
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if u.sick.Load() {
				http.Error(w, "sick", http.StatusServiceUnavailable)
			}
			return
		}
		u.hits.Add(1)
		w.Header().Set("X-Upstream", name)
		io.WriteString(w, name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { // stopped by kill
		defer close(u.done)
		u.srv.Serve(ln)
	}()
	t.Cleanup(u.kill)
	return u
}

func (u *goUpstream) kill() {
	u.srv.Close()
	<-u.done
}

// proxyMaster starts paddock serve with workers, a control socket and
// the [app:main]... sections in body, and waits until its workers are
// ready.
func proxyMaster(t *testing.T, workers int, body string) *ctlMaster {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	cfg := fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = %d\ngraceful_timeout = 3\n\n%s", addr, workers, body)
	cmd, stderr, pidfile := startPaddock(t, cfg, "--ctl-socket", sock)
	m := &ctlMaster{cmd: cmd, stderr: stderr, sock: sock, addr: addr, config: filepath.Join(filepath.Dir(pidfile), "paste.ini"),
		client: &control.Client{Path: sock, Timeout: 10 * time.Second}}
	t.Cleanup(m.client.CloseIdleConnections)
	m.waitReady(t, workers)
	return m
}

// loadResult is one request of runLoad.
type loadResult struct {
	start, end time.Time
	status     int
	upstream   string
	err        error
}

// runLoad sends GETs to url from conns keep-alive clients until stop is
// closed, and returns every request's outcome.
func runLoad(url string, conns int, stop <-chan struct{}) []loadResult {
	var mu sync.Mutex
	var out []loadResult
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := loadResult{start: time.Now()}
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.status, r.upstream = resp.StatusCode, resp.Header.Get("X-Upstream")
				}
				r.err, r.end = err, time.Now()
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

func failed(r loadResult) bool { return r.err != nil || r.status != http.StatusOK }

// An upstream dies under load (its listener and every connection closed
// at once, in-flight requests included). Stated precisely:
//
//   - with retries (the default: every other upstream once), not one GET
//     fails: not those in flight on the dead upstream when it died, not
//     those that found it dead, not any later one;
//   - with retries = 0 and fail_threshold = 1, the requests that fail
//     are only those already on their way to the dead upstream when the
//     first failure came back (the detection): every failed request
//     started before the first failed request ended, and none started
//     after it fails.
//
// Either way, after the detection no request reaches the dead upstream
// (it is marked down for fail_timeout) and `ctl upstreams` shows it down.
func TestProxyFailover(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		retries string
	}{
		{"retries", 2, ""},
		{"no retries", 1, "retries = 0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := startGoUpstream(t, "a"), startGoUpstream(t, "b")
			m := proxyMaster(t, tc.workers, fmt.Sprintf("[app:main]\nuse = egg:paddock#proxy\nupstreams = %s %s\nfail_threshold = 1\nfail_timeout = 60\n%s",
				a.url, b.url, tc.retries))
			stop := make(chan struct{})
			results := make(chan []loadResult, 1)
			go func() { results <- runLoad("http://"+m.addr+"/", 8, stop) }()
			time.Sleep(700 * time.Millisecond)
			if b.hits.Load() == 0 || a.hits.Load() == 0 {
				t.Fatalf("before the kill: a %d, b %d requests; want both used", a.hits.Load(), b.hits.Load())
			}
			b.kill()
			// After kill returned: a request started before that may still
			// have been answered by b.
			killed := time.Now()
			time.Sleep(1200 * time.Millisecond)
			close(stop)
			rs := <-results

			var fails []loadResult
			var firstFailEnd time.Time
			afterKill, fromB := 0, 0
			for _, r := range rs {
				if failed(r) {
					fails = append(fails, r)
					if firstFailEnd.IsZero() || r.end.Before(firstFailEnd) {
						firstFailEnd = r.end
					}
				}
				if r.start.After(killed) {
					afterKill++
					if r.upstream == "b" {
						fromB++
					}
				}
			}
			t.Logf("%d requests, %d after the kill, %d failed", len(rs), afterKill, len(fails))
			if afterKill < 100 {
				t.Fatalf("only %d requests after the kill: the load did not run", afterKill)
			}
			if fromB != 0 {
				t.Errorf("%d requests started after the kill were answered by the dead upstream", fromB)
			}
			if tc.retries == "" {
				for i, r := range fails {
					if i < 5 {
						t.Errorf("failed GET (started %s after the kill): status %d, %v", r.start.Sub(killed), r.status, r.err)
					}
				}
			} else {
				if len(fails) == 0 {
					t.Errorf("no request failed without retries: the test does not see the kill")
				}
				for _, r := range fails {
					if !r.start.Before(firstFailEnd) {
						t.Errorf("a GET started %s after the detection failed: status %d, %v", r.start.Sub(firstFailEnd), r.status, r.err)
					}
					if r.err == nil && r.status != http.StatusBadGateway {
						t.Errorf("a failed GET answered %d, want 502", r.status)
					}
				}
			}

			// A proxy counts a connection released when its handler has
			// returned, which can be just after the client read the whole
			// answer: wait for the counts to settle.
			var res control.UpstreamsResponse
			waitFor(t, "connections in use to drop to 0", 5*time.Second, func() bool {
				var err error
				if res, err = m.client.Upstreams(t.Context()); err != nil {
					t.Fatal(err)
				}
				for _, p := range res.Proxies {
					for _, up := range p.Upstreams {
						for _, w := range up.Workers {
							if w.Active != 0 {
								return false
							}
						}
					}
				}
				return true
			})
			if len(res.Proxies) != 1 || len(res.Proxies[0].Upstreams) != 2 || res.Proxies[0].Section != "app:main" {
				t.Fatalf("upstreams %+v", res)
			}
			// Every worker that sent b requests (the kernel may have
			// given all the connections to one) has marked it down.
			down := 0
			for _, up := range res.Proxies[0].Upstreams {
				if len(up.Workers) != tc.workers {
					t.Errorf("%s: seen by %d workers, want %d", up.URL, len(up.Workers), tc.workers)
				}
				for _, w := range up.Workers {
					wantDown := up.URL == b.url && w.Requests > 0
					if (w.State == "down") != wantDown || w.Healthy == wantDown || w.Active != 0 {
						t.Errorf("%s in worker %d: %+v (want down: %v)", up.URL, w.Pid, w, wantDown)
					}
					if w.State == "down" {
						down++
					}
				}
			}
			if down == 0 {
				t.Errorf("no worker marked the dead upstream down")
			}
		})
	}
}

// `paddock ctl upstreams` and GET /v1/upstreams show every worker's view
// of every proxy section: an upstream failing its active health check is
// down in each worker (and gets no requests), a refused one is down
// after fail_threshold failures.
func TestCtlUpstreams(t *testing.T) {
	a, sick, dead := startGoUpstream(t, "a"), startGoUpstream(t, "sick"), startGoUpstream(t, "dead")
	sick.sick.Store(true)
	dead.kill()
	m := proxyMaster(t, 2, fmt.Sprintf(`[composite:main]
use = egg:Paste#urlmap
/checked = checked
/ = passive

[app:checked]
use = egg:paddock#proxy
upstreams = %s %s
balance = least_conn
health_path = /healthz
health_interval = 0.1
health_fails = 1

[app:passive]
use = egg:paddock#proxy
upstreams = %s %s
fail_threshold = 1
`, a.url, sick.url, a.url, dead.url))

	// A connection per request: the workers share the listener, so
	// both get some.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) {
		t.Helper()
		resp, err := client.Get("http://" + m.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "a" {
			t.Fatalf("GET %s: %d from %q, want 200 from a", path, resp.StatusCode, resp.Header.Get("X-Upstream"))
		}
	}
	waitFor(t, "the sick upstream down in both workers", 10*time.Second, func() bool {
		res, err := m.client.Upstreams(t.Context())
		if err != nil || len(res.Proxies) != 2 {
			return false
		}
		for _, w := range res.Proxies[0].Upstreams[1].Workers {
			if w.State != "down" {
				return false
			}
		}
		return len(res.Proxies[0].Upstreams[1].Workers) == 2
	})
	// Each worker finds the dead upstream of app:passive on a request of
	// its own (retried on a: the client sees 200).
	waitFor(t, "the dead upstream down in both workers", 10*time.Second, func() bool {
		for range 4 {
			get("/checked/x")
			get("/y")
		}
		res, err := m.client.Upstreams(t.Context())
		if err != nil || len(res.Proxies) != 2 || len(res.Proxies[1].Upstreams[1].Workers) != 2 {
			return false
		}
		for _, w := range res.Proxies[1].Upstreams[1].Workers {
			if w.State != "down" {
				return false
			}
		}
		return true
	})
	if n := sick.hits.Load(); n != 0 {
		t.Errorf("the upstream failing its health check got %d requests", n)
	}

	out, errOut, code := ctlRunE2E(t, m.sock, "upstreams")
	if code != 0 {
		t.Fatalf("ctl upstreams: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("ctl upstreams:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "SECTION") || !strings.Contains(lines[0], "ACTIVE") || len(lines) != 1+2*2*2 {
		t.Fatalf("want a header and 8 rows (2 sections x 2 upstreams x 2 workers):\n%s", out)
	}
	count := func(sub ...string) int {
		n := 0
		for _, l := range lines[1:] {
			ok := true
			for _, s := range sub {
				ok = ok && strings.Contains(l, s)
			}
			if ok {
				n++
			}
		}
		return n
	}
	if n := count("app:checked (least_conn)", a.url, " up ", "passing"); n != 2 {
		t.Errorf("%d rows of a passing in app:checked, want 2", n)
	}
	if n := count("app:checked (least_conn)", sick.url, "down (health check)", "failing: GET "+sick.url+"/healthz: status 503"); n != 2 {
		t.Errorf("%d rows of the sick upstream down by health check, want 2", n)
	}
	if n := count("app:passive (round_robin)", a.url, " up ", " off "); n != 2 {
		t.Errorf("%d rows of a up in app:passive, want 2", n)
	}
	if n := count("app:passive (round_robin)", dead.url, "down (failures, "); n != 2 {
		t.Errorf("%d rows of the dead upstream down after failures, want 2 (each worker got requests for it)", n)
	}

	// --json is the API's answer.
	out, _, code = ctlRunE2E(t, m.sock, "--json", "upstreams")
	var res control.UpstreamsResponse
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("ctl --json upstreams: exit %d\n%s", code, out)
	}
	if len(res.Workers) != 2 || !res.Workers[0].Answered || !res.Workers[1].Answered {
		t.Errorf("workers %+v", res.Workers)
	}
	for _, w := range res.Proxies[1].Upstreams[1].Workers {
		if w.Reason != "failures" || w.Failures < 1 || w.Errors < 1 || w.Requests < 1 {
			t.Errorf("dead upstream in worker %d: %+v", w.Pid, w)
		}
	}
}

// A WebSocket (hand-rolled Upgrade) echoes through the proxy with the
// catalog's filters and the worker's wrappers (access log, metrics) in
// front: they keep the connection hijackable.
func TestProxyWebSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want websocket", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	})}
	done := make(chan struct{})
	go func() { defer close(done); echo.Serve(ln) }()
	t.Cleanup(func() { echo.Close(); <-done })

	m := proxyMaster(t, 1, fmt.Sprintf(`[pipeline:main]
pipeline = catch_errors request_id translogger headers proxy

[filter:catch_errors]
use = egg:paddock#catch_errors

[filter:request_id]
use = egg:paddock#request_id

[filter:translogger]
use = egg:paddock#translogger

[filter:headers]
use = egg:paddock#headers
response_set = X-Served-By: paddock

[app:proxy]
use = egg:paddock#proxy
address = http://%s
`, ln.Addr()))
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: app.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"ping", strings.Repeat("x", 100000)} {
		go io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
	}
	res, err := m.client.Upstreams(t.Context())
	if err != nil || len(res.Proxies) != 1 || res.Proxies[0].Upstreams[0].Workers[0].Active != 1 {
		t.Errorf("an open WebSocket counts as an active connection: %+v %v", res, err)
	}
	c.Close()
	waitFor(t, "the upgraded connection released", 5*time.Second, func() bool {
		res, err := m.client.Upstreams(t.Context())
		return err == nil && res.Proxies[0].Upstreams[0].Workers[0].Active == 0
	})
}

// An upstream answering something that is not HTTP gets 502, and the
// worker lives on.
func TestProxyMalformedUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				http.ReadRequest(bufio.NewReader(c))
				io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n\r\n")
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	m := proxyMaster(t, 1, fmt.Sprintf("[app:main]\nuse = egg:paddock#proxy\naddress = http://%s\n", ln.Addr()))
	before := m.waitReady(t, 1)
	client := &http.Client{Timeout: 5 * time.Second}
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, "http://"+m.addr+"/", strings.NewReader("body"))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s: %d %q, want 502", method, resp.StatusCode, b)
		}
	}
	if after := m.waitReady(t, 1); after[0].Pid != before[0].Pid {
		t.Errorf("the worker was replaced")
	}
}
