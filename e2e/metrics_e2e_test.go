package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"paddock/control"
)

// scrape GETs url and returns the exposition's samples by series
// ("name{labels}" → value).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET %s: %d %q\n%s", url, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sum adds the samples whose series matches re.
func sum(samples map[string]float64, re string) (total float64, n int) {
	r := regexp.MustCompile(re)
	for k, v := range samples {
		if r.MatchString(k) {
			total += v
			n++
		}
	}
	return total, n
}

// Known traffic through 2 workers reads back exactly from /metrics, on
// metrics_bind and through the metrics app of either worker: the master
// sums the workers, keeps a retired worker's counts, and counts reloads.
func TestMetrics(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	config := fmt.Sprintf(`[server:main]
use = egg:paddock#http
bind = %s
workers = 2
metrics_bind = %s
graceful_timeout = 5

[composite:main]
use = egg:paddock#urlmap
/ = hello
/api = hello
/metrics = metrics

[app:hello]
use = egg:paddock#hello

[app:metrics]
use = egg:paddock#metrics
`, addr, maddr)
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	cmd, _, pidfile := startPaddock(t, config, "--ctl-socket", sock)
	m := &ctlMaster{cmd: cmd, sock: sock, addr: addr, config: filepath.Join(filepath.Dir(pidfile), "paste.ini"),
		client: &control.Client{Path: sock, Timeout: 5 * time.Second}}
	t.Cleanup(m.client.CloseIdleConnections)
	m.waitReady(t, 2)

	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	send := func(method, path string, n int) {
		for range n {
			req, _ := http.NewRequest(method, "http://"+addr+path, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
			}
		}
	}
	send("GET", "/", 30)
	send("GET", "/api/x", 20)
	send("POST", "/api/x", 5)

	want := map[string]float64{
		`paddock_http_requests_total{code="200",method="GET",route="/"}`:      30,
		`paddock_http_requests_total{code="200",method="GET",route="/api"}`:   20,
		`paddock_http_requests_total{code="200",method="POST",route="/api"}`:  5,
		`paddock_http_request_duration_seconds_count{method="GET",route="/"}`: 30,
		`paddock_http_requests_in_flight`:                                     0,
		`paddock_workers{state="ready"}`:                                      2,
		`paddock_config_generation`:                                           0,
	}
	got := scrape(t, "http://"+maddr+"/metrics")
	for k, v := range want {
		if got[k] != v {
			t.Errorf("metrics_bind: %s = %v, want %v", k, got[k], v)
		}
	}
	if total, n := sum(got, `^paddock_worker_requests_total\{worker="\d+"\}$`); total != 55 || n < 1 || n > 2 {
		t.Errorf("per-worker requests: %v over %d workers, want 55 over 1 or 2", total, n)
	}
	if _, n := sum(got, `^go_goroutines$|^process_resident_memory_bytes$|^paddock_build_info\{`); n != 3 {
		t.Errorf("Go, process and build collectors: %d of 3 present", n)
	}

	// Through the app: the same sums, plus this scrape in flight.
	app := scrape(t, "http://"+addr+"/metrics")
	if v := app[`paddock_http_requests_total{code="200",method="GET",route="/"}`]; v != 30 {
		t.Errorf("metrics app: GET / = %v, want 30", v)
	}
	if v := app[`paddock_http_requests_in_flight`]; v != 1 {
		t.Errorf("metrics app: in flight %v, want 1 (the scrape itself)", v)
	}

	// A worker that leaves keeps its counts in the sums; a reload is
	// counted.
	if out, errOut, code := ctlRunE2E(t, sock, "workers", "remove", "1"); code != 0 {
		t.Fatalf("ctl workers remove: %d %s%s", code, out, errOut)
	}
	m.waitReady(t, 1)
	if out, errOut, code := ctlRunE2E(t, sock, "reload"); code != 0 {
		t.Fatalf("ctl reload: %d %s%s", code, out, errOut)
	}
	got = scrape(t, "http://"+maddr+"/metrics")
	for k, v := range map[string]float64{
		`paddock_http_requests_total{code="200",method="GET",route="/"}`:        30,
		`paddock_http_requests_total{code="200",method="POST",route="/api"}`:    5,
		`paddock_http_requests_total{code="200",method="GET",route="/metrics"}`: 1,
		`paddock_workers{state="ready"}`:                                        1,
		`paddock_reloads_total{result="success"}`:                               1,
		`paddock_config_generation`:                                             1,
	} {
		if got[k] != v {
			t.Errorf("after a worker left and a reload: %s = %v, want %v", k, got[k], v)
		}
	}
	if _, n := sum(got, `^paddock_worker_requests_total`); n != 1 {
		t.Errorf("per-worker series for %d workers, want the 1 live one", n)
	}
}
