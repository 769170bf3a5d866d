package loadgen

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The load counts 200s as successes and anything else as failures, names
// the kind of client of each failure, and Stop waits for every client.
func TestLoad(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	l := Start(srv.URL)
	deadline := time.Now().Add(5 * time.Second)
	for l.OK() < 50 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	fail.Store(true)
	for l.Failed() < 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	l.Stop()
	ok, failed := l.OK(), l.Failed()
	if ok < 50 || failed < 10 {
		t.Fatalf("%d ok, %d failed; want at least 50 and 10", ok, failed)
	}
	errs := l.Errors()
	if len(errs) != maxErrors || !strings.Contains(errs[0], "status 503") {
		t.Errorf("errors %q, want %d naming the status", errs, maxErrors)
	}
	time.Sleep(20 * time.Millisecond)
	if l.OK() != ok || l.Failed() != failed {
		t.Error("requests went on after Stop")
	}
}
