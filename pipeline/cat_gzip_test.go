package pipeline

import (
	"bufio"
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gunzip decompresses with the standard library, so the tests also check
// that klauspost's output is plain gzip.
func gunzip(t *testing.T, b []byte) string {
	t.Helper()
	zr, err := stdgzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v (%q)", err, b[:min(len(b), 40)])
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("bad gzip stream: %v", err)
	}
	return string(out)
}

var gzipText = strings.Repeat("<p>paddock compresses this line nicely.</p>\n", 40) // 1760 bytes

func TestCatGzipOptions(t *testing.T) {
	for _, opts := range []map[string]string{
		{"compress_level": "0"},
		{"compress_level": "10"},
		{"compress_level": "fast"},
		{"min_length": "-1"},
		{"min_length": "1k"},
		{"content_types": ""},
		{"content_types": "text"},
		{"content_types": "text/"},
		{"content_types": "text/html, application/*json"},
		{"content_types": "te xt/html"},
	} {
		_, err := gzipFactory().Filter(catConfig(opts))
		wantConfigError(t, err)
	}
	for _, opts := range []map[string]string{
		nil,
		{"compress_level": "1", "min_length": "0"},
		{"compress_level": "9", "content_types": "text/html application/*+json image/svg+xml TEXT/*"},
	} {
		c := catConfig(opts)
		if _, err := gzipFactory().Filter(c); err != nil {
			t.Errorf("%v: %v", opts, err)
		}
		if u := c.Unused(); len(u) != 0 {
			t.Errorf("%v: unused %v", opts, u)
		}
	}
}

func TestCatGzip(t *testing.T) {
	html := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, gzipText)
	}
	typed := func(ct, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ct)
			io.WriteString(w, body)
		}
	}
	tests := []struct {
		name     string
		opts     map[string]string
		method   string
		reqHdr   map[string]string
		next     http.HandlerFunc
		wantGzip bool
		wantVary string
		check    func(t *testing.T, rec *httptest.ResponseRecorder)
	}{
		{name: "html, gzip accepted", next: html, wantGzip: true, wantVary: "Accept-Encoding"},
		{name: "no Accept-Encoding", reqHdr: map[string]string{"Accept-Encoding": ""}, next: html, wantVary: "Accept-Encoding"},
		{name: "gzip;q=0", reqHdr: map[string]string{"Accept-Encoding": "gzip;q=0, deflate"}, next: html, wantVary: "Accept-Encoding"},
		{name: "q case and spaces", reqHdr: map[string]string{"Accept-Encoding": "br ; q=1, GZIP ; Q=0.5"}, next: html, wantGzip: true, wantVary: "Accept-Encoding"},
		{name: "x-gzip", reqHdr: map[string]string{"Accept-Encoding": "x-gzip"}, next: html, wantGzip: true, wantVary: "Accept-Encoding"},
		{name: "star", reqHdr: map[string]string{"Accept-Encoding": "*"}, next: html, wantGzip: true, wantVary: "Accept-Encoding"},
		{name: "star;q=0", reqHdr: map[string]string{"Accept-Encoding": "*;q=0"}, next: html, wantVary: "Accept-Encoding"},
		{name: "gzip refused, star allowed", reqHdr: map[string]string{"Accept-Encoding": "gzip;q=0, *"}, next: html, wantVary: "Accept-Encoding"},
		{name: "garbage q", reqHdr: map[string]string{"Accept-Encoding": "gzip;q=lots"}, next: html, wantVary: "Accept-Encoding"},
		{name: "q above 1", reqHdr: map[string]string{"Accept-Encoding": "gzip;q=1.5"}, next: html, wantVary: "Accept-Encoding"},
		{name: "q with 4 decimals", reqHdr: map[string]string{"Accept-Encoding": "gzip;q=0.0001"}, next: html, wantVary: "Accept-Encoding"},
		{name: "garbage header", reqHdr: map[string]string{"Accept-Encoding": ",;=,\x01\xff gzipx ;;q"}, next: html, wantVary: "Accept-Encoding"},
		{name: "HEAD passes through", method: "HEAD", next: html},
		{name: "short body", next: typed("text/plain", "tiny"), wantVary: "Accept-Encoding"},
		{name: "min_length 0", opts: map[string]string{"min_length": "0"}, next: typed("text/plain", "tiny"), wantGzip: true, wantVary: "Accept-Encoding", check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if got := gunzip(t, rec.Body.Bytes()); got != "tiny" {
				t.Errorf("body %q", got)
			}
		}},
		{name: "image not compressed", next: typed("image/png", gzipText)},
		{name: "json", next: typed("application/json", gzipText), wantGzip: true, wantVary: "Accept-Encoding"},
		{name: "problem+json", next: typed("application/problem+json", gzipText), wantGzip: true, wantVary: "Accept-Encoding"},
		{name: "svg", next: typed("image/svg+xml", gzipText), wantGzip: true, wantVary: "Accept-Encoding"},
		{name: "type outside content_types", opts: map[string]string{"content_types": "application/json"}, next: html},
		{name: "already encoded", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "br")
			html(w, r)
		}, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if rec.Header().Get("Content-Encoding") != "br" || rec.Body.String() != gzipText {
				t.Errorf("encoded body touched: %q", rec.Header().Get("Content-Encoding"))
			}
		}},
		{name: "Range request", reqHdr: map[string]string{"Range": "bytes=0-10"}, next: html, wantVary: "Accept-Encoding"},
		{name: "206", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Range", "bytes 0-1759/5000")
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, gzipText)
		}},
		{name: "204", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNoContent)
		}},
		{name: "304", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotModified)
		}},
		{name: "no-transform", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, No-Transform")
			html(w, r)
		}, wantVary: "Accept-Encoding"},
		{name: "sniffed type", next: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<!DOCTYPE html>"+gzipText)
		}, wantGzip: true, wantVary: "Accept-Encoding", check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q, want the sniffed type", ct)
			}
		}},
		{name: "sniffed binary", next: func(w http.ResponseWriter, r *http.Request) {
			w.Write(append([]byte("\x89PNG\r\n\x1a\n"), gzipText...))
		}},
		{name: "Content-Length large", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(gzipText)))
			html(w, r)
		}, wantGzip: true, wantVary: "Accept-Encoding", check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if cl := rec.Header().Get("Content-Length"); cl != "" {
				t.Errorf("Content-Length %s kept on a compressed body", cl)
			}
		}},
		{name: "Content-Length small", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "small")
		}, wantVary: "Accept-Encoding", check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if cl := rec.Header().Get("Content-Length"); cl != "5" {
				t.Errorf("Content-Length = %q, want 5", cl)
			}
		}},
		{name: "many small writes", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			for i := 0; i < len(gzipText); i += 7 {
				io.WriteString(w, gzipText[i:min(i+7, len(gzipText))])
			}
		}, wantGzip: true, wantVary: "Accept-Encoding"},
		{name: "small writes below min_length", opts: map[string]string{"min_length": "4096"}, next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			for i := 0; i < len(gzipText); i += 7 {
				io.WriteString(w, gzipText[i:min(i+7, len(gzipText))])
			}
		}, wantVary: "Accept-Encoding"},
		{name: "existing Vary and strong ETag", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "Origin")
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Accept-Ranges", "bytes")
			html(w, r)
		}, wantGzip: true, wantVary: "Origin, Accept-Encoding", check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if et := rec.Header().Get("ETag"); et != `W/"v1"` {
				t.Errorf("ETag = %q, want W/\"v1\"", et)
			}
			if ar := rec.Header().Get("Accept-Ranges"); ar != "" {
				t.Errorf("Accept-Ranges = %q on a compressed body", ar)
			}
		}},
		{name: "Vary already names it", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "accept-encoding, Origin")
			html(w, r)
		}, wantGzip: true, wantVary: "accept-encoding, Origin"},
		{name: "404 compressed too", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, gzipText)
		}, wantGzip: true, wantVary: "Accept-Encoding", check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if rec.Code != 404 {
				t.Errorf("status %d", rec.Code)
			}
		}},
		{name: "io.Copy", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.Copy(w, strings.NewReader(gzipText))
		}, wantGzip: true, wantVary: "Accept-Encoding"},
		{name: "io.Copy short", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.Copy(w, strings.NewReader("short"))
		}, wantVary: "Accept-Encoding"},
		{name: "level 1", opts: map[string]string{"compress_level": "1"}, next: html, wantGzip: true, wantVary: "Accept-Encoding"},
		{name: "level 9", opts: map[string]string{"compress_level": "9"}, next: html, wantGzip: true, wantVary: "Accept-Encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := mustFilter(t, gzipFactory(), tt.opts)(tt.next)
			method := tt.method
			if method == "" {
				method = "GET"
			}
			req := httptest.NewRequest(method, "/", nil)
			req.Header.Set("Accept-Encoding", "gzip, deflate, br")
			for k, v := range tt.reqHdr {
				req.Header.Set(k, v)
			}
			// Twice: the second request reuses pooled writers.
			for range 2 {
				rec := serve(h, req)
				gotGzip := rec.Header().Get("Content-Encoding") == "gzip"
				if gotGzip != tt.wantGzip {
					t.Fatalf("compressed = %v, want %v (headers %v)", gotGzip, tt.wantGzip, rec.Header())
				}
				if got := strings.Join(rec.Header().Values("Vary"), ", "); got != tt.wantVary {
					t.Errorf("Vary = %q, want %q", got, tt.wantVary)
				}
				if tt.wantGzip && tt.check == nil {
					if rec.Header().Get("Content-Length") != "" {
						t.Error("Content-Length on a compressed body")
					}
					if got := gunzip(t, rec.Body.Bytes()); !strings.HasSuffix(got, gzipText) {
						t.Errorf("decompressed body differs: %q", got[:min(len(got), 60)])
					}
					if rec.Body.Len() >= len(gzipText)/2 {
						t.Errorf("compressed body is %d bytes for %d", rec.Body.Len(), len(gzipText))
					}
				} else if method != "HEAD" && tt.check == nil && rec.Code != 204 && rec.Code != 304 {
					if got := rec.Body.String(); !strings.HasSuffix(got, gzipText) && !strings.HasSuffix(got, "tiny") && got != "short" && got != "small" {
						t.Errorf("plain body changed: %q", got[:min(len(got), 60)])
					}
				}
				if tt.check != nil {
					tt.check(t, rec)
				}
			}
		})
	}
}

func TestCatGzipAcceptsGzip(t *testing.T) {
	for in, want := range map[string]bool{
		"gzip": true, "GZip": true, "deflate, gzip;q=1.0": true, "gzip;q=0.001": true, "gzip; q=1.000": true,
		"gzip;q=0": false, "gzip;q=0.000": false, "gzip;q=": false, "gzip;q=.5": false, "gzip;q=01": false,
		"identity": false, "": false, "*;q=0.1": true, "*, gzip;q=0": false, "gzip;q=0, x-gzip": true,
		"gzip;level=1": true, "gzip;q=0.5;q=0": false, strings.Repeat("gzip;q=0,", 1000): false,
	} {
		if got := acceptsGzip([]string{in}); got != want {
			t.Errorf("acceptsGzip(%.40q) = %v, want %v", in, got, want)
		}
	}
	if !acceptsGzip([]string{"br", "gzip"}) {
		t.Error("gzip in a second header line not seen")
	}
}

// Flush sends what was written, decompressible, before the handler ends.
func TestCatGzipStreams(t *testing.T) {
	release := make(chan struct{})
	h := mustFilter(t, gzipFactory(), nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(release)
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("not compressed: %v", resp.Header)
	}
	zr, err := stdgzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(zr).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event before the handler ended: %q %v", line, err)
	}
}

// A response passed through keeps the sendfile path; the http.Server
// wiring (Hijack, ResponseController) still works through the wrapper.
func TestCatGzipServer(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "x.png")
	if err := os.WriteFile(img, bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	h := mustFilter(t, gzipFactory(), nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/file":
			f, err := os.Open(img)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			w.Header().Set("Content-Type", "image/png")
			io.Copy(w, f)
		case "/hijack":
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
			rw.Flush()
		case "/deadline":
			if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Errorf("SetWriteDeadline through the wrapper: %v", err)
			}
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, gzipText)
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Timeout: 10 * time.Second}
	for path, want := range map[string]string{"/file": "", "/hijack": "hi", "/deadline": gzipText} {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if path == "/file" {
			if len(body) != 4*4096 || resp.Header.Get("Content-Encoding") != "" {
				t.Errorf("%s: %d bytes, encoding %q", path, len(body), resp.Header.Get("Content-Encoding"))
			}
			continue
		}
		// The client asked for gzip itself and decoded it transparently.
		if string(body) != want {
			t.Errorf("%s: body %q", path, body[:min(len(body), 40)])
		}
	}
}

func TestCatGzipNoAllocs(t *testing.T) {
	h := mustFilter(t, gzipFactory(), nil)
	plain := httptest.NewRequest("GET", "/", nil)
	accept := httptest.NewRequest("GET", "/", nil)
	accept.Header.Set("Accept-Encoding", "gzip")
	png := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = pngType
		w.Write(okBody)
	})
	t.Run("client without gzip", func(t *testing.T) { assertNoAllocs(t, h(okHandler), plain) })
	t.Run("short body", func(t *testing.T) { assertNoAllocs(t, h(okHandler), accept) })
	t.Run("incompressible type", func(t *testing.T) { assertNoAllocs(t, h(png), accept) })
	t.Run("HEAD", func(t *testing.T) { assertNoAllocs(t, h(okHandler), httptest.NewRequest("HEAD", "/", nil)) })
}

var pngType = []string{"image/png"}
