package accesslog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineBuffer collects lines (safe for concurrent use).
type lineBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lineBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func fixedNow() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(1500 * time.Microsecond)
		return t
	}
}

// The wrapped handler's response is byte for byte the unwrapped one's.
func TestWrapDoesNotChangeResponses(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-A", "1")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.WriteHeader(http.StatusEarlyHints) // 1xx does not commit
		w.Header().Set("Content-Type", "text/x-test")
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "short and stout")
		w.(http.Flusher).Flush()
		io.Copy(w, strings.NewReader(" (copied)"))
	})
	var logs lineBuffer
	srvPlain := httptest.NewServer(h)
	defer srvPlain.Close()
	srvLogged := httptest.NewServer(New(Options{Out: &logs, Format: mustParse(t, "%(s)s %(B)s %({content-type}o)s")}).Wrap(h))
	defer srvLogged.Close()
	dump := func(url string) string {
		resp, err := http.Get(url + "/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		resp.Header.Del("Date")
		return fmt.Sprintf("%d %v %v %q", resp.StatusCode, resp.Header, resp.TransferEncoding, body)
	}
	plain, logged := dump(srvPlain.URL), dump(srvLogged.URL)
	if plain != logged {
		t.Errorf("responses differ:\nplain  %s\nlogged %s", plain, logged)
	}
	if got := logs.String(); got != "418 24 text/x-test\n" {
		t.Errorf("log %q", got)
	}
}

// Flush reaches the client before the handler returns; the controller's
// deadlines and full duplex reach the server's writer through Unwrap.
func TestWrapStreamingAndController(t *testing.T) {
	release := make(chan struct{})
	errs := make(chan error, 3)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		errs <- rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		errs <- rc.EnableFullDuplex()
		io.WriteString(w, "first\n")
		errs <- rc.Flush()
		<-release
		io.WriteString(w, "second\n")
	})
	var logs lineBuffer
	srv := httptest.NewServer(New(Options{Out: &logs, Format: mustParse(t, "%(s)s %(B)s")}).Wrap(h))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk %q, %v (not flushed?)", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "second\n" {
		t.Errorf("rest %q", rest)
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("ResponseController through the wrapper: %v", err)
		}
	}
	waitLine(t, &logs, "200 13\n")
}

func waitLine(t *testing.T, l *lineBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("log %q, want %q", l.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Hijack works through the wrapper; the line says 101.
func TestWrapHijack(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		brw.Flush()
	})
	var logs lineBuffer
	srv := httptest.NewServer(New(Options{Out: &logs, Format: mustParse(t, "%(s)s")}).Wrap(h))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hijacked" {
		t.Errorf("body %q", body)
	}
	waitLine(t, &logs, "101\n")
}

// readFromRecorder is a ResponseWriter with its own ReadFrom, like
// net/http's (sendfile).
type readFromRecorder struct {
	*httptest.ResponseRecorder
	readFrom int
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.readFrom++
	return io.Copy(r.ResponseRecorder, src)
}

// io.Copy to the wrapped writer reaches the server's ReadFrom; a writer
// without one still gets the bytes (and no endless recursion).
func TestWrapReadFrom(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte("file contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fh, err := os.Open(f)
		if err != nil {
			t.Error(err)
			return
		}
		defer fh.Close()
		if _, err := io.Copy(w, fh); err != nil {
			t.Error(err)
		}
	})
	var logs lineBuffer
	l := New(Options{Out: &logs, Format: mustParse(t, "%(s)s %(B)s")})
	rec := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
	l.Wrap(h).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.readFrom != 1 || rec.Body.String() != "file contents" {
		t.Errorf("ReadFrom called %d times, body %q", rec.readFrom, rec.Body.String())
	}
	plain := httptest.NewRecorder()
	l.Wrap(h).ServeHTTP(plain, httptest.NewRequest(http.MethodGet, "/", nil))
	if plain.Body.String() != "file contents" {
		t.Errorf("body %q", plain.Body.String())
	}
	if got := logs.String(); got != "200 13\n200 13\n" {
		t.Errorf("log %q", got)
	}
}

// A handler that writes nothing is logged 200; one that panics, 500, and
// the panic goes on to net/http.
func TestWrapImplicitStatusAndPanic(t *testing.T) {
	var logs lineBuffer
	l := New(Options{Out: &logs, Format: mustParse(t, "%(s)s %(b)s %(D)s"), Now: fixedNow()})
	l.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	func() {
		defer func() {
			if v := recover(); !errors.Is(v.(error), http.ErrAbortHandler) {
				t.Errorf("recovered %v", v)
			}
		}()
		l.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })).
			ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	}()
	if got := logs.String(); got != "200 - 1500\n500 - 1500\n" {
		t.Errorf("log %q", got)
	}
}

func mustParse(t testing.TB, s string) *Format {
	t.Helper()
	f, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
