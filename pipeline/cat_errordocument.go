package pipeline

import (
	"bufio"
	"io"
	"mime"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"paddock/internal/regfile"
)

// errordocumentFactory replaces the body of error responses with static
// pages, like Paste's errordocument (whose pages are URLs inside the app;
// here they are files read when the pipeline is built).
func errordocumentFactory() Factory {
	return Filter("replaces the body of error responses (status -> static page file), like Paste's errordocument", newErrorDocument)
}

// errorPageMaxBytes bounds one page: they are held in memory.
const errorPageMaxBytes = 1 << 20

type errorPage struct {
	body   []byte
	ctype  []string // shared, cap == len
	length []string // shared, cap == len
}

type errorDocument struct {
	pages map[int]*errorPage
}

func newErrorDocument(c *Config) (Middleware, error) {
	ctOverride := strings.TrimSpace(c.String("content_type", ""))
	if ctOverride != "" && !validHeaderValue(ctOverride) {
		return nil, c.Errorf("content_type", "content_type: contains control characters")
	}
	ed := &errorDocument{pages: make(map[int]*errorPage)}
	for _, k := range c.Keys() {
		if k == "content_type" {
			continue
		}
		code, err := strconv.Atoi(k)
		if err != nil {
			// Paste's make_errordocument: every other option is a status.
			return nil, c.Errorf(k, "Bad status code: %q (options are status codes with a page file, or content_type)", k)
		}
		if code < 400 || code > 599 {
			return nil, c.Errorf(k, "%d: only error statuses (400-599) can get a page", code)
		}
		v, _ := c.Lookup(k)
		file := strings.TrimSpace(v)
		if file == "" {
			return nil, c.Errorf(k, "%d: empty page file name", code)
		}
		page, err := readErrorPage(c, k, file, ctOverride)
		if err != nil {
			return nil, err
		}
		ed.pages[code] = page
	}
	if len(ed.pages) == 0 {
		catLogger(c).Warn("errordocument without any status = FILE option does nothing", "section", c.Section)
		return func(next http.Handler) http.Handler { return next }, nil
	}
	return ed.wrap, nil
}

func readErrorPage(c *Config, key, file, ctOverride string) (*errorPage, error) {
	path, err := catResolvePath(c, file)
	if err != nil {
		return nil, catErr(c, key, "ValueError", err, "%s: %q", key, file)
	}
	body, err := regfile.Read(path, errorPageMaxBytes)
	if err != nil {
		return nil, catErr(c, key, "OSError", err, "%s: cannot read the page (a file path; Paste's URLs inside the app are not supported)", key)
	}
	ct := ctOverride
	if ct == "" {
		ct = mime.TypeByExtension(filepath.Ext(path))
	}
	if ct == "" {
		ct = http.DetectContentType(body)
	}
	return &errorPage{
		body:   body,
		ctype:  []string{ct},
		length: []string{strconv.Itoa(len(body))},
	}, nil
}

func (ed *errorDocument) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ew := errorDocWriterPool.Get().(*errorDocWriter)
		*ew = errorDocWriter{w: w, ed: ed, head: r.Method == http.MethodHead}
		next.ServeHTTP(ew, r)
		// Reuse is safe: net/http forbids using the writer after
		// ServeHTTP returns. A panic leaves ew to the GC.
		*ew = errorDocWriter{}
		errorDocWriterPool.Put(ew)
	})
}

// errorDocWriter swaps the body of a response whose status has a page:
// the page is written with the status, and the handler's own body is
// discarded. Other responses pass through untouched.
type errorDocWriter struct {
	w        http.ResponseWriter
	ed       *errorDocument
	head     bool
	wrote    bool
	replaced bool
}

var errorDocWriterPool = sync.Pool{New: func() any { return new(errorDocWriter) }}

func (ew *errorDocWriter) Header() http.Header { return ew.w.Header() }

func (ew *errorDocWriter) WriteHeader(code int) {
	if ew.replaced {
		return
	}
	if !ew.wrote && (code < 100 || code >= 200 || code == http.StatusSwitchingProtocols) {
		ew.wrote = true
		if page := ew.ed.pages[code]; page != nil {
			ew.replaced = true
			h := ew.w.Header()
			// The headers that described the handler's body; the
			// others (WWW-Authenticate, Retry-After, Allow,
			// Set-Cookie, ...) still apply.
			for _, k := range [...]string{"Content-Encoding", "Content-Range", "Content-Language", "Etag", "Last-Modified", "Accept-Ranges", "Transfer-Encoding", "Content-Disposition"} {
				delete(h, k)
			}
			h["Content-Type"] = page.ctype
			h["Content-Length"] = page.length
			ew.w.WriteHeader(code)
			if !ew.head {
				_, _ = ew.w.Write(page.body)
			}
			return
		}
	}
	ew.w.WriteHeader(code)
}

func (ew *errorDocWriter) Write(p []byte) (int, error) {
	if !ew.wrote {
		ew.wrote = true
	}
	if ew.replaced {
		return len(p), nil // the handler's body gives way to the page
	}
	return ew.w.Write(p)
}

// ReadFrom keeps net/http's sendfile path for responses passed through.
func (ew *errorDocWriter) ReadFrom(src io.Reader) (int64, error) {
	ew.wrote = true
	if ew.replaced {
		return io.Copy(io.Discard, src)
	}
	if rf, ok := ew.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{ew.w}, src)
}

func (ew *errorDocWriter) Flush() {
	ew.wrote = true
	if fl, ok := ew.w.(http.Flusher); ok {
		fl.Flush()
		return
	}
	_ = http.NewResponseController(ew.w).Flush()
}

func (ew *errorDocWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(ew.w).Hijack()
	if err == nil {
		ew.wrote = true
	}
	return conn, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (ew *errorDocWriter) Unwrap() http.ResponseWriter { return ew.w }
