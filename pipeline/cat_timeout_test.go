package pipeline

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCatTimeoutOptions(t *testing.T) {
	for _, opts := range []map[string]string{
		{"timeout": "0"},
		{"timeout": "-1"},
		{"timeout": "soon"},
		{"status": "500"},
		{"status": "x"},
	} {
		_, err := timeoutFactory().Filter(catConfig(opts))
		wantConfigError(t, err)
	}
	c := catConfig(map[string]string{"timeout": "1m30s", "status": "504", "message": "upstream too slow"})
	if _, err := timeoutFactory().Filter(c); err != nil {
		t.Fatal(err)
	}
	if u := c.Unused(); len(u) != 0 {
		t.Errorf("unused %v", u)
	}
}

// slowUntilDone waits for the request's context, or a long time.
func slowUntilDone(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

func TestCatTimeout(t *testing.T) {
	tests := []struct {
		name       string
		opts       map[string]string
		next       http.HandlerFunc
		wantStatus int
		wantBody   string
		check      func(t *testing.T, rec *httptest.ResponseRecorder)
	}{
		{name: "fast handler untouched", opts: map[string]string{"timeout": "5"},
			next: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-App", "yes")
				w.WriteHeader(201)
				io.WriteString(w, "made")
			}, wantStatus: 201, wantBody: "made",
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Header().Get("X-App") != "yes" {
					t.Error("header lost")
				}
			}},
		{name: "handler without writes", opts: map[string]string{"timeout": "5"},
			next: func(w http.ResponseWriter, r *http.Request) {}, wantStatus: 200},
		{name: "slow handler gets 503", opts: map[string]string{"timeout": "0.05"},
			next: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-App", "yes")
				slowUntilDone(w, r)
				if !errors.Is(r.Context().Err(), context.DeadlineExceeded) {
					t.Errorf("context error %v, want DeadlineExceeded", r.Context().Err())
				}
				if _, err := w.Write([]byte("late")); !errors.Is(err, http.ErrHandlerTimeout) {
					t.Errorf("late write: %v, want ErrHandlerTimeout", err)
				}
			}, wantStatus: 503, wantBody: "Service Unavailable: the request took too long.\n",
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Header().Get("X-App") != "" {
					t.Error("the slow handler's header reached the timeout answer")
				}
			}},
		{name: "504 with a message", opts: map[string]string{"timeout": "0.05", "status": "504", "message": "upstream too slow"},
			next: slowUntilDone, wantStatus: 504, wantBody: "upstream too slow\n"},
		{name: "handler ignoring its context", opts: map[string]string{"timeout": "0.05"},
			next: func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(300 * time.Millisecond)
				w.Write([]byte("too late"))
			}, wantStatus: 503},
		{name: "upgrade exempt", opts: map[string]string{"timeout": "0.01"},
			next: func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(50 * time.Millisecond)
				if r.Context().Err() != nil {
					t.Error("upgrade request's context cancelled")
				}
				w.WriteHeader(http.StatusSwitchingProtocols)
			}, wantStatus: 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := mustFilter(t, timeoutFactory(), tt.opts)(tt.next)
			req := httptest.NewRequest("GET", "/", nil)
			if tt.name == "upgrade exempt" {
				req.Header.Set("Connection", "keep-alive, Upgrade")
				req.Header.Set("Upgrade", "websocket")
			}
			start := time.Now()
			rec := serve(h, req)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("ServeHTTP took %v", d)
			}
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantBody != "" && rec.Body.String() != tt.wantBody {
				t.Errorf("body %q, want %q", rec.Body.String(), tt.wantBody)
			}
			if tt.check != nil {
				tt.check(t, rec)
			}
		})
	}
}

// The timeout answer goes out at the deadline, not when a handler that
// ignores its context eventually returns.
func TestCatTimeoutReturnsAtDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h := mustFilter(t, timeoutFactory(), map[string]string{"timeout": "0.05"})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	start := time.Now()
	rec := serve(h, httptest.NewRequest("GET", "/", nil))
	if d := time.Since(start); rec.Code != 503 || d > time.Second {
		t.Errorf("status %d after %v", rec.Code, d)
	}
}

func TestCatTimeoutPanics(t *testing.T) {
	h := mustFilter(t, timeoutFactory(), map[string]string{"timeout": "5"})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	}))
	defer func() {
		if v := recover(); v != "boom" {
			t.Errorf("recovered %v, want the handler's panic", v)
		}
	}()
	serve(h, httptest.NewRequest("GET", "/", nil))
	t.Error("no panic")
}

// Through a real server: streaming works, a response that started before
// the deadline is cut, trailers arrive, Hijack works.
func TestCatTimeoutServer(t *testing.T) {
	var aborted atomic.Bool
	h := mustFilter(t, timeoutFactory(), map[string]string{"timeout": "0.3"})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			for i := range 3 {
				io.WriteString(w, strings.Repeat("x", 10)+"\n")
				w.(http.Flusher).Flush()
				_ = i
				time.Sleep(20 * time.Millisecond)
			}
		case "/started":
			io.WriteString(w, "partial\n")
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
			time.Sleep(20 * time.Millisecond)
			if _, err := w.Write([]byte("more")); err == nil {
				t.Error("write after the deadline succeeded")
			}
			aborted.Store(true)
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		case "/hijack":
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
			rw.Flush()
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Timeout: 10 * time.Second}

	resp, err := client.Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if first != "xxxxxxxxxx\n" {
		t.Errorf("stream: %q", first)
	}

	resp, err = client.Get(srv.URL + "/started")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "partial\n" || err == nil {
		t.Errorf("started response: %d %q err=%v; want the partial body and a read error", resp.StatusCode, body, err)
	}

	resp, err = client.Get(srv.URL + "/trailer")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("trailer: body %q trailer %v", body, resp.Trailer)
	}

	resp, err = client.Get(srv.URL + "/hijack")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hi" {
		t.Errorf("hijack: %q", body)
	}
	waitUntil(t, aborted.Load)
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
	}
}

// The handler sets headers while the deadline passes: no data race (run
// with -race), and the timeout answer is whole.
func TestCatTimeoutHeaderRace(t *testing.T) {
	h := mustFilter(t, timeoutFactory(), map[string]string{"timeout": "0.02"})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for r.Context().Err() == nil {
			w.Header().Set("X-Busy", "1")
			w.Header().Del("X-Busy")
		}
		w.Header().Set("X-Late", "1")
	}))
	for range 5 {
		rec := serve(h, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 503 || rec.Header().Get("X-Busy") != "" {
			t.Fatalf("%d %v", rec.Code, rec.Header())
		}
	}
}

// blockingWriter's writes block until a write deadline is set, like a
// write to a client that reads nothing.
type blockingWriter struct {
	h        http.Header
	deadline chan struct{}
	once     sync.Once
}

func (b *blockingWriter) Header() http.Header { return b.h }
func (b *blockingWriter) WriteHeader(int)     {}
func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.deadline
	return 0, errors.New("i/o timeout")
}
func (b *blockingWriter) SetWriteDeadline(time.Time) error {
	b.once.Do(func() { close(b.deadline) })
	return nil
}

// A handler stuck writing to a slow client is interrupted at the
// deadline and the response aborted.
func TestCatTimeoutSlowClient(t *testing.T) {
	h := mustFilter(t, timeoutFactory(), map[string]string{"timeout": "0.05"})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("stuck"))
	}))
	w := &blockingWriter{h: http.Header{}, deadline: make(chan struct{})}
	start := time.Now()
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	}()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}
