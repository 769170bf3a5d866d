package pipeline

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/iotest"
)

// statusApp answers status with a body and a header naming it.
func statusApp(name string, status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", name)
		w.Header().Del("X-Outer-Remove")
		w.WriteHeader(status)
		fmt.Fprintf(w, "%s %d", name, status)
	})
}

func TestCatCascade(t *testing.T) {
	apps := fakeLoader{
		"nf":       statusApp("nf", 404),
		"nf2":      statusApp("nf2", 404),
		"na":       statusApp("na", 405),
		"err":      statusApp("err", 500),
		"ok":       statusApp("ok", 200),
		"created":  statusApp("created", 201),
		"redirect": statusApp("redirect", 302),
		"implicit": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-App", "implicit")
			io.WriteString(w, "implicit body")
		}),
		"silent": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-App", "silent")
		}),
		"hints": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(404)
		}),
	}
	tests := []struct {
		name       string
		opts       map[string]string
		wantStatus int
		wantBody   string
		wantApp    string
	}{
		{"first answers", map[string]string{"app1": "ok", "app2": "nf"}, 200, "ok 200", "ok"},
		{"404 falls through", map[string]string{"app1": "nf", "app2": "ok"}, 200, "ok 200", "ok"},
		{"several 404s", map[string]string{"app1": "nf", "app2": "nf2", "app3": "created"}, 201, "created 201", "created"},
		{"last 404 is the answer", map[string]string{"app1": "nf", "app2": "nf2"}, 404, "nf2 404", "nf2"},
		{"405 not caught by default", map[string]string{"app1": "na", "app2": "ok"}, 405, "na 405", "na"},
		{"catch 404 405", map[string]string{"app1": "na", "app2": "nf", "app3": "ok", "catch": "404 405"}, 200, "ok 200", "ok"},
		{"catch with commas", map[string]string{"app1": "na", "app2": "ok", "catch": "404, 405"}, 200, "ok 200", "ok"},
		{"catch replaces 404", map[string]string{"app1": "nf", "app2": "ok", "catch": "405"}, 404, "nf 404", "nf"},
		{"500 is an answer", map[string]string{"app1": "err", "app2": "ok"}, 500, "err 500", "err"},
		{"redirect is an answer", map[string]string{"app1": "redirect", "app2": "ok"}, 302, "redirect 302", "redirect"},
		{"implicit 200", map[string]string{"app1": "implicit", "app2": "ok"}, 200, "implicit body", "implicit"},
		{"silent 200", map[string]string{"app1": "silent", "app2": "ok"}, 200, "", "silent"},
		{"early hints then 404", map[string]string{"app1": "hints", "app2": "ok"}, 200, "ok 200", "ok"},
		{"keys sort as strings", map[string]string{"app2": "nf", "app10": "ok", "app1": "nf2"}, 200, "ok 200", "ok"},
		{"keys sort as strings (2)", map[string]string{"app2": "ok", "app10": "nf", "app1": "nf2"}, 200, "ok 200", "ok"},
		{"any key starting with app", map[string]string{"application": "ok", "app_b": "nf"}, 200, "ok 200", "ok"},
		{"one app", map[string]string{"app": "nf"}, 404, "nf 404", "nf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := catConfig(tt.opts)
			h, err := cascadeFactory().Composite(c, apps)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			// An outer filter's headers survive a passed-over app, and an
			// app may still change them.
			rec.Header().Set("X-Outer", "kept")
			rec.Header().Set("X-Outer-Remove", "x")
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tt.wantStatus, tt.wantBody)
			}
			if got := rec.Header().Get("X-App"); got != tt.wantApp {
				t.Errorf("X-App %q, want %q (a passed-over app's headers leaked?)", got, tt.wantApp)
			}
			if got := rec.Header().Get("Link"); got != "" {
				t.Errorf("Link %q from a passed-over app", got)
			}
			if rec.Header().Get("X-Outer") != "kept" {
				t.Error("outer header lost")
			}
			if tt.wantApp != "implicit" && tt.wantApp != "silent" && rec.Header().Get("X-Outer-Remove") != "" {
				t.Error("the answering app's header deletion was not applied")
			}
		})
	}
}

// Each app gets its own copy of the request: headers one app changes are
// not seen by the next.
func TestCatCascadeRequestCopies(t *testing.T) {
	apps := fakeLoader{
		"mutate": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Set("X-Injected", "1")
			r.URL.Path = "/changed"
			w.WriteHeader(404)
		}),
		"echo": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %q", r.URL.Path, r.Header.Get("X-Injected"))
		}),
	}
	h, err := cascadeFactory().Composite(catConfig(map[string]string{"app1": "mutate", "app2": "echo"}), apps)
	if err != nil {
		t.Fatal(err)
	}
	if got := serve(h, httptest.NewRequest("GET", "/orig", nil)).Body.String(); got != `/orig ""` {
		t.Errorf("got %s", got)
	}
}

// bodyApp reads n bytes of the body (all when n < 0), then answers
// status with what it read.
func bodyApp(n int, status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var data []byte
		var err error
		if n < 0 {
			data, err = io.ReadAll(r.Body)
		} else {
			data = make([]byte, n)
			var k int
			k, err = io.ReadFull(r.Body, data)
			data = data[:k]
		}
		r.Body.Close()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, err)
			return
		}
		w.WriteHeader(status)
		w.Write(data)
	})
}

func TestCatCascadeBody(t *testing.T) {
	small := strings.Repeat("s", 100)
	large := strings.Repeat("0123456789", 20000) // 200 KB
	tests := []struct {
		name       string
		opts       map[string]string
		apps       []http.Handler
		body       string
		chunked    bool
		wantStatus int
		wantBody   string
		wantFile   bool // the body spilled to a temporary file
	}{
		{"small, read whole twice", nil, []http.Handler{bodyApp(-1, 404), bodyApp(-1, 200)}, small, false, 200, small, false},
		{"large spills to a file", nil, []http.Handler{bodyApp(-1, 404), bodyApp(-1, 200)}, large, false, 200, large, true},
		{"large, chunked", nil, []http.Handler{bodyApp(-1, 404), bodyApp(-1, 200)}, large, true, 200, large, true},
		{"first reads part, second all", nil, []http.Handler{bodyApp(10, 404), bodyApp(-1, 200)}, large, false, 200, large, false},
		{"first reads nothing", nil, []http.Handler{bodyApp(0, 404), bodyApp(-1, 200)}, large, false, 200, large, false},
		{"three apps", nil, []http.Handler{bodyApp(5, 404), bodyApp(70000, 404), bodyApp(-1, 200)}, large, false, 200, large, true},
		{"memory buffer size 0", map[string]string{"body_buffer_size": "0"}, []http.Handler{bodyApp(-1, 404), bodyApp(-1, 200)}, small, false, 200, small, true},
		{"larger memory buffer", map[string]string{"body_buffer_size": "1000000"}, []http.Handler{bodyApp(-1, 404), bodyApp(-1, 200)}, large, false, 200, large, false},
		{"max_body_size by Content-Length", map[string]string{"max_body_size": "1000"}, []http.Handler{bodyApp(-1, 404), bodyApp(-1, 200)}, large, false, 413, "413 Request Entity Too Large\n", false},
		{"max_body_size while reading", map[string]string{"max_body_size": "1000"}, []http.Handler{bodyApp(-1, 404), bodyApp(-1, 200)}, large, true, 413, "", false},
		{"max_body_size exactly", map[string]string{"max_body_size": "100"}, []http.Handler{bodyApp(-1, 404), bodyApp(-1, 200)}, small, true, 200, small, false},
		{"max_body_size, second app over it", map[string]string{"max_body_size": "150"}, []http.Handler{bodyApp(50, 404), bodyApp(-1, 200)}, small + small, true, 413, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			opts := map[string]string{"temp_dir": tmp}
			apps := fakeLoader{}
			for i, h := range tt.apps {
				name := fmt.Sprintf("app%d", i+1)
				opts[name] = name
				apps[name] = h
			}
			for k, v := range tt.opts {
				opts[k] = v
			}
			// Watch the temporary directory while the last app runs.
			spilled := false
			last := fmt.Sprintf("app%d", len(tt.apps))
			inner := apps[last]
			apps[last] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inner.ServeHTTP(w, r)
				spilled = cascadeBodyOf(r).file != nil
			})
			h, err := cascadeFactory().Composite(catConfig(opts), apps)
			if err != nil {
				t.Fatal(err)
			}
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = iotest.HalfReader(body)
			}
			req := httptest.NewRequest("POST", "/", body)
			if tt.chunked {
				req.ContentLength = -1
			}
			rec := serve(h, req)
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
				t.Errorf("got %d %.40q (%d bytes), want %d %.40q (%d bytes)", rec.Code, rec.Body.String(), rec.Body.Len(), tt.wantStatus, tt.wantBody, len(tt.wantBody))
			}
			if tt.wantStatus == 200 && spilled != tt.wantFile {
				t.Errorf("spilled to a file: %v, want %v", spilled, tt.wantFile)
			}
			// The file is unlinked at creation: nothing is left behind.
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("temporary directory not empty: %v", ents)
			}
		})
	}
}

// cascadeBodyOf finds the recording behind a request body the cascade
// handed to an app.
func cascadeBodyOf(r *http.Request) *cascadeBody {
	if cr, ok := r.Body.(*cascadeReader); ok {
		return cr.b
	}
	return &cascadeBody{}
}

// A body whose source fails gives every app the same error.
func TestCatCascadeBodyReadError(t *testing.T) {
	boom := errors.New("connection reset")
	var errs []error
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		errs = append(errs, err)
		w.WriteHeader(404)
	})
	h, err := cascadeFactory().Composite(catConfig(map[string]string{"app1": "a", "app2": "a"}), fakeLoader{"a": app})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/", io.MultiReader(strings.NewReader("part"), iotest.ErrReader(boom)))
	req.ContentLength = -1
	serve(h, req)
	if len(errs) != 2 || !errors.Is(errs[0], boom) || !errors.Is(errs[1], boom) {
		t.Errorf("errors %v, want %v twice", errs, boom)
	}
}

// A passed-over app's urlmap route does not stay on the request.
func TestCatCascadeRoute(t *testing.T) {
	inner, err := urlmapFactory().Composite(catConfig(map[string]string{"/a": "nf"}), fakeLoader{"nf": statusApp("nf", 404)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := cascadeFactory().Composite(catConfig(map[string]string{"app1": "map", "app2": "ok"}), fakeLoader{"map": inner, "ok": statusApp("ok", 200)})
	if err != nil {
		t.Fatal(err)
	}
	r, route := TrackRoute(httptest.NewRequest("GET", "/a/x", nil))
	rec := serve(h, r)
	if rec.Code != 200 || *route != "/" {
		t.Errorf("status %d, route %q, want 200 and the cascade's own route %q", rec.Code, *route, "/")
	}
}

// Flushing before writing commits a 200, like the server's writer.
func TestCatCascadeFlush(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", "streamer")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
		io.WriteString(w, "chunk")
	})
	h, err := cascadeFactory().Composite(catConfig(map[string]string{"app1": "s", "app2": "ok"}), fakeLoader{"s": app, "ok": statusApp("ok", 200)})
	if err != nil {
		t.Fatal(err)
	}
	rec := serve(h, httptest.NewRequest("GET", "/", nil))
	if !rec.Flushed || rec.Body.String() != "chunk" || rec.Header().Get("X-App") != "streamer" {
		t.Errorf("flushed %v, body %q, X-App %q", rec.Flushed, rec.Body.String(), rec.Header().Get("X-App"))
	}
}

func TestCatCascadeConfigErrors(t *testing.T) {
	apps := fakeLoader{"a": statusApp("a", 200)}
	tests := []struct {
		name    string
		opts    map[string]string
		wantKey string
		wantMsg string
	}{
		{"no apps", map[string]string{"catch": "404"}, "", "no apps"},
		{"bad key", map[string]string{"app1": "a", "fallback": "a"}, "fallback", "must start with 'app'"},
		{"unknown app", map[string]string{"app1": "a", "app2": "missing"}, "app2", "missing"},
		{"empty app", map[string]string{"app1": " "}, "app1", "no application named"},
		{"catch not a number", map[string]string{"app1": "a", "catch": "404 NotFound"}, "catch", `"NotFound" is not an HTTP status code`},
		{"catch out of range", map[string]string{"app1": "a", "catch": "99"}, "catch", "not an HTTP status code"},
		{"negative buffer", map[string]string{"app1": "a", "body_buffer_size": "-1"}, "body_buffer_size", "negative"},
		{"bad max", map[string]string{"app1": "a", "max_body_size": "big"}, "max_body_size", "not an integer"},
		{"temp_dir missing", map[string]string{"app1": "a", "temp_dir": "/nonexistent/dir"}, "temp_dir", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := catConfigAt(tt.opts)
			_, err := cascadeFactory().Composite(c, apps)
			wantErrorAt(t, err, c.PosOf(tt.wantKey).String()+": [test]: ", tt.wantMsg)
		})
	}
	t.Run("loader errors wrapped", func(t *testing.T) {
		sentinel := errors.New("boom")
		_, err := cascadeFactory().Composite(catConfig(map[string]string{"app1": "x"}), errLoader{sentinel})
		if !errors.Is(err, sentinel) {
			t.Errorf("error %v does not wrap the loader's error", err)
		}
	})
}
