package pipeline

import (
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
)

// staticFactory serves files below a directory, like Paste's
// paste.urlparser:make_static (StaticURLParser).
func staticFactory() Factory {
	return App("serves files below document_root (Paste's StaticURLParser)", newStaticApp)
}

func newStaticApp(c *Config) (http.Handler, error) {
	docRoot := strings.TrimSpace(c.String("document_root", ""))
	if docRoot == "" {
		return nil, c.Errorf("document_root", "document_root: required option is missing")
	}
	dir, err := catResolvePath(c, docRoot)
	if err != nil {
		return nil, catErr(c, "document_root", "ValueError", err, "document_root: %q", docRoot)
	}
	index := strings.TrimSpace(c.String("index", "index.html"))
	if index == "" || index == "." || index == ".." || strings.ContainsAny(index, "/\\\x00") {
		return nil, c.Errorf("index", "index: must be a plain file name, got %q", index)
	}
	maxAge := -1
	if v, ok := c.Lookup("cache_max_age"); ok && strings.TrimSpace(v) != "" {
		if maxAge, err = c.Int("cache_max_age", -1); err != nil {
			return nil, err
		}
		if maxAge < 0 {
			return nil, c.Errorf("cache_max_age", "cache_max_age: must not be negative, got %d", maxAge)
		}
	}
	// os.Root confines every lookup to the directory, including symlinks
	// that would resolve outside it, so traversal is prevented by the
	// kernel-facing layer rather than by string checks alone.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, catErr(c, "document_root", "OSError", err, "document_root: cannot open %q", dir)
	}
	c.AddCloser(root)
	s := &staticApp{root: root, index: index}
	if maxAge >= 0 {
		s.cacheControl = []string{"max-age=" + strconv.Itoa(maxAge)}
	}
	return s, nil
}

type staticApp struct {
	root         *os.Root
	index        string
	cacheControl []string // nil: no Cache-Control header
}

func (s *staticApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		catWriteText(w, http.StatusMethodNotAllowed, "405 Method Not Allowed\n")
		return
	}
	p := r.URL.Path
	if p == "" {
		p = "/"
	}
	// Refuse rather than clean away "..": a request that tries to climb
	// is never legitimate, and answering 404 does not reveal the layout.
	if p[0] != '/' || strings.IndexByte(p, 0) >= 0 || catHasDotDot(p) {
		http.NotFound(w, r)
		return
	}
	rel := strings.TrimPrefix(path.Clean(p), "/")
	if rel == "" {
		rel = "."
	}
	fi, err := s.root.Stat(rel)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if fi.IsDir() {
		if !strings.HasSuffix(p, "/") {
			// Like Paste and Apache: relative links in the index only
			// resolve when the directory URL ends in a slash.
			loc := (&url.URL{Path: ScriptName(r) + p + "/"}).EscapedPath()
			if r.URL.RawQuery != "" {
				loc += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, loc, http.StatusMovedPermanently)
			return
		}
		rel = path.Join(rel, s.index)
	} else if strings.HasSuffix(p, "/") {
		http.NotFound(w, r)
		return
	}
	f, err := s.root.Open(rel)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	// Stat the open file, not the name: the name may have been replaced
	// since, and only regular files are served (no devices or FIFOs).
	fi, err = f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	if s.cacheControl != nil {
		h["Cache-Control"] = s.cacheControl
	}
	if _, ok := h["Etag"]; !ok {
		h["Etag"] = []string{`"` + strconv.FormatInt(fi.ModTime().UnixNano(), 36) + "-" + strconv.FormatInt(fi.Size(), 36) + `"`}
	}
	// ServeContent handles HEAD, Range, If-Modified-Since, If-None-Match
	// and the Content-Type from the extension.
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// catHasDotDot reports whether p has a ".." path segment (either
// separator, so the check does not depend on the platform).
func catHasDotDot(p string) bool {
	if !strings.Contains(p, "..") {
		return false
	}
	for seg := range strings.FieldsFuncSeq(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if seg == ".." {
			return true
		}
	}
	return false
}
