package pipeline

import (
	stdgzip "compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// benchJSON is an API-like JSON body of about n bytes: a list of servers
// with ids, names, addresses and timestamps, from a fixed seed.
func benchJSON(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	type server struct {
		ID      string            `json:"id"`
		Name    string            `json:"name"`
		Status  string            `json:"status"`
		Created string            `json:"created"`
		Addr    string            `json:"addr"`
		Meta    map[string]string `json:"metadata"`
	}
	var list []server
	for {
		i := len(list)
		list = append(list, server{
			ID:      fmt.Sprintf("%08x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff),
			Name:    fmt.Sprintf("web-%03d.%s", i, []string{"east", "west", "north"}[rng.IntN(3)]),
			Status:  []string{"ACTIVE", "BUILD", "SHUTOFF"}[rng.IntN(3)],
			Created: fmt.Sprintf("2026-%02d-%02dT%02d:%02d:%02dZ", 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60)),
			Addr:    fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256)),
			Meta:    map[string]string{"flavor": []string{"m1.small", "m1.large"}[rng.IntN(2)], "az": "nova"},
		})
		b, _ := json.Marshal(map[string]any{"servers": list})
		if len(b) >= n {
			return b
		}
	}
}

// BenchmarkCatFilters measures the filters of cat_{gzip,basic_auth,
// ratelimit,timeout,errordocument}.go and translogger's Paste format
// around a trivial handler, like BenchmarkFilter.
func BenchmarkCatFilters(b *testing.B) {
	get := httptest.NewRequest("GET", "http://bench.example/v2/servers?limit=10", nil)
	get.RemoteAddr = "127.0.0.1:40000"
	get.Header.Set("User-Agent", "bench/1.0")
	gz := get.Clone(get.Context())
	gz.Header.Set("Accept-Encoding", "gzip, deflate, br")
	authed := get.Clone(get.Context())
	authed.Header.Set("Authorization", basicHeader("alice", "s3cret"))

	body := benchJSON(10 << 10)
	jsonApp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = jsonType
		w.Write(body)
	})
	pngApp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = pngType
		w.Write(body)
	})
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })

	dir := b.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:"+testHashes()["s3cret"]+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	page := filepath.Join(dir, "404.html")
	if err := os.WriteFile(page, []byte(page404), 0o644); err != nil {
		b.Fatal(err)
	}

	cases := []struct {
		name string
		f    Factory
		opts map[string]string
		app  http.Handler
		req  *http.Request
	}{
		{"gzip/no-accept-encoding", gzipFactory(), nil, jsonApp, get},
		{"gzip/short-body", gzipFactory(), nil, okHandler, gz},
		{"gzip/incompressible-type", gzipFactory(), nil, pngApp, gz},
		{"gzip/json-10k-level1", gzipFactory(), map[string]string{"compress_level": "1"}, jsonApp, gz},
		{"gzip/json-10k-level5", gzipFactory(), map[string]string{"compress_level": "5"}, jsonApp, gz},
		{"gzip/json-10k-level6", gzipFactory(), nil, jsonApp, gz},
		{"basic_auth/cached", basicAuthFactory(), map[string]string{"htpasswd": htpasswd}, okHandler, authed},
		{"basic_auth/no-credentials", basicAuthFactory(), map[string]string{"htpasswd": htpasswd}, okHandler, get},
		{"ratelimit/allowed", ratelimitFactory(), map[string]string{"rate": "1e9"}, okHandler, get},
		{"ratelimit/limited", ratelimitFactory(), map[string]string{"rate": "1/h"}, okHandler, get},
		{"timeout", timeoutFactory(), nil, okHandler, get},
		{"errordocument/pass", errordocumentFactory(), map[string]string{"404": page}, okHandler, get},
		{"errordocument/replaced", errordocumentFactory(), map[string]string{"404": page}, notFound, get},
		{"translogger/paste-format", transloggerFactory(), map[string]string{"output": "discard",
			"format": `%(REMOTE_ADDR)s %(REMOTE_USER)s [%(time)s] "%(REQUEST_METHOD)s %(REQUEST_URI)s %(HTTP_VERSION)s" %(status)s %(bytes)s`}, okHandler, authed},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			h := mustFilter(b, bc.f, bc.opts)(bc.app)
			w := newNopWriter()
			h.ServeHTTP(w, bc.req) // warm caches (basic_auth, ratelimit)
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, bc.req)
				clear(w.h)
			}
		})
	}
}

var jsonType = []string{"application/json"}

// BenchmarkGzipLibraries compares compress/gzip with klauspost/compress on
// the 10 KB JSON body (a pooled writer, reset per body): the reason the
// gzip filter uses klauspost.
func BenchmarkGzipLibraries(b *testing.B) {
	body := benchJSON(10 << 10)
	for _, level := range []int{1, 5, 6} {
		b.Run(fmt.Sprintf("stdlib/level%d", level), func(b *testing.B) {
			zw, _ := stdgzip.NewWriterLevel(io.Discard, level)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				zw.Reset(io.Discard)
				zw.Write(body)
				zw.Close()
			}
		})
		b.Run(fmt.Sprintf("klauspost/level%d", level), func(b *testing.B) {
			zw, _ := gzip.NewWriterLevel(io.Discard, level)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				zw.Reset(io.Discard)
				zw.Write(body)
				zw.Close()
			}
		})
	}
}

// TestGzipLibrariesSize logs the compressed sizes next to the benchmark.
func TestGzipLibrariesSize(t *testing.T) {
	body := benchJSON(10 << 10)
	for _, level := range []int{1, 5, 6} {
		var std, kp countWriter
		zs, _ := stdgzip.NewWriterLevel(&std, level)
		zs.Write(body)
		zs.Close()
		zk, _ := gzip.NewWriterLevel(&kp, level)
		zk.Write(body)
		zk.Close()
		t.Logf("level %d: %d bytes -> stdlib %d, klauspost %d", level, len(body), std, kp)
		if kp > std*11/10 {
			t.Errorf("klauspost output %d is more than 10%% above the standard library's %d", kp, std)
		}
	}
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
