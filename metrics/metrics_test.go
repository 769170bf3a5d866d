package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// serve sends n requests of method to path through an instrumented
// handler that answers code, routed to route.
func serve(t *testing.T, m *HTTP, method string, code, n int, route string) {
	t.Helper()
	h := m.Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code != 200 {
			w.WriteHeader(code)
		}
		_, _ = w.Write([]byte("x"))
	}), func(r *http.Request) (*http.Request, *string) { rt := route; return r, &rt })
	for range n {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, "/", nil))
	}
}

func lines(b []byte) map[string]bool {
	out := map[string]bool{}
	for l := range strings.Lines(string(b)) {
		out[strings.TrimSpace(l)] = true
	}
	return out
}

// The master's exposition sums the live workers' snapshots and the
// retired workers' last ones; per-worker series are only there for live
// workers.
func TestExpositionSumsWorkers(t *testing.T) {
	w1, w2, gone := NewHTTP(1), NewHTTP(2), NewHTTP(3)
	serve(t, w1, "GET", 200, 3, "/api")
	serve(t, w2, "GET", 200, 4, "/api")
	serve(t, w2, "BREW", 418, 1, "")
	serve(t, gone, "GET", 200, 5, "/api")
	serve(t, gone, "POST", 500, 2, "/api")

	m := NewMaster("v9")
	m.SetWorkers(map[string]int{"ready": 2, "draining": 1})
	m.Reloaded(true, 4)
	m.Reloaded(false, 4)
	snap, err := gone.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Retire(snap); err != nil {
		t.Fatal(err)
	}
	s1, err := w1.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := w2.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Exposition([][]byte{s1, s2})
	if err != nil {
		t.Fatal(err)
	}
	got := lines(out)
	for _, want := range []string{
		`paddock_http_requests_total{code="200",method="GET",route="/api"} 12`,
		`paddock_http_requests_total{code="500",method="POST",route="/api"} 2`,
		`paddock_http_requests_total{code="418",method="other",route="unmatched"} 1`,
		`paddock_http_request_duration_seconds_count{method="GET",route="/api"} 12`,
		`paddock_http_request_duration_seconds_bucket{method="GET",route="/api",le="+Inf"} 12`,
		`paddock_http_requests_in_flight 0`,
		`paddock_worker_requests_total{worker="1"} 3`,
		`paddock_worker_requests_total{worker="2"} 5`,
		`paddock_workers{state="ready"} 2`,
		`paddock_workers{state="draining"} 1`,
		`paddock_workers{state="booting"} 0`,
		`paddock_reloads_total{result="success"} 1`,
		`paddock_reloads_total{result="failure"} 1`,
		`paddock_upgrades_total{result="success"} 0`,
		`paddock_config_generation 4`,
	} {
		if !got[want] {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if strings.Contains(string(out), `worker="3"`) {
		t.Errorf("a retired worker's own series is exported:\n%s", out)
	}
	for _, family := range []string{"go_goroutines", "process_resident_memory_bytes", "paddock_build_info"} {
		if !strings.Contains(string(out), "\n"+family) && !strings.HasPrefix(string(out), family) {
			t.Errorf("no %s in the exposition", family)
		}
	}
}

// A snapshot that does not decode fails the scrape rather than
// exporting partial sums.
func TestExpositionRefusesGarbage(t *testing.T) {
	m := NewMaster("v")
	w := NewHTTP(1)
	serve(t, w, "GET", 200, 1, "/")
	snap, _ := w.Snapshot()
	if _, err := m.Exposition([][]byte{snap, []byte("garbage")}); err == nil {
		t.Error("a garbage snapshot was accepted")
	}
}

func TestMethod(t *testing.T) {
	for in, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "get": "other", "BREW": "other", "": "other"} {
		if got := Method(in); got != want {
			t.Errorf("Method(%q) = %q, want %q", in, got, want)
		}
	}
}

// A handler that writes nothing answers 200; one that flushes keeps its
// status; informational headers are not the status.
func TestInstrumentStatus(t *testing.T) {
	m := NewHTTP(0)
	h := m.Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/early":
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusCreated)
		case "/flush":
			w.(http.Flusher).Flush()
		}
	}), nil)
	for _, p := range []string{"/", "/early", "/flush"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	out, err := TextOf(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	got := lines(out)
	for _, want := range []string{
		`paddock_http_requests_total{code="200",method="GET",route="/"} 2`,
		`paddock_http_requests_total{code="201",method="GET",route="/"} 1`,
	} {
		if !got[want] {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
}
