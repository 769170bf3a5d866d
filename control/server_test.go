package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func jsonEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("answer:\n%s\nwant:\n%s", got, want)
	}
}

func TestEndpoints(t *testing.T) {
	f := newFake()
	c, _ := serve(t, ServerOptions{Controller: f, Version: "1.4.0"})
	tests := []struct {
		name, method, path, body string
		status                   int
		ctype                    string
		want                     string // JSON, or the exact text for non-JSON
		call                     string
	}{
		{"status", "GET", "/v1/status", "", 200, "application/json",
			`{"pid":4120,"version":"1.4.0","state":"running","uptime_s":3605.5,"generation":7,
			  "config":{"path":"/etc/paddock/paddock.ini","sha256":"ab12"},
			  "workers":{"target":4,"ready":4,"booting":0,"draining":0},
			  "listeners":[{"bind":":80","network":"tcp","addr":"0.0.0.0:80","tls":false}],
			  "last_reload":{"ok":true,"at":"2026-11-24T01:40:00Z"}}`, "Status"},
		{"workers", "GET", "/v1/workers", "", 200, "application/json",
			`{"workers":[{"id":1,"pid":4121,"generation":7,"state":"ready","started_at":"2026-11-24T01:40:00Z",
			  "requests":1820,"in_flight":2,"rss_bytes":31457280,"last_heartbeat_s":0.5}]}`, "Workers"},
		{"add default", "POST", "/v1/workers/add", "", 200, "application/json", `{"previous":4,"target":5}`, "AddWorkers"},
		{"add 2", "POST", "/v1/workers/add", `{"count":2}`, 200, "application/json", `{"previous":4,"target":6}`, "AddWorkers"},
		{"add empty object", "POST", "/v1/workers/add", `{}`, 200, "application/json", `{"previous":4,"target":5}`, "AddWorkers"},
		{"add max", "POST", "/v1/workers/add", `{"count":1024}`, 200, "application/json", `{"previous":4,"target":1028}`, "AddWorkers"},
		{"remove", "POST", "/v1/workers/remove", `{"count":1}`, 200, "application/json", `{"previous":4,"target":3}`, "RemoveWorkers"},
		{"target", "PUT", "/v1/workers/target", `{"count":8}`, 200, "application/json", `{"previous":4,"target":8}`, "SetTarget"},
		{"kill", "DELETE", "/v1/workers/4121", "", 200, "application/json", `{"pid":4121,"signal":"TERM"}`, "KillWorker"},
		{"kill force", "DELETE", "/v1/workers/4121?force=1", "", 200, "application/json", `{"pid":4121,"signal":"KILL"}`, "KillWorker"},
		{"reload", "POST", "/v1/reload", "", 200, "application/json",
			`{"ok":true,"generation":8,"changed":["pipeline:main"],"duration_s":0.25}`, "Reload"},
		{"check running", "POST", "/v1/config/check", "", 200, "application/json",
			`{"ok":true,"path":"/etc/paddock/paddock.ini","warnings":[]}`, "CheckConfig"},
		{"check path", "POST", "/v1/config/check", `{"path":"/srv/new.ini"}`, 200, "application/json",
			`{"ok":true,"path":"/srv/new.ini","warnings":[]}`, "CheckConfig"},
		{"upgrade", "POST", "/v1/upgrade", `{}`, 200, "application/json",
			`{"ok":true,"old_pid":4120,"new_pid":5210,"old_version":"1.4.0","new_version":"1.5.0"}`, "Upgrade"},
		{"config", "GET", "/v1/config", "", 200, "application/json",
			`{"path":"/etc/paddock/paddock.ini","settings":{"workers":{"value":"4","source":"flag","where":"--workers"}}}`, "Config"},
		{"config ini", "GET", "/v1/config?format=ini", "", 200, "text/plain; charset=utf-8", "[server:main]\nworkers = 4\n", "ConfigFile"},
		{"pipeline", "GET", "/v1/pipeline", "", 200, "application/json", `{"entry":"app:main"}`, "Pipeline"},
		{"pipeline text", "GET", "/v1/pipeline?format=text", "", 200, "text/plain; charset=utf-8", "app:main\n", "Pipeline"},
		{"pipeline dot", "GET", "/v1/pipeline?format=dot", "", 200, "text/vnd.graphviz; charset=utf-8", "digraph {}\n", "Pipeline"},
		{"logs reopen", "POST", "/v1/logs/reopen", "", 200, "application/json", `{"ok":true}`, "ReopenLogs"},
		{"listeners", "GET", "/v1/listeners", "", 200, "application/json",
			`{"listeners":[{"bind":"unix:/run/app.sock","network":"unix","addr":"/run/app.sock","tls":false}]}`, "Listeners"},
		{"upstreams", "GET", "/v1/upstreams", "", 200, "application/json",
			`{"proxies":[{"section":"app:backend","balance":"least_conn","upstreams":[{"url":"http://10.0.0.11:8774","workers":[
			  {"pid":4121,"worker_id":1,"generation":7,"healthy":false,"state":"down","reason":"failures","failures":3,
			   "down_for_s":7.5,"active":0,"check":"off","requests":90,"errors":3}]}]}],
			  "workers":[{"id":1,"pid":4121,"generation":7,"answered":true}]}`, "Upstreams"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := request(t, c, tc.method, tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != tc.ctype {
				t.Errorf("Content-Type %q, want %q", ct, tc.ctype)
			}
			if tc.ctype == "application/json" {
				jsonEqual(t, body, tc.want)
			} else if body != tc.want {
				t.Errorf("body %q, want %q", body, tc.want)
			}
			if got := f.lastCall(); got != tc.call {
				t.Errorf("Controller call %q, want %q", got, tc.call)
			}
			if got := resp.Header.Get("Server"); got != "paddock/1.4.0" {
				t.Errorf("Server header %q", got)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	f := newFake()
	c, _ := serve(t, ServerOptions{Controller: f})
	big := `{"count":1,"pad":"` + strings.Repeat("x", 2<<20) + `"}`
	tests := []struct {
		name, method, path, body string
		status                   int
		code, allow, msg         string
	}{
		{"unknown path", "GET", "/v1/nope", "", 404, CodeNotFound, "", "no endpoint /v1/nope"},
		{"root", "GET", "/", "", 404, CodeNotFound, "", ""},
		{"trailing slash", "GET", "/v1/status/", "", 404, CodeNotFound, "", ""},
		{"unclean path", "GET", "/v1//status", "", 404, CodeNotFound, "", ""},
		{"wrong method status", "POST", "/v1/status", "", 405, CodeMethodNotAllowed, "GET, HEAD", ""},
		{"wrong method add", "GET", "/v1/workers/add", "", 405, CodeMethodNotAllowed, "DELETE, POST", ""}, // {pid} matches too
		{"wrong method pid", "GET", "/v1/workers/123", "", 405, CodeMethodNotAllowed, "DELETE", ""},
		{"wrong method target", "POST", "/v1/workers/target", `{"count":1}`, 405, CodeMethodNotAllowed, "DELETE, PUT", ""},
		{"malformed JSON", "POST", "/v1/workers/add", `{"count":`, 400, CodeBadRequest, "", "malformed JSON"},
		{"not an object", "POST", "/v1/workers/add", `[1]`, 400, CodeBadRequest, "", ""},
		{"trailing data", "POST", "/v1/workers/add", `{"count":1} {}`, 400, CodeBadRequest, "", "after the JSON value"},
		{"string count", "POST", "/v1/workers/add", `{"count":"2"}`, 400, CodeBadRequest, "", ""},
		{"float count", "POST", "/v1/workers/add", `{"count":1.5}`, 400, CodeBadRequest, "", ""},
		{"zero count", "POST", "/v1/workers/add", `{"count":0}`, 400, CodeBadRequest, "", "between 1 and 1024"},
		{"negative count", "POST", "/v1/workers/remove", `{"count":-3}`, 400, CodeBadRequest, "", "between 1 and 1024"},
		{"huge count", "POST", "/v1/workers/add", `{"count":1025}`, 400, CodeBadRequest, "", "between 1 and 1024"},
		{"overflow count", "POST", "/v1/workers/add", `{"count":99999999999999999999}`, 400, CodeBadRequest, "", ""},
		{"unknown field", "POST", "/v1/workers/add", `{"count":1,"cuont":2}`, 400, CodeBadRequest, "", "unknown field"},
		{"target missing count", "PUT", "/v1/workers/target", ``, 400, CodeBadRequest, "", `missing "count"`},
		{"2 MB body", "POST", "/v1/workers/add", big, 413, CodeBodyTooLarge, "", ""},
		{"bad pid", "DELETE", "/v1/workers/abc", "", 400, CodeBadRequest, "", "positive integer"},
		{"zero pid", "DELETE", "/v1/workers/0", "", 400, CodeBadRequest, "", ""},
		{"bad force", "DELETE", "/v1/workers/4121?force=maybe", "", 400, CodeBadRequest, "", ""},
		{"no such worker", "DELETE", "/v1/workers/999", "", 404, CodeNoSuchWorker, "", "worker pid 999: no such worker"},
		{"reload with body", "POST", "/v1/reload", `{"x":1}`, 400, CodeBadRequest, "", "unknown field"},
		{"check relative", "POST", "/v1/config/check", `{"path":"site.ini"}`, 400, CodeBadRequest, "", "absolute"},
		{"stop bad mode", "POST", "/v1/stop", `{"mode":"now"}`, 400, CodeBadRequest, "", ""},
		{"stop negative grace", "POST", "/v1/stop", `{"grace_s":-1}`, 400, CodeBadRequest, "", ""},
		{"stop immediate grace", "POST", "/v1/stop", `{"mode":"immediate","grace_s":3}`, 400, CodeBadRequest, "", ""},
		{"config bad format", "GET", "/v1/config?format=yaml", "", 400, CodeBadRequest, "", ""},
		{"pipeline bad format", "GET", "/v1/pipeline?format=svg", "", 400, CodeBadRequest, "", ""},
		{"wrong method upstreams", "POST", "/v1/upstreams", "", 405, CodeMethodNotAllowed, "GET, HEAD", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := request(t, c, tc.method, tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var eb ErrorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil {
				t.Fatalf("error body is not JSON: %v: %q", err, body)
			}
			if eb.Code != tc.code || eb.Error == "" {
				t.Errorf("body %s, want code %q", body, tc.code)
			}
			if !strings.Contains(eb.Error, tc.msg) {
				t.Errorf("error %q does not contain %q", eb.Error, tc.msg)
			}
			if got := resp.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
	select {
	case sc := <-f.stopped:
		t.Errorf("a bad stop request stopped the master: %+v", sc)
	default:
	}
}

func TestControllerErrors(t *testing.T) {
	cfgErr := &ConfigError{Problems: []ConfigProblem{{File: "/etc/p.ini", Line: 12, Section: "filter:gz", Message: "unknown filter 'gzipp'"}}}
	tests := []struct {
		name    string
		err     error
		block   bool
		status  int
		code    string
		details string
	}{
		{"busy", fmt.Errorf("reload: %w", ErrBusy), false, 409, CodeBusy, ""},
		{"config invalid", cfgErr, false, 422, CodeConfigInvalid,
			`[{"file":"/etc/p.ini","line":12,"section":"filter:gz","message":"unknown filter 'gzipp'"}]`},
		{"not implemented", ErrNotImplemented, false, 501, CodeNotImplemented, ""},
		{"bad request", fmt.Errorf("worker: target: %w", ErrBadRequest), false, 400, CodeBadRequest, ""},
		{"internal", errors.New("disk on fire"), false, 500, CodeInternal, ""},
		{"timeout", nil, true, 504, CodeTimeout, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.err, f.block = tc.err, tc.block
			c, _ := serve(t, ServerOptions{Controller: f, OpTimeout: 100 * time.Millisecond, RequestTimeout: 100 * time.Millisecond})
			resp, body := request(t, c, "POST", "/v1/reload", "")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var eb struct {
				Error   string          `json:"error"`
				Code    string          `json:"code"`
				Details json.RawMessage `json:"details"`
			}
			if err := json.Unmarshal([]byte(body), &eb); err != nil {
				t.Fatal(err)
			}
			if eb.Code != tc.code || eb.Error == "" {
				t.Errorf("body %s, want code %q", body, tc.code)
			}
			if tc.details != "" {
				jsonEqual(t, string(eb.Details), tc.details)
			} else if eb.Details != nil {
				t.Errorf("unexpected details %s", eb.Details)
			}
		})
	}
}

func TestPanicIsA500(t *testing.T) {
	f := newFake()
	f.panicMsg = "boom"
	c, _ := serve(t, ServerOptions{Controller: f})
	resp, body := request(t, c, "GET", "/v1/status", "")
	if resp.StatusCode != 500 || !strings.Contains(body, `"code":"internal"`) {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	f.mu.Lock()
	f.panicMsg = ""
	f.mu.Unlock()
	if _, err := c.Status(t.Context()); err != nil {
		t.Fatalf("after a panic: %v", err)
	}
}

func TestPeerForbidden(t *testing.T) {
	f := newFake()
	var logs syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})
	c, _ := serve(t, ServerOptions{Controller: f, AllowedUIDs: []uint32{4242}, Logger: log})
	for _, path := range []string{"/v1/status", "/v1/nope"} {
		resp, body := request(t, c, "GET", path, "")
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: status %d: %s", path, resp.StatusCode, body)
		}
		var eb ErrorBody
		if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Code != CodeForbidden {
			t.Errorf("%s: body %s", path, body)
		}
	}
	if got := f.lastCall(); got != "" {
		t.Errorf("a refused peer reached the Controller: %s", got)
	}
	out := logs.String()
	for _, want := range []string{"[WARN]  control: refused", fmt.Sprintf("peer_uid=%d", os.Getuid()), fmt.Sprintf("peer_pid=%d", os.Getpid())} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the log:\n%s", want, out)
		}
	}
	// The default allows this process's uid.
	c2, _ := serve(t, ServerOptions{Controller: f})
	if _, err := c2.Status(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestStopAnswersFirst(t *testing.T) {
	tests := []struct {
		body string
		want string
		call stopCall
	}{
		{"", `{"state":"stopping","mode":"graceful"}`, stopCall{true, 0}},
		{`{"mode":"graceful","grace_s":2.5}`, `{"state":"stopping","mode":"graceful","grace_s":2.5}`, stopCall{true, 2500 * time.Millisecond}},
		{`{"mode":"immediate"}`, `{"state":"stopping","mode":"immediate"}`, stopCall{false, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			f := newFake()
			c, s := serve(t, ServerOptions{Controller: f})
			resp, body := request(t, c, "POST", "/v1/stop", tc.body)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			jsonEqual(t, body, tc.want)
			select {
			case got := <-f.stopped:
				if got != tc.call {
					t.Errorf("Stop(%+v), want %+v", got, tc.call)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Controller.Stop was not called")
			}
			s.WaitStops()
		})
	}
}

// The client decodes GET /v1/upstreams into the types the master fills.
func TestClientUpstreams(t *testing.T) {
	f := newFake()
	c, _ := serve(t, ServerOptions{Controller: f})
	res, err := c.Upstreams(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := f.Upstreams(t.Context())
	if !reflect.DeepEqual(res, want) {
		t.Errorf("got %+v\nwant %+v", res, want)
	}
	f.err = ErrBusy
	if _, err := c.Upstreams(t.Context()); err == nil {
		t.Error("an error answer decoded as a success")
	}
}
