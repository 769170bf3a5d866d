package pipeline

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
)

// headersFactory sets, adds and removes request and response headers from
// the config file, so small fixes (a security header, hiding a Server
// header, an internal header the app expects) need no code.
func headersFactory() Factory {
	return Filter("sets, adds and removes request and response headers", newHeaders)
}

// headerField is one header name (canonical form) with every value the
// config gave it, in file order.
type headerField struct {
	key  string
	vals []string // cap == len, shared by every request (see apply)
}

// headerOps is one direction's edits, applied remove, then set, then add.
type headerOps struct {
	remove []string // canonical names
	set    []headerField
	add    []headerField
}

func (o *headerOps) empty() bool {
	return len(o.remove) == 0 && len(o.set) == 0 && len(o.add) == 0
}

// apply edits h in place. The value slices are shared between requests:
// that is safe because header maps only ever replace an entry or append to
// it, and every shared slice has cap == len, so an append (here or in any
// later handler) copies instead of writing into the shared array.
func (o *headerOps) apply(h http.Header) {
	for _, k := range o.remove {
		delete(h, k)
	}
	for i := range o.set {
		h[o.set[i].key] = o.set[i].vals
	}
	for i := range o.add {
		f := &o.add[i]
		if old := h[f.key]; len(old) > 0 {
			// Cap-limit the old slice too: it may be another filter's
			// shared value (cors' Vary) or the request's own.
			h[f.key] = append(old[:len(old):len(old)], f.vals...)
		} else {
			h[f.key] = f.vals
		}
	}
}

type headersFilter struct {
	req, resp headerOps
}

func newHeaders(c *Config) (Middleware, error) {
	f := &headersFilter{}
	var err error
	if f.req.remove, err = headerNames(c, "request_remove", true); err != nil {
		return nil, err
	}
	if f.req.set, err = headerFields(c, "request_set", true); err != nil {
		return nil, err
	}
	if f.req.add, err = headerFields(c, "request_add", true); err != nil {
		return nil, err
	}
	if f.resp.remove, err = headerNames(c, "response_remove", false); err != nil {
		return nil, err
	}
	if f.resp.set, err = headerFields(c, "response_set", false); err != nil {
		return nil, err
	}
	if f.resp.add, err = headerFields(c, "response_add", false); err != nil {
		return nil, err
	}
	if f.req.empty() && f.resp.empty() {
		catLogger(c).Warn("headers filter without any request_*/response_* option does nothing", "section", c.Section)
		return func(next http.Handler) http.Handler { return next }, nil
	}
	return f.wrap, nil
}

func (f *headersFilter) wrap(next http.Handler) http.Handler {
	if f.resp.empty() {
		// Request edits only: no response wrapper, no pool round trip.
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, f.request(r))
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hw := headerWriterPool.Get().(*headerWriter)
		*hw = headerWriter{w: w, ops: &f.resp}
		next.ServeHTTP(hw, f.request(r))
		if !hw.wrote {
			// The handler wrote nothing: net/http sends the header map
			// with an implicit 200 after we return, so edit it now.
			hw.ops.apply(w.Header())
		}
		// Reuse is safe: net/http forbids using the writer after
		// ServeHTTP returns. A panic skips this and leaves hw to the GC.
		*hw = headerWriter{}
		headerWriterPool.Put(hw)
	})
}

// request returns r, or a shallow copy with its own header map when there
// is something to change: handlers must not modify the request they were
// given (the caller may still use it), and outer filters such as
// translogger and catch_errors read it after the inner handler returns.
func (f *headersFilter) request(r *http.Request) *http.Request {
	if f.req.empty() {
		return r
	}
	if len(f.req.set) == 0 && len(f.req.add) == 0 {
		// Removal only, the common case (stripping a header clients must
		// not send): copy only when one of the headers is present.
		found := false
		for _, k := range f.req.remove {
			if _, ok := r.Header[k]; ok {
				found = true
				break
			}
		}
		if !found {
			return r
		}
	}
	r2 := new(http.Request)
	*r2 = *r
	// A new map sharing the value slices, cap-limited so appends by inner
	// handlers cannot write into the original request's arrays.
	h := make(http.Header, len(r.Header)+len(f.req.set)+len(f.req.add))
	for k, v := range r.Header {
		h[k] = v[:len(v):len(v)]
	}
	f.req.apply(h)
	r2.Header = h
	return r2
}

// headerWriter applies the response edits to the header map just before
// it is committed: on the first WriteHeader (other than 1xx), Write,
// ReadFrom or Flush. Pooled, like statusWriter, so the response path does
// not allocate.
type headerWriter struct {
	w     http.ResponseWriter
	ops   *headerOps
	wrote bool
}

var headerWriterPool = sync.Pool{New: func() any { return new(headerWriter) }}

func (hw *headerWriter) commit() {
	if !hw.wrote {
		hw.wrote = true
		hw.ops.apply(hw.w.Header())
	}
}

func (hw *headerWriter) Header() http.Header { return hw.w.Header() }

func (hw *headerWriter) WriteHeader(code int) {
	// 1xx informational responses (except 101) do not commit the final
	// header; the edits belong to the final response.
	if code >= 200 || code == http.StatusSwitchingProtocols {
		hw.commit()
	}
	hw.w.WriteHeader(code)
}

func (hw *headerWriter) Write(p []byte) (int, error) {
	hw.commit()
	return hw.w.Write(p)
}

// ReadFrom keeps net/http's sendfile path for io.Copy(w, file).
func (hw *headerWriter) ReadFrom(src io.Reader) (int64, error) {
	hw.commit()
	if rf, ok := hw.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(hw.w, src)
}

func (hw *headerWriter) Flush() {
	hw.commit()
	if fl, ok := hw.w.(http.Flusher); ok {
		fl.Flush()
		return
	}
	_ = http.NewResponseController(hw.w).Flush()
}

// Hijack hands the connection over; the handler writes raw bytes, so there
// is no header to edit.
func (hw *headerWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(hw.w).Hijack()
	if err == nil {
		hw.wrote = true
	}
	return conn, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (hw *headerWriter) Unwrap() http.ResponseWriter { return hw.w }

// headerForbidden names headers the filter refuses to set or add: they
// describe the message framing (or, in a request, the Host, which Go keeps
// in r.Host), and a configured value would corrupt it.
func headerForbidden(key string, request bool) bool {
	switch key {
	case "Content-Length", "Transfer-Encoding":
		return true
	case "Host":
		return request
	}
	return false
}

// headerNames parses a *_remove option: names separated by whitespace or
// commas (one a line reads best).
func headerNames(c *Config, key string, request bool) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, name := range c.List(key) {
		if !validHeaderName(name) {
			return nil, c.Errorf(key, "%s: %q is not a valid header name", key, name)
		}
		k := textproto.CanonicalMIMEHeaderKey(name)
		if request && k == "Host" {
			return nil, c.Errorf(key, "%s: Host cannot be removed from a request", key)
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out, nil
}

// headerFields parses a *_set or *_add option: one "Name: value" per line.
// Lines naming the same header give it several values, in order.
func headerFields(c *Config, key string, request bool) ([]headerField, error) {
	v, ok := c.Lookup(key)
	if !ok {
		return nil, nil
	}
	var out []headerField
	index := map[string]int{}
	for i, line := range strings.Split(v, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		// The loader locates the option's first line; comment lines are
		// dropped from values, so name the value line as well.
		where := key
		if i > 0 {
			where = key + " (value line " + strconv.Itoa(i+1) + ")"
		}
		name, val, found := strings.Cut(line, ":")
		if !found {
			return nil, c.Errorf(key, "%s: %q: want \"Name: value\"", where, line)
		}
		name = strings.TrimSpace(name)
		val = strings.TrimSpace(val)
		if !validHeaderName(name) {
			return nil, c.Errorf(key, "%s: %q is not a valid header name", where, name)
		}
		if !validHeaderValue(val) {
			return nil, c.Errorf(key, "%s: value of %s contains control characters", where, name)
		}
		k := textproto.CanonicalMIMEHeaderKey(name)
		if headerForbidden(k, request) {
			return nil, c.Errorf(key, "%s: %s cannot be configured: it is managed by the server", where, k)
		}
		if j, dup := index[k]; dup {
			out[j].vals = append(out[j].vals, val)
			continue
		}
		index[k] = len(out)
		out = append(out, headerField{key: k, vals: []string{val}})
	}
	for i := range out {
		// See headerOps.apply: shared slices must have cap == len.
		out[i].vals = out[i].vals[:len(out[i].vals):len(out[i].vals)]
	}
	return out, nil
}

// validHeaderValue reports whether v may be sent as a field value (as
// golang.org/x/net/http/httpguts.ValidHeaderFieldValue): no control
// characters other than horizontal tab, so no CR/LF header injection.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
