package pipeline_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"paddock/pipeline"
)

// BenchmarkPipeline compares a bare handler with the same response served
// through a realistic site (testdata/bench/site.ini: urlmap and eight
// built-in filters in front of hello), both over real HTTP/1.1 on loopback
// with a keep-alive client. Sequential on purpose: the ratio site/bare is
// the cost of the pipeline relative to a whole request, which parallel
// load would blur with scheduling.
//
//	go test -run '^$' -bench BenchmarkPipeline -benchmem -count 6 ./pipeline/
func BenchmarkPipeline(b *testing.B) {
	b.Run("bare", func(b *testing.B) {
		runPipelineBench(b, bareHello())
	})
	b.Run("site", func(b *testing.B) {
		runPipelineBench(b, loadSite(b))
	})
	// bare_site_headers writes the site's whole response (its seven extra
	// headers too) with no pipeline: site/bare_site_headers is the cost of
	// the pipeline's processing alone, bare_site_headers/bare the cost of
	// the headers the filters add on the wire.
	b.Run("bare_site_headers", func(b *testing.B) {
		runPipelineBench(b, bareSiteHeaders())
	})
}

// bareSiteHeaders writes what the site answers: hello plus the headers of
// cors, request_id and headers.
func bareSiteHeaders() http.Handler {
	inner := bareHello()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", benchOrigin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Expose-Headers", "X-Openstack-Request-Id")
		h.Set("Vary", "Origin")
		h.Set("X-Openstack-Request-Id", "req-0b9e6a52-3c1d-4f5e-9a7b-8c2d1e0f3a4b")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		inner.ServeHTTP(w, r)
	})
}

const (
	benchOrigin = "https://dashboard.example.com"
	benchPath   = "/api/v1/items?limit=10"
	helloBody   = "Hello from paddock\n"
)

// bareHello writes what the hello app writes (body, Content-Type,
// Content-Length) with nothing around it.
func bareHello() http.Handler {
	ctype := []string{"text/plain; charset=utf-8"}
	length := []string{strconv.Itoa(len(helloBody))}
	body := []byte(helloBody)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = ctype
		h["Content-Length"] = length
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	})
}

func loadSite(tb testing.TB) http.Handler {
	tb.Helper()
	p, err := pipeline.Load(pipeline.LoadOptions{Path: "testdata/bench/site.ini"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	if len(p.Warnings) > 0 {
		tb.Fatalf("site.ini warnings: %v", p.Warnings)
	}
	return p.Handler
}

// benchClient returns a keep-alive client of its own (no shared
// DefaultTransport state between sub-benchmarks, no environment proxy).
func benchClient(tb testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func newBenchRequest(tb testing.TB, srv *httptest.Server) *http.Request {
	req, err := http.NewRequest(http.MethodGet, srv.URL+benchPath, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Origin", benchOrigin)
	req.Header.Set("User-Agent", "paddock-bench/1.0")
	return req
}

func runPipelineBench(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := benchClient(b)
	// A request without a body may be sent again once the previous
	// response body is closed.
	req := newBenchRequest(b, srv)
	b.ReportAllocs()
	for b.Loop() {
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d, want 200", res.StatusCode)
		}
	}
}

// TestPipelineBenchSetup checks, untimed, that both benchmark servers
// answer what the benchmark assumes: the same 200 hello body, and on the
// site every filter's visible work (so a misconfigured site.ini cannot
// make the comparison meaningless).
func TestPipelineBenchSetup(t *testing.T) {
	tests := []struct {
		name string
		h    http.Handler
		want map[string]string // "" means absent
	}{
		{"bare", bareHello(), map[string]string{
			"Content-Type":                "text/plain; charset=utf-8",
			"Access-Control-Allow-Origin": "",
		}},
		{"site", loadSite(t), map[string]string{
			"Content-Type":                     "text/plain; charset=utf-8",
			"Access-Control-Allow-Origin":      benchOrigin,
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers":    "X-Openstack-Request-Id",
			"Vary":                             "Origin",
			"X-Content-Type-Options":           "nosniff",
			"X-Frame-Options":                  "DENY",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.h)
			defer srv.Close()
			client := benchClient(t)
			req := newBenchRequest(t, srv)
			var ids []string
			// Twice over one kept-alive connection, as the benchmark does.
			for range 2 {
				res, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if res.StatusCode != http.StatusOK || string(body) != helloBody {
					t.Fatalf("got %d %q, want 200 %q", res.StatusCode, body, helloBody)
				}
				if res.ContentLength != int64(len(helloBody)) {
					t.Errorf("Content-Length %d, want %d", res.ContentLength, len(helloBody))
				}
				for k, want := range tt.want {
					if got := res.Header.Get(k); got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
				ids = append(ids, res.Header.Get("X-Openstack-Request-Id"))
			}
			if tt.name == "site" && (len(ids[0]) != 40 || ids[0] == ids[1]) {
				t.Errorf("request ids %q: want a fresh req-<uuid> per request", ids)
			}
		})
	}

	t.Run("site healthcheck is mounted", func(t *testing.T) {
		// The healthcheck filter matches script name + path: it answers
		// its full path only if urlmap moved the prefix into the script
		// name consistently.
		srv := httptest.NewServer(loadSite(t))
		defer srv.Close()
		res, err := benchClient(t).Get(srv.URL + "/api/v1/healthcheck")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || string(body) != "OK" {
			t.Errorf("healthcheck: %d %q, want 200 OK", res.StatusCode, body)
		}
	})
}
