package accesslog

import (
	"io"
	"net/http"
	"testing"
)

// go test -run XXX -bench . -benchmem ./accesslog/

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		if _, err := Parse(Combined + ` %(D)s %({x-forwarded-for}i)s`); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLog renders one line and hands it to the output (a Writer on
// io.Discard, as in a worker): the per-request cost.
func BenchmarkLog(b *testing.B) {
	for _, bc := range []struct {
		name, format string
		json         bool
	}{
		{"combined", "", false},
		{"every_atom", `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s "%(f)s" "%(a)s" %(T)s %(M)s %(D)s %(L)s %(p)s %({x-forwarded-for}i)s %({content-type}o)s %({REMOTE_PORT}e)s`, false},
		{"json", "", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := NewWriter(io.Discard, WriterOptions{})
			defer w.Close(b.Context())
			l := New(Options{Format: mustParse(b, bc.format), JSON: bc.json, Out: w, PID: 4242})
			e := knownEntry()
			b.ReportAllocs()
			for b.Loop() {
				l.Log(e)
			}
		})
	}
}

// BenchmarkWrap is the whole wrapper around a handler that writes a
// small body: what the access log adds to a request.
func BenchmarkWrap(b *testing.B) {
	w := NewWriter(io.Discard, WriterOptions{})
	defer w.Close(b.Context())
	body := []byte("hello\n")
	h := New(Options{Out: w, PID: 4242}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	r := knownEntry().Request
	rec := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(rec, r)
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
