package pipeline

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// failingBody gives some bytes, then err.
type failingBody struct {
	sent bool
	err  error
}

func (b *failingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "partial body "), nil
	}
	return 0, b.err
}

func (b *failingBody) Close() error { return nil }

// A request whose body fails on the client's side is the client's fault:
// 408/413/400 with Connection: close, never a 502/504, and the upstream
// keeps a clean record (and is not retried).
func TestCatProxyClientBodyFails(t *testing.T) {
	up := echoUpstream(t, "a")
	tests := []struct {
		name   string
		body   func(w http.ResponseWriter) io.ReadCloser
		status int
	}{
		{"stalled past client_body_timeout", func(http.ResponseWriter) io.ReadCloser { return &failingBody{err: timeoutErr{}} }, http.StatusRequestTimeout},
		{"over sizelimit", func(w http.ResponseWriter) io.ReadCloser {
			return http.MaxBytesReader(w, io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), 10)
		}, http.StatusRequestEntityTooLarge},
		{"cut off", func(http.ResponseWriter) io.ReadCloser { return &failingBody{err: io.ErrUnexpectedEOF} }, http.StatusBadRequest},
		{"connection reset", func(http.ResponseWriter) io.ReadCloser {
			return &failingBody{err: errors.New("connection reset by peer")}
		}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newProxy(t, map[string]string{"upstreams": up.URL + " " + deadURL(t), "balance": "round_robin"})
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/upload", nil)
			req.Body = tt.body(rec)
			req.ContentLength = -1
			p.ServeHTTP(rec, req)
			if rec.Code != tt.status || rec.Header().Get("Connection") != "close" {
				t.Fatalf("status %d Connection %q body %q, want %d with Connection: close", rec.Code, rec.Header().Get("Connection"), rec.Body.String(), tt.status)
			}
			if st := upstreamStatus(p, up.URL); st.Failures != 0 || !st.Healthy {
				t.Errorf("upstream after a client-side body failure: %+v, want no failure counted", st)
			}
		})
	}
}
