package pipeline

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
)

// cascadeFactory tries several apps in turn, like Paste's
// paste.cascade:make_cascade.
func cascadeFactory() Factory {
	return Composite("tries apps in order until one does not answer 404 (Paste's cascade)", newCascade)
}

// Defaults; see docs/catalog.md.
const (
	cascadeDefaultBodyBuffer = 64 << 10
)

type cascadeApp struct {
	apps     []http.Handler
	catch    []int    // status codes that pass the request on to the next app
	memLimit int64    // request body bytes kept in memory before spilling to a file
	maxBody  int64    // 0: no limit
	tempDir  string   // "" : os.TempDir()
	names    []string // the app keys, sorted, for messages
}

func newCascade(c *Config, apps AppLoader) (http.Handler, error) {
	a := &cascadeApp{}
	catch := []string{"404"}
	if v, ok := c.Lookup("catch"); ok && strings.TrimSpace(v) != "" {
		catch = SplitList(v)
	}
	for _, s := range catch {
		code, err := strconv.Atoi(s)
		if err != nil || code < 100 || code > 599 {
			return nil, c.Errorf("catch", "catch: %q is not an HTTP status code", s)
		}
		a.catch = append(a.catch, code)
	}
	var err error
	if a.memLimit, err = c.Int64("body_buffer_size", cascadeDefaultBodyBuffer); err != nil {
		return nil, err
	}
	if a.memLimit < 0 {
		return nil, c.Errorf("body_buffer_size", "body_buffer_size: must not be negative, got %d", a.memLimit)
	}
	if a.maxBody, err = c.Int64("max_body_size", 0); err != nil {
		return nil, err
	}
	if a.maxBody < 0 {
		return nil, c.Errorf("max_body_size", "max_body_size: must not be negative, got %d", a.maxBody)
	}
	if d := strings.TrimSpace(c.String("temp_dir", "")); d != "" {
		dir, err := catResolvePath(c, d)
		if err != nil {
			return nil, catErr(c, "temp_dir", "ValueError", err, "temp_dir: %q", d)
		}
		fi, err := os.Stat(dir)
		if err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
		if err != nil {
			return nil, catErr(c, "temp_dir", "OSError", err, "temp_dir: %q", dir)
		}
		a.tempDir = dir
	}

	// As in Paste every other key names an app and must start with
	// "app"; the apps are tried in the sorted order of their keys.
	known := map[string]bool{"catch": true, "body_buffer_size": true, "max_body_size": true, "temp_dir": true}
	for _, k := range c.Keys() {
		if known[k] {
			continue
		}
		v, _ := c.Lookup(k)
		if !strings.HasPrefix(k, "app") {
			return nil, c.Errorf(k, "Bad configuration key %q (=%q); all configuration keys must start with 'app'", k, v)
		}
		a.names = append(a.names, k)
	}
	if len(a.names) == 0 {
		return nil, &Error{Pos: c.Pos, Section: c.Section, Class: "ValueError", Msg: "cascade: no apps (give app1 = NAME, app2 = NAME, ...)"}
	}
	sort.Strings(a.names)
	for _, k := range a.names {
		v, _ := c.Lookup(k)
		h, err := urlmapLoadApp(c, apps, k, strings.TrimSpace(v))
		if err != nil {
			return nil, err
		}
		a.apps = append(a.apps, h)
	}
	return a, nil
}

func (a *cascadeApp) caught(code int) bool {
	for _, c := range a.catch {
		if c == code {
			return true
		}
	}
	return false
}

func (a *cascadeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	last := len(a.apps) - 1
	if last == 0 {
		a.apps[0].ServeHTTP(w, r)
		return
	}
	var body *cascadeBody
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		if a.maxBody > 0 && r.ContentLength > a.maxBody {
			catWriteText(w, http.StatusRequestEntityTooLarge, "413 Request Entity Too Large\n")
			return
		}
		body = &cascadeBody{src: r.Body, memLimit: a.memLimit, maxBody: a.maxBody, tempDir: a.tempDir}
		defer body.close()
	}
	// A urlmap inside an app that is passed over must not leave its
	// route behind for the metrics.
	meta := requestMeta(r)
	var route string
	if meta.route != nil {
		route = *meta.route
	}
	base := w.Header().Clone()
	for _, app := range a.apps[:last] {
		r2 := r.Clone(r.Context())
		if body != nil {
			r2.Body = &cascadeReader{b: body}
			r2.GetBody = nil
		}
		cw := &cascadeWriter{w: w, a: a, header: base.Clone()}
		app.ServeHTTP(cw, r2)
		if !cw.decided {
			// Returned without writing: an empty 200, unless 200 is caught.
			cw.decide(http.StatusOK)
		}
		if !cw.caught {
			return
		}
		if meta.route != nil {
			*meta.route = route
		}
	}
	if body != nil {
		r = r.WithContext(r.Context())
		r.Body = &cascadeReader{b: body, final: true}
		r.GetBody = nil
	}
	a.apps[last].ServeHTTP(w, r)
}

// cascadeWriter holds an app's response until its status is known: a
// caught status discards it, any other goes through unbuffered.
type cascadeWriter struct {
	w       http.ResponseWriter
	a       *cascadeApp
	header  http.Header // the app's view of the headers until decided
	decided bool
	caught  bool
}

func (cw *cascadeWriter) Header() http.Header {
	if cw.decided && !cw.caught {
		return cw.w.Header()
	}
	return cw.header
}

// decide settles the response on its (final) status.
func (cw *cascadeWriter) decide(code int) {
	cw.decided = true
	if cw.a.caught(code) {
		cw.caught = true
		return
	}
	h := cw.w.Header()
	for k := range h {
		if _, ok := cw.header[k]; !ok {
			delete(h, k)
		}
	}
	for k, v := range cw.header {
		h[k] = v
	}
	cw.w.WriteHeader(code)
}

func (cw *cascadeWriter) WriteHeader(code int) {
	if cw.decided {
		if !cw.caught {
			cw.w.WriteHeader(code) // superfluous: let the server say so
		}
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational (103 Early Hints): dropped, as the app may still
		// be passed over.
		return
	}
	cw.decide(code)
}

func (cw *cascadeWriter) Write(p []byte) (int, error) {
	if !cw.decided {
		cw.decide(http.StatusOK)
	}
	if cw.caught {
		return len(p), nil
	}
	return cw.w.Write(p)
}

// FlushError serves http.ResponseController and Flush; flushing commits
// the status, as it does on the server's writer.
func (cw *cascadeWriter) FlushError() error {
	if !cw.decided {
		cw.decide(http.StatusOK)
	}
	if cw.caught {
		return nil
	}
	return http.NewResponseController(cw.w).Flush()
}

func (cw *cascadeWriter) Flush() { _ = cw.FlushError() }

// Hijack hands the connection over: the app has answered.
func (cw *cascadeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if cw.decided && cw.caught {
		return nil, nil, errors.New("cascade: the response was already passed over")
	}
	conn, brw, err := http.NewResponseController(cw.w).Hijack()
	if err == nil {
		cw.decided = true
	}
	return conn, brw, err
}

// Unwrap lets http.ResponseController reach the server's writer for
// deadlines.
func (cw *cascadeWriter) Unwrap() http.ResponseWriter { return cw.w }

// cascadeBody records the request body as the apps read it, so each app
// can read it from the start: up to memLimit bytes in memory, the rest in
// an unlinked temporary file. Nothing is read that no app asks for.
type cascadeBody struct {
	src      io.Reader
	memLimit int64
	maxBody  int64
	tempDir  string

	mem  []byte
	file *os.File
	size int64 // bytes read from the source (all recorded but the last app's)
	err  error // sticky: the source's io.EOF, a read or record error, or the size limit
}

func (b *cascadeBody) close() {
	if b.file != nil {
		b.file.Close()
	}
}

// record appends p to the recording.
func (b *cascadeBody) record(p []byte) error {
	if b.file == nil && b.size+int64(len(p)) > b.memLimit {
		f, err := os.CreateTemp(b.tempDir, "paddock-cascade-*")
		if err != nil {
			return fmt.Errorf("cascade: buffering the request body: %w", err)
		}
		// Unlinked at once: the data lives as long as the descriptor.
		_ = os.Remove(f.Name())
		b.file = f
		if _, err := f.Write(b.mem); err != nil {
			return fmt.Errorf("cascade: buffering the request body: %w", err)
		}
		b.mem = nil
	}
	if b.file != nil {
		if _, err := b.file.Write(p); err != nil {
			return fmt.Errorf("cascade: buffering the request body: %w", err)
		}
	} else {
		b.mem = append(b.mem, p...)
	}
	b.size += int64(len(p))
	return nil
}

// cascadeReader is one app's view of the body. The last app's reader
// (final) replays what was recorded and then reads the rest straight from
// the source, unrecorded: no app comes after it.
type cascadeReader struct {
	b     *cascadeBody
	off   int64
	final bool
}

func (cr *cascadeReader) Read(p []byte) (int, error) {
	b := cr.b
	if len(p) == 0 {
		return 0, nil
	}
	if cr.off < b.size {
		// Replay what an earlier read recorded.
		want := min(int64(len(p)), b.size-cr.off)
		var n int
		var err error
		if b.file != nil {
			n, err = b.file.ReadAt(p[:want], cr.off)
			if err == io.EOF && n > 0 {
				err = nil
			}
		} else {
			n = copy(p, b.mem[cr.off:cr.off+want])
		}
		cr.off += int64(n)
		return n, err
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.maxBody > 0 {
		// One byte more than allowed, to see whether the body is larger.
		p = p[:min(int64(len(p)), b.maxBody-b.size+1)]
	}
	n, err := b.src.Read(p)
	if b.maxBody > 0 && b.size+int64(n) > b.maxBody {
		n = int(b.maxBody - b.size)
		err = &http.MaxBytesError{Limit: b.maxBody}
	}
	if n > 0 && cr.final {
		b.size += int64(n)
		cr.off += int64(n)
	} else if n > 0 {
		if rerr := b.record(p[:n]); rerr != nil {
			b.err = rerr
			return 0, rerr
		}
		cr.off += int64(n)
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// Close does not close the request body: the next app may need it, and
// the server closes it.
func (cr *cascadeReader) Close() error { return nil }
