package pipeline

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestCatCatchErrors(t *testing.T) {
	tests := []struct {
		name       string
		next       http.HandlerFunc
		wantStatus int
		wantBody   string
		wantPanic  any
		wantLog    bool
	}{
		{name: "no panic", next: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201); w.Write([]byte("made")) },
			wantStatus: 201, wantBody: "made"},
		{name: "panic before writing", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "99")
			panic("kaboom")
		}, wantStatus: 500, wantBody: catchErrorsBody, wantLog: true},
		{name: "panic with error", next: func(w http.ResponseWriter, r *http.Request) { panic(errors.New("bad")) },
			wantStatus: 500, wantBody: catchErrorsBody, wantLog: true},
		{name: "panic after writing aborts", next: func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("partial"))
			panic("late")
		}, wantPanic: http.ErrAbortHandler, wantLog: true},
		{name: "abort handler propagates silently", next: func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) },
			wantPanic: http.ErrAbortHandler},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logBuf bytes.Buffer
			c := catConfig(nil)
			c.Logger = hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Trace})
			mw, err := catchErrorsFactory().Filter(c)
			if err != nil {
				t.Fatal(err)
			}
			h := mw(tt.next)
			req := WithRequestID(httptest.NewRequest("PUT", "/servers/1", nil), "req-test")
			rec := httptest.NewRecorder()
			var got any
			func() {
				defer func() { got = recover() }()
				h.ServeHTTP(rec, req)
			}()
			if got != tt.wantPanic {
				t.Fatalf("panic %v, want %v", got, tt.wantPanic)
			}
			if tt.wantPanic == nil {
				if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
					t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tt.wantStatus, tt.wantBody)
				}
				if tt.wantStatus == 500 {
					if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
						t.Errorf("500 Content-Type %q", ct)
					}
					if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(len(catchErrorsBody)) {
						t.Errorf("500 Content-Length %q", cl)
					}
				}
			}
			logged := logBuf.String()
			if tt.wantLog {
				for _, want := range []string{"req-test", "PUT", "/servers/1", "stack="} {
					if !strings.Contains(logged, want) {
						t.Errorf("log lacks %q: %s", want, logged)
					}
				}
			} else if logged != "" {
				t.Errorf("unexpected log: %s", logged)
			}
		})
	}
}

func TestCatCatchErrorsWriterFeatures(t *testing.T) {
	mw := mustFilter(t, catchErrorsFactory(), nil)
	var isFlusher, isHijacker bool
	var unwrapped http.ResponseWriter
	rec := httptest.NewRecorder()
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, isFlusher = w.(http.Flusher)
		_, isHijacker = w.(http.Hijacker)
		if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
			unwrapped = u.Unwrap()
		}
		w.Write([]byte("x"))
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush through ResponseController: %v", err)
		}
	}))
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if !isFlusher || !isHijacker || unwrapped != rec {
		t.Errorf("wrapper hides features: flusher=%v hijacker=%v unwrap=%v", isFlusher, isHijacker, unwrapped == rec)
	}
	if !rec.Flushed {
		t.Error("Flush did not reach the underlying writer")
	}
	t.Run("no panic allocates nothing", func(t *testing.T) {
		assertNoAllocs(t, mw(okHandler), httptest.NewRequest("GET", "/", nil))
	})
}
