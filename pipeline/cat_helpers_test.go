package pipeline

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Test helpers shared by the catalog tests.

func catConfig(opts map[string]string) *Config {
	local := map[string]string{}
	for k, v := range opts {
		local[k] = v
	}
	c := NewConfig(local)
	c.Section = "test"
	return c
}

func mustFilter(t testing.TB, f Factory, opts map[string]string) Middleware {
	t.Helper()
	if f.Kind != KindFilter {
		t.Fatalf("factory kind = %v, want filter", f.Kind)
	}
	c := catConfig(opts)
	mw, err := f.Filter(c)
	if err != nil {
		t.Fatalf("build filter %v: %v", opts, err)
	}
	t.Cleanup(func() { closeAll(c) })
	return mw
}

func mustApp(t testing.TB, f Factory, c *Config) http.Handler {
	t.Helper()
	if f.Kind != KindApp {
		t.Fatalf("factory kind = %v, want app", f.Kind)
	}
	h, err := f.App(c)
	if err != nil {
		t.Fatalf("build app %v: %v", c.Local, err)
	}
	t.Cleanup(func() { closeAll(c) })
	c.Start() // as a worker installing the pipeline does
	return h
}

func closeAll(c *Config) {
	if c.closers == nil {
		return
	}
	for i := len(*c.closers) - 1; i >= 0; i-- {
		(*c.closers)[i].Close()
	}
	*c.closers = nil
}

// wantConfigError asserts err is a located *Error.
func wantConfigError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("expected a configuration error, got nil")
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *pipeline.Error", err, err)
	}
}

// catConfigAt is catConfig with positions: the section at site.ini:1 and
// each option on a line of its own after it, so errors carry file:line.
func catConfigAt(opts map[string]string) *Config {
	c := catConfig(opts)
	c.Pos = Pos{File: "site.ini", Line: 1}
	c.optPos = map[string]Pos{}
	line := 2
	for k := range opts {
		c.optPos[k] = Pos{File: "site.ini", Line: line}
		line++
	}
	return c
}

// wantErrorAt checks err is a configuration error starting with prefix
// (its position) and containing msg.
func wantErrorAt(t *testing.T, err error, prefix, msg string) {
	t.Helper()
	wantConfigError(t, err)
	if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q, want it to start with %q and contain %q", err, prefix, msg)
	}
}

// serve runs h on req and returns the recorded response.
func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// okHandler answers 200 "ok" without allocating.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Write(okBody)
})

var okBody = []byte("ok")

// nopWriter is a ResponseWriter for allocation tests and benchmarks: it
// reuses one header map and discards the body.
type nopWriter struct {
	h      http.Header
	status int
}

func newNopWriter() *nopWriter { return &nopWriter{h: http.Header{}} }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) WriteHeader(code int)        { w.status = code }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// allocsPerRequest measures allocations of one ServeHTTP call.
func allocsPerRequest(h http.Handler, w http.ResponseWriter, r *http.Request) float64 {
	return testing.AllocsPerRun(200, func() { h.ServeHTTP(w, r) })
}

// assertNoAllocs fails if h allocates on r (skipped under -race, where
// sync.Pool deliberately drops items).
func assertNoAllocs(t *testing.T, h http.Handler, r *http.Request) {
	t.Helper()
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	if n := allocsPerRequest(h, newNopWriter(), r); n != 0 {
		t.Errorf("pass-through allocates %.1f times per request, want 0", n)
	}
}

// fakeLoader resolves app names from a map.
type fakeLoader map[string]http.Handler

func (l fakeLoader) LoadApp(name string) (http.Handler, error) {
	if h, ok := l[name]; ok {
		return h, nil
	}
	return nil, errors.New("no app " + name)
}
