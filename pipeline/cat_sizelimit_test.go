package pipeline

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// chunked makes a request body of unknown length (as with
// Transfer-Encoding: chunked).
func chunked(req *http.Request) *http.Request {
	req.ContentLength = -1
	req.Body = io.NopCloser(req.Body)
	return req
}

func TestCatSizeLimit(t *testing.T) {
	readAll400 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"bad body"}`))
			return
		}
		w.Write(b)
	})
	readAllSilent := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // ignores the error and writes nothing
	})
	readAllOK := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Write([]byte("done")) // succeeds whatever the body
	})
	tests := []struct {
		name       string
		opts       map[string]string
		next       http.Handler
		body       string
		chunked    bool
		wantStatus int
		wantBody   string
	}{
		{name: "small known length", opts: map[string]string{"max_request_body_size": "10"}, next: readAll400, body: "0123456789", wantStatus: 200, wantBody: "0123456789"},
		{name: "large known length rejected", opts: map[string]string{"max_request_body_size": "10"}, next: readAll400, body: "0123456789A", wantStatus: 413,
			wantBody: "Request is too large. Larger than max_request_body_size (10).\n"},
		{name: "small chunked", opts: map[string]string{"max_request_body_size": "10"}, next: readAll400, body: "0123456789", chunked: true, wantStatus: 200, wantBody: "0123456789"},
		{name: "large chunked, handler answers 400", opts: map[string]string{"max_request_body_size": "10"}, next: readAll400, body: strings.Repeat("x", 100), chunked: true, wantStatus: 413,
			wantBody: "Request is too large. Larger than max_request_body_size (10).\n"},
		{name: "large chunked, handler silent", opts: map[string]string{"max_request_body_size": "10"}, next: readAllSilent, body: strings.Repeat("x", 100), chunked: true, wantStatus: 413},
		{name: "large chunked, handler succeeds anyway", opts: map[string]string{"max_request_body_size": "10"}, next: readAllOK, body: strings.Repeat("x", 100), chunked: true, wantStatus: 200, wantBody: "done"},
		{name: "default limit", next: readAll400, body: strings.Repeat("x", 114689), wantStatus: 413},
		{name: "default limit exact", next: readAll400, body: strings.Repeat("x", 114688), wantStatus: 200},
		{name: "zero limit allows empty", opts: map[string]string{"max_request_body_size": "0"}, next: readAll400, body: "", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := mustFilter(t, sizelimitFactory(), tt.opts)(tt.next)
			req := httptest.NewRequest("POST", "/", strings.NewReader(tt.body))
			if tt.chunked {
				req = chunked(req)
			}
			rec := serve(h, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (%q)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if tt.wantBody != "" && rec.Body.String() != tt.wantBody {
				t.Errorf("body %q, want %q", rec.Body.String(), tt.wantBody)
			}
			if rec.Code == 413 && rec.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Errorf("413 Content-Type %q", rec.Header().Get("Content-Type"))
			}
		})
	}
	t.Run("server closes connection on oversized chunked body", func(t *testing.T) {
		srv := httptest.NewServer(mustFilter(t, sizelimitFactory(), map[string]string{"max_request_body_size": "10"})(readAll400))
		defer srv.Close()
		req, _ := http.NewRequest("POST", srv.URL, io.NopCloser(strings.NewReader(strings.Repeat("y", 1000))))
		req.ContentLength = -1
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("status %d, want 413", resp.StatusCode)
		}
	})
	t.Run("known length allocates nothing", func(t *testing.T) {
		h := mustFilter(t, sizelimitFactory(), nil)(okHandler)
		req := httptest.NewRequest("POST", "/", strings.NewReader("abc"))
		assertNoAllocs(t, h, req)
	})
}

func TestCatSizeLimitConfigErrors(t *testing.T) {
	for _, v := range []string{"-1", "big", "1.5"} {
		_, err := sizelimitFactory().Filter(catConfig(map[string]string{"max_request_body_size": v}))
		wantConfigError(t, err)
	}
}
