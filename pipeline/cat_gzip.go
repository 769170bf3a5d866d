package pipeline

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// gzipFactory compresses responses, like Paste's paste.gzipper.
//
// klauspost/compress/gzip rather than compress/gzip: on a 10 KB JSON body
// it takes about half the CPU of the standard library at the same level
// and output size (see BenchmarkGzipLibraries), and the target is
// Caddy's encode gzip, which uses it too.
func gzipFactory() Factory {
	return Filter("gzip-compresses responses for clients that accept it (Paste's gzipper)", newGzip)
}

const (
	gzipDefaultLevel  = 6 // Paste's compress_level default (and zlib's)
	gzipDefaultMinLen = 512
	// gzipSniffLen is how much net/http's content sniffing looks at.
	gzipSniffLen = 512
	// gzipMaxPooledBuf bounds the pending-body buffer a pooled writer
	// keeps.
	gzipMaxPooledBuf = 64 << 10
)

// gzipDefaultTypes are compressed by default: text, and the structured
// and script formats that compress well. Already-compressed formats
// (images other than SVG, archives, video) are left out.
var gzipDefaultTypes = []string{
	"text/*",
	"application/json", "application/*+json", "application/x-ndjson",
	"application/javascript", "application/x-javascript", "application/ecmascript",
	"application/xml", "application/*+xml",
	"application/wasm",
	"image/svg+xml",
	"font/ttf", "font/otf",
}

// gzipType is one content_types entry: "type/sub" exactly, "type/*", or
// "type/*+suffix" (prefix and suffix both lower case).
type gzipType struct {
	prefix string // "text/" for text/*, else the whole type
	suffix string // "+json" for application/*+json
	exact  bool
}

func (t gzipType) match(mt string) bool {
	if t.exact {
		return strings.EqualFold(mt, t.prefix)
	}
	return len(mt) >= len(t.prefix)+len(t.suffix) &&
		strings.EqualFold(mt[:len(t.prefix)], t.prefix) &&
		strings.EqualFold(mt[len(mt)-len(t.suffix):], t.suffix)
}

type gzipFilter struct {
	level  int
	minLen int
	types  []gzipType
}

func newGzip(c *Config) (Middleware, error) {
	f := &gzipFilter{}
	var err error
	if f.level, err = c.Int("compress_level", gzipDefaultLevel); err != nil {
		return nil, err
	}
	if f.level < gzip.BestSpeed || f.level > gzip.BestCompression {
		return nil, c.Errorf("compress_level", "compress_level: want 1 (fastest) to 9 (smallest), got %d", f.level)
	}
	if f.minLen, err = c.Int("min_length", gzipDefaultMinLen); err != nil {
		return nil, err
	}
	if f.minLen < 0 {
		return nil, c.Errorf("min_length", "min_length: must not be negative, got %d", f.minLen)
	}
	types := gzipDefaultTypes
	if _, ok := c.Lookup("content_types"); ok {
		types = c.List("content_types")
		if len(types) == 0 {
			return nil, c.Errorf("content_types", "content_types: empty (remove the filter to compress nothing)")
		}
	}
	for _, s := range types {
		t, ok := parseGzipType(s)
		if !ok {
			return nil, c.Errorf("content_types", "content_types: %q: want type/subtype, type/* or type/*+suffix", s)
		}
		f.types = append(f.types, t)
	}
	return f.wrap, nil
}

func parseGzipType(s string) (gzipType, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	main, sub, ok := strings.Cut(s, "/")
	if !ok || !isToken(main) || sub == "" {
		return gzipType{}, false
	}
	if rest, wild := strings.CutPrefix(sub, "*"); wild {
		if rest != "" && (rest[0] != '+' || !isToken(rest[1:])) {
			return gzipType{}, false
		}
		return gzipType{prefix: main + "/", suffix: rest}, true
	}
	if !isToken(sub) {
		return gzipType{}, false
	}
	return gzipType{prefix: s, exact: true}, true
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// compressible reports whether the media type of a Content-Type value is
// one the filter compresses.
func (f *gzipFilter) compressible(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	for _, t := range f.types {
		if t.match(mt) {
			return true
		}
	}
	return false
}

func (f *gzipFilter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			// No body to compress; the headers stay those of the
			// uncompressed representation.
			next.ServeHTTP(w, r)
			return
		}
		gw := gzipWriterPool.Get().(*gzipWriter)
		buf := gw.buf[:0]
		*gw = gzipWriter{w: w, f: f, buf: buf,
			accept:   acceptsGzip(r.Header["Accept-Encoding"]),
			rangeReq: len(r.Header["Range"]) > 0}
		next.ServeHTTP(gw, r)
		// Not deferred: after a panic the response is broken anyway, and
		// the writer is left to the garbage collector.
		gw.finish()
		if cap(gw.buf) > gzipMaxPooledBuf {
			gw.buf = nil
		}
		*gw = gzipWriter{buf: gw.buf[:0]}
		gzipWriterPool.Put(gw)
	})
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip
// (RFC 9110 12.5.3): gzip or x-gzip with a non-zero q, or "*" with a
// non-zero q when gzip is not named. A malformed q counts as 0, so
// garbage never turns compression on.
func acceptsGzip(vals []string) bool {
	gz, star := -1, -1 // q in thousandths; -1: not mentioned
	for _, v := range vals {
		for v != "" {
			var elem string
			elem, v, _ = strings.Cut(v, ",")
			coding, params, _ := strings.Cut(elem, ";")
			coding = strings.TrimSpace(coding)
			q := 1000
			for params != "" {
				var p string
				p, params, _ = strings.Cut(params, ";")
				k, val, _ := strings.Cut(p, "=")
				if strings.EqualFold(strings.TrimSpace(k), "q") {
					q = parseQValue(strings.TrimSpace(val))
				}
			}
			switch {
			case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
				gz = max(gz, q)
			case coding == "*":
				star = max(star, q)
			}
		}
	}
	if gz >= 0 {
		return gz > 0
	}
	return star > 0
}

// parseQValue parses an RFC 9110 qvalue ("0", "0.5", "1.000") into
// thousandths; anything else is 0.
func parseQValue(s string) int {
	if s == "" || (s[0] != '0' && s[0] != '1') {
		return 0
	}
	q := int(s[0]-'0') * 1000
	rest := s[1:]
	if rest == "" {
		return q
	}
	if rest[0] != '.' || len(rest) > 4 {
		return 0
	}
	scale := 100
	for i := 1; i < len(rest); i++ {
		d := rest[i]
		if d < '0' || d > '9' {
			return 0
		}
		q += int(d-'0') * scale
		scale /= 10
	}
	if q > 1000 {
		return 0
	}
	return q
}

// gzipWriter decides, when the response header is committed, whether to
// compress, and then writes the body through a pooled gzip.Writer or
// straight through. It holds back the header and up to min_length body
// bytes while the decision needs the body's length (or its first bytes,
// to sniff a missing Content-Type as net/http would). Pooled: a response
// that is not compressed allocates nothing.
type gzipWriter struct {
	w        http.ResponseWriter
	f        *gzipFilter
	accept   bool // the client accepts gzip
	rangeReq bool // the request has a Range header
	status   int  // status held back while undecided (0: none yet)
	state    uint8
	buf      []byte // body bytes held back while undecided
	zw       *gzip.Writer
}

const (
	gzUndecided uint8 = iota
	gzPlain
	gzCompress
	gzHijacked
)

var gzipWriterPool = sync.Pool{New: func() any { return new(gzipWriter) }}

// gzipPools holds gzip.Writers by compression level.
var gzipPools [gzip.BestCompression + 1]sync.Pool

var (
	gzipEncoding = []string{"gzip"}
	gzipVary     = []string{"Accept-Encoding"}
)

func (gw *gzipWriter) Header() http.Header { return gw.w.Header() }

func (gw *gzipWriter) WriteHeader(code int) {
	if gw.state != gzUndecided {
		gw.w.WriteHeader(code) // after a decision: net/http's own checks
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		gw.w.WriteHeader(code) // informational: the final header comes later
		return
	}
	if gw.status != 0 {
		return // superfluous, as net/http would ignore it
	}
	gw.status = code
	gw.decide(nil, false, false)
}

func (gw *gzipWriter) Write(p []byte) (int, error) {
	switch gw.state {
	case gzPlain:
		return gw.w.Write(p)
	case gzCompress:
		return gw.zw.Write(p)
	case gzHijacked:
		return 0, http.ErrHijacked
	}
	if gw.status == 0 {
		gw.status = http.StatusOK
	}
	if len(gw.buf) == 0 && gw.decide(p, false, false) {
		return gw.Write(p)
	}
	gw.buf = append(gw.buf, p...)
	if gw.decide(gw.buf, false, false) {
		if err := gw.flushBuf(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// ReadFrom keeps net/http's sendfile path when the response is not
// compressed.
func (gw *gzipWriter) ReadFrom(src io.Reader) (int64, error) {
	var n int64
	if gw.state == gzUndecided {
		if gw.status == 0 {
			gw.status = http.StatusOK
		}
		// Read until the decision can be made, or the body ends.
		eof := false
		for !gw.decide(gw.buf, false, false) {
			if len(gw.buf) == cap(gw.buf) {
				gw.buf = append(gw.buf, make([]byte, max(gw.f.minLen, gzipSniffLen))...)[:len(gw.buf)]
			}
			m, err := src.Read(gw.buf[len(gw.buf):cap(gw.buf)])
			gw.buf = gw.buf[:len(gw.buf)+m]
			n += int64(m)
			if err == io.EOF {
				eof = true
				gw.decide(gw.buf, true, false)
				break
			}
			if err != nil {
				return n, err
			}
		}
		if err := gw.flushBuf(); err != nil || eof {
			return n, err
		}
	}
	switch gw.state {
	case gzPlain:
		if rf, ok := gw.w.(io.ReaderFrom); ok {
			m, err := rf.ReadFrom(src)
			return n + m, err
		}
		m, err := io.Copy(writerOnly{gw.w}, src)
		return n + m, err
	case gzCompress:
		m, err := io.Copy(gw.zw, src)
		return n + m, err
	}
	return n, http.ErrHijacked
}

// writerOnly hides ReadFrom so io.Copy does not recurse into it.
type writerOnly struct{ io.Writer }

func (gw *gzipWriter) Flush() {
	if gw.state == gzHijacked {
		return
	}
	if gw.state == gzUndecided {
		if gw.status == 0 {
			gw.status = http.StatusOK
		}
		gw.decide(gw.buf, false, true)
		if err := gw.flushBuf(); err != nil {
			return
		}
	}
	if gw.state == gzCompress {
		// A sync flush: what was written so far can be decompressed.
		if err := gw.zw.Flush(); err != nil {
			return
		}
	}
	if fl, ok := gw.w.(http.Flusher); ok {
		fl.Flush()
		return
	}
	_ = http.NewResponseController(gw.w).Flush()
}

func (gw *gzipWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(gw.w).Hijack()
	if err == nil {
		gw.state = gzHijacked
	}
	return conn, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (gw *gzipWriter) Unwrap() http.ResponseWriter { return gw.w }

// flushBuf writes the held-back body after the decision.
func (gw *gzipWriter) flushBuf() error {
	if len(gw.buf) == 0 {
		return nil
	}
	var err error
	switch gw.state {
	case gzPlain:
		_, err = gw.w.Write(gw.buf)
	case gzCompress:
		_, err = gw.zw.Write(gw.buf)
	}
	gw.buf = gw.buf[:0]
	return err
}

// finish ends the response after the handler returned.
func (gw *gzipWriter) finish() {
	switch gw.state {
	case gzUndecided:
		if gw.status == 0 && len(gw.buf) == 0 {
			// Nothing written: net/http sends the implicit 200 and an
			// empty body; still mark the response as varying.
			gw.status = http.StatusOK
		}
		gw.decide(gw.buf, true, false)
		_ = gw.flushBuf()
		if gw.state == gzCompress {
			gw.finish()
		}
	case gzCompress:
		_ = gw.zw.Close() // the gzip trailer
		gw.zw.Reset(io.Discard)
		gzipPools[gw.f.level].Put(gw.zw)
		gw.zw = nil
	}
}

// decide settles whether to compress, once enough is known, and then
// writes the response header. data is the body held back so far; final
// means the handler has returned (data is the whole body); flush means the
// handler asked to send what it has (the length is then unknown). It
// reports whether the decision was made.
func (gw *gzipWriter) decide(data []byte, final, flush bool) bool {
	if gw.state != gzUndecided {
		return true
	}
	if gw.status == 0 {
		return false // only an informational header so far
	}
	compress, ok := gw.shouldCompress(data, final, flush)
	if !ok {
		return false
	}
	h := gw.w.Header()
	if !compress {
		gw.state = gzPlain
		gw.w.WriteHeader(gw.status)
		return true
	}
	if _, has := h["Content-Type"]; !has {
		// net/http does not sniff an encoded body: name the type of
		// the uncompressed one, as it would have.
		h["Content-Type"] = []string{http.DetectContentType(data[:min(len(data), gzipSniffLen)])}
	}
	delete(h, "Content-Length")
	// Ranges of the encoded body are not offered.
	delete(h, "Accept-Ranges")
	h["Content-Encoding"] = gzipEncoding
	if et := h["Etag"]; len(et) == 1 && strings.HasPrefix(et[0], `"`) {
		// The compressed body is a different representation: a strong
		// validator would claim byte equality with the plain one.
		h["Etag"] = []string{"W/" + et[0]}
	}
	zw, _ := gzipPools[gw.f.level].Get().(*gzip.Writer)
	if zw == nil {
		zw, _ = gzip.NewWriterLevel(gw.w, gw.f.level) // level checked at load
	} else {
		zw.Reset(gw.w)
	}
	gw.zw = zw
	gw.state = gzCompress
	gw.w.WriteHeader(gw.status)
	return true
}

// shouldCompress answers whether to compress (ok: the answer is known).
// It adds Vary: Accept-Encoding to every response whose type the filter
// compresses, so caches keep the variants apart.
func (gw *gzipWriter) shouldCompress(data []byte, final, flush bool) (compress, ok bool) {
	switch s := gw.status; {
	case s < 200, s == http.StatusNoContent, s == http.StatusPartialContent, s == http.StatusNotModified:
		return false, true
	}
	h := gw.w.Header()
	if ce := h["Content-Encoding"]; len(ce) > 0 && !(len(ce) == 1 && (ce[0] == "" || strings.EqualFold(ce[0], "identity"))) {
		return false, true // already encoded
	}
	if len(h["Content-Range"]) > 0 {
		return false, true
	}
	ct, hasType := h["Content-Type"]
	var typ string
	switch {
	case hasType && len(ct) > 0:
		typ = ct[0]
	case hasType:
		return false, true // an explicitly empty type: net/http sends none
	case !gw.accept || gw.rangeReq:
		// Not compressed whatever the sniffed type: do not hold the
		// body back just to decide on Vary.
		return false, true
	case len(data) < gzipSniffLen && !final && !flush:
		return false, false // sniff like net/http once there is enough
	case len(data) == 0:
		return false, true // no body
	default:
		typ = http.DetectContentType(data[:min(len(data), gzipSniffLen)])
	}
	if !gw.f.compressible(typ) {
		return false, true
	}
	addVary(h)
	if !gw.accept || gw.rangeReq || hasNoTransform(h["Cache-Control"]) {
		return false, true
	}
	if cl := h["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseInt(strings.TrimSpace(cl[0]), 10, 64)
		return err == nil && n >= int64(gw.f.minLen), true
	}
	switch {
	case final:
		// data is the whole body.
		return len(data) > 0 && len(data) >= gw.f.minLen, true
	case len(data) >= gw.f.minLen:
		return true, true
	case flush:
		return true, true // streaming: the length is unknown
	}
	return false, false
}

// addVary adds Accept-Encoding to the Vary header unless it (or "*") is
// there. The value slice is shared, with cap == len so appends copy.
func addVary(h http.Header) {
	v := h["Vary"]
	if len(v) == 0 {
		h["Vary"] = gzipVary
		return
	}
	for _, s := range v {
		for s != "" {
			var tok string
			tok, s, _ = strings.Cut(s, ",")
			tok = strings.TrimSpace(tok)
			if tok == "*" || strings.EqualFold(tok, "Accept-Encoding") {
				return
			}
		}
	}
	h["Vary"] = append(v[:len(v):len(v)], "Accept-Encoding")
}

// hasNoTransform reports whether Cache-Control forbids transforming the
// body (RFC 9111 5.2.2.6).
func hasNoTransform(v []string) bool {
	for _, s := range v {
		for s != "" {
			var tok string
			tok, s, _ = strings.Cut(s, ",")
			if strings.EqualFold(strings.TrimSpace(tok), "no-transform") {
				return true
			}
		}
	}
	return false
}
