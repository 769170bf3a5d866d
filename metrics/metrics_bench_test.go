package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkInstrument is the cost metrics add to every request, against
// the same handler bare.
func BenchmarkInstrument(b *testing.B) {
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("hi")) })
	route := func(r *http.Request) (*http.Request, *string) { s := "/api"; return r, &s }
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", hello},
		{"instrumented", NewHTTP(1).Instrument(hello, route)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/api/x", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				bc.h.ServeHTTP(w, req)
			}
		})
	}
}
