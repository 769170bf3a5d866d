package control

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzCtrl is the fake Controller of FuzzControlAPI: it records what the
// handlers passed on, and its Stop returns at once (the fake's blocks
// after four calls).
type fuzzCtrl struct {
	*fake
	mu     sync.Mutex
	counts []int
	grace  []time.Duration
}

func (c *fuzzCtrl) note(n int) {
	c.mu.Lock()
	c.counts = append(c.counts, n)
	c.mu.Unlock()
}

func (c *fuzzCtrl) AddWorkers(ctx context.Context, n int) (int, int, error) {
	c.note(n)
	return c.fake.AddWorkers(ctx, n)
}

func (c *fuzzCtrl) RemoveWorkers(ctx context.Context, n int) (int, int, error) {
	c.note(n)
	return c.fake.RemoveWorkers(ctx, n)
}

func (c *fuzzCtrl) SetTarget(ctx context.Context, n int) (int, int, error) {
	c.note(n)
	return c.fake.SetTarget(ctx, n)
}

func (c *fuzzCtrl) Stop(_ context.Context, _ bool, grace time.Duration) error {
	c.mu.Lock()
	c.grace = append(c.grace, grace)
	c.mu.Unlock()
	return nil
}

// fuzzEndpoints are the routes FuzzControlAPI drives: every one that
// reads a JSON body, then the others (whose query strings it fuzzes).
var fuzzEndpoints = []struct{ method, path string }{
	{"POST", "/v1/workers/add"},
	{"POST", "/v1/workers/remove"},
	{"PUT", "/v1/workers/target"},
	{"POST", "/v1/reload"},
	{"POST", "/v1/config/check"},
	{"POST", "/v1/upgrade"},
	{"POST", "/v1/stop"},
	{"POST", "/v1/logs/reopen"},
	{"DELETE", "/v1/workers/"}, // + the fuzzed pid
	{"GET", "/v1/config"},
	{"GET", "/v1/pipeline"},
	{"GET", "/v1/status"},
	{"PATCH", "/v1/workers/add"}, // 405
}

// FuzzControlAPI posts any body (and query string) to the control API's
// real handlers, through Server.ServeHTTP with an allowed peer: no panic
// (a recovered one would be a 500), every answer a 2xx or 4xx with a JSON
// body (a 4xx one an ErrorBody with a code), and what reaches the
// Controller within the API's bounds.
func FuzzControlAPI(f *testing.F) {
	seeds := []struct {
		ep    uint8
		query string
		body  string
	}{
		{0, "", `{"count":3}`}, {0, "", ``}, {0, "", `{"count":0}`}, {1, "", `{"count":1e400}`},
		{2, "", `{"count":null}`}, {2, "", `{"count":1024}`}, {2, "", `{"count":"2"}`}, {2, "", `{"count":2}{}`},
		{3, "", `{}`}, {3, "", `{"x":1}`}, {4, "", `{"path":"/etc/p.ini"}`}, {4, "", `{"path":"rel.ini"}`},
		{5, "", `[]`}, {6, "", `{"mode":"immediate","grace_s":1}`}, {6, "", `{"grace_s":3600.5}`},
		{6, "", `{"mode":"graceful","grace_s":-0}`}, {7, "", "\xff\xfe"}, {8, "4121", ``}, {8, "4121?force=maybe", ``},
		{8, "-1", ``}, {9, "format=ini", ``}, {9, "format=xml", ``}, {10, "format=dot", ``}, {11, "", ``}, {12, "", `{}`},
	}
	for _, s := range seeds {
		f.Add(s.ep, s.query, []byte(s.body))
	}
	ctrl := &fuzzCtrl{fake: newFake()}
	srv := NewServer(ServerOptions{Controller: ctrl, AllowedUIDs: []uint32{uint32(os.Getuid())}})
	peer := Peer{UID: uint32(os.Getuid()), PID: int32(os.Getpid()), Known: true}
	f.Fuzz(func(t *testing.T, ep uint8, query string, body []byte) {
		e := fuzzEndpoints[int(ep)%len(fuzzEndpoints)]
		target := e.path
		if strings.HasSuffix(target, "/") {
			pid, q, _ := strings.Cut(query, "?")
			target += url.PathEscape(pid)
			query = q
		}
		u := &url.URL{Path: target, RawQuery: url.PathEscape(query)}
		req := httptest.NewRequest(e.method, "http://localhost/", strings.NewReader(string(body)))
		req.URL, req.RequestURI = u, u.RequestURI()
		req = req.WithContext(context.WithValue(req.Context(), peerKey{}, peer))
		ctrl.mu.Lock()
		ctrl.counts, ctrl.grace = nil, nil
		ctrl.mu.Unlock()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		srv.WaitStops()

		code, out := rec.Code, rec.Body.Bytes()
		if code/100 != 2 && code/100 != 4 {
			t.Fatalf("%s %s %q: status %d, want 2xx or 4xx: %s", e.method, u, body, code, out)
		}
		if ct := rec.Header().Get("Content-Type"); e.path != "/v1/config" && e.path != "/v1/pipeline" && ct != "application/json" {
			t.Fatalf("%s %s %q: Content-Type %q", e.method, u, body, ct)
		}
		if code/100 == 4 {
			var eb ErrorBody
			if err := json.Unmarshal(out, &eb); err != nil || eb.Code == "" || eb.Error == "" {
				t.Fatalf("%s %s %q: %d with body %q (%v), want an ErrorBody", e.method, u, body, code, out, err)
			}
		} else if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && !json.Valid(out) {
			t.Fatalf("%s %s %q: invalid JSON answer %q", e.method, u, body, out)
		}
		ctrl.mu.Lock()
		defer ctrl.mu.Unlock()
		for _, n := range ctrl.counts {
			if n < 1 || n > MaxCount {
				t.Fatalf("%s %s %q: count %d reached the Controller", e.method, u, body, n)
			}
		}
		for _, g := range ctrl.grace {
			if g < 0 || g > MaxGrace*time.Second {
				t.Fatalf("%s %s %q: grace %v reached the Controller", e.method, u, body, g)
			}
		}
	})
}
