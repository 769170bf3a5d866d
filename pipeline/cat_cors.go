package pipeline

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// corsFactory implements oslo_middleware.cors for paste-configured origins.
func corsFactory() Factory {
	return Filter("Cross-Origin Resource Sharing headers and preflight (oslo.middleware cors)", newCORS)
}

// corsSimpleHeaders are always allowed in preflight requests (oslo's
// CORS.simple_headers), lower case.
var corsSimpleHeaders = []string{"accept", "accept-language", "content-type", "cache-control", "content-language", "expires", "last-modified", "pragma"}

type corsFilter struct {
	origins  map[string]bool
	wildcard bool
	methods  map[string]bool
	headers  map[string]bool // lower case, includes the simple headers

	// Header values built once and shared by every response; the header
	// map never modifies them in place.
	credentials []string // nil when allow_credentials is false
	expose      []string // nil when expose_headers is empty
	maxAge      []string // nil when max_age is 0
}

var (
	corsVaryOrigin = []string{"Origin"}
	corsTrue       = []string{"true"}
	corsStar       = []string{"*"}
)

func newCORS(c *Config) (Middleware, error) {
	catAcceptOptions(c, "oslo_config_project", "oslo_config_file", "oslo_config_program")
	f := &corsFilter{origins: map[string]bool{}, methods: map[string]bool{}, headers: map[string]bool{}}
	for _, o := range c.List("allowed_origin") {
		if o == "*" {
			f.wildcard = true
			continue
		}
		if o != "null" {
			u, err := url.Parse(o)
			if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
				// An origin is scheme://host[:port]; anything else can
				// never equal a browser's Origin header.
				return nil, c.Errorf("allowed_origin", "allowed_origin: %q is not an origin (scheme://host[:port])", o)
			}
			o = strings.TrimSuffix(o, "/")
		}
		f.origins[o] = true
	}
	if !f.wildcard && len(f.origins) == 0 {
		catLogger(c).Warn("cors filter without allowed_origin: no cross-origin request will be allowed", "section", c.Section)
	}
	creds, err := c.Bool("allow_credentials", true)
	if err != nil {
		return nil, err
	}
	if creds {
		f.credentials = corsTrue
	}
	if exp := c.List("expose_headers"); len(exp) > 0 {
		f.expose = []string{strings.Join(exp, ",")}
	}
	maxAge, err := c.Int("max_age", 3600)
	if err != nil {
		return nil, err
	}
	if maxAge < 0 {
		return nil, c.Errorf("max_age", "max_age: must not be negative, got %d", maxAge)
	}
	if maxAge > 0 {
		f.maxAge = []string{strconv.Itoa(maxAge)}
	}
	methods := []string{"GET", "PUT", "POST", "DELETE", "PATCH"}
	if _, ok := c.Lookup("allow_methods"); ok {
		methods = c.List("allow_methods")
	}
	for _, m := range methods {
		f.methods[strings.ToUpper(m)] = true
	}
	for _, h := range c.List("allow_headers") {
		f.headers[strings.ToLower(h)] = true
	}
	for _, h := range corsSimpleHeaders {
		f.headers[h] = true
	}
	return f.wrap, nil
}

// allowedOrigin returns the Access-Control-Allow-Origin value for origin:
// the origin itself when listed, "*" under a wildcard (as oslo does).
func (f *corsFilter) allowedOrigin(origin string) ([]string, bool) {
	if f.origins[origin] {
		return nil, true
	}
	if f.wildcard {
		return corsStar, true
	}
	return nil, false
}

func (f *corsFilter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header["Origin"]
		if len(origin) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodOptions && len(r.Header["Access-Control-Request-Method"]) > 0 {
			f.preflight(w, r, origin[0])
			return
		}
		if allow, ok := f.allowedOrigin(origin[0]); ok {
			h := w.Header()
			h["Vary"] = appendVaryOrigin(h["Vary"])
			if allow == nil {
				// Reuse the request's value instead of allocating: header
				// maps replace or append to (cap-limited) slices, never
				// write into them.
				allow = origin[:1:1]
			}
			h["Access-Control-Allow-Origin"] = allow
			if f.credentials != nil {
				h["Access-Control-Allow-Credentials"] = f.credentials
			}
			if f.expose != nil {
				h["Access-Control-Expose-Headers"] = f.expose
			}
		}
		next.ServeHTTP(w, r)
	})
}

func appendVaryOrigin(v []string) []string {
	if len(v) == 0 {
		return corsVaryOrigin
	}
	for _, s := range v {
		for part := range strings.SplitSeq(s, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "Origin") {
				return v
			}
		}
	}
	return append(v[:len(v):len(v)], "Origin")
}

// preflight answers a CORS preflight request itself: it has no meaning to
// the application. The answer is 200 in every case; the CORS headers are
// only present when origin, method and headers are all permitted, which
// is how the browser learns the request is refused (CORS section 6.2).
func (f *corsFilter) preflight(w http.ResponseWriter, r *http.Request, origin string) {
	h := w.Header()
	h["Vary"] = appendVaryOrigin(h["Vary"])
	h["Content-Length"] = []string{"0"}
	allow, ok := f.allowedOrigin(origin)
	method := r.Header.Get("Access-Control-Request-Method")
	if !ok || !f.methods[method] {
		w.WriteHeader(http.StatusOK)
		return
	}
	var requested []string
	for _, line := range r.Header.Values("Access-Control-Request-Headers") {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !f.headers[strings.ToLower(name)] {
				w.WriteHeader(http.StatusOK)
				return
			}
			requested = append(requested, name)
		}
	}
	if allow == nil {
		allow = []string{origin}
	}
	h["Access-Control-Allow-Origin"] = allow
	if f.credentials != nil {
		h["Access-Control-Allow-Credentials"] = f.credentials
	}
	if f.maxAge != nil {
		h["Access-Control-Max-Age"] = f.maxAge
	}
	h["Access-Control-Allow-Methods"] = []string{method}
	if len(requested) > 0 {
		h["Access-Control-Allow-Headers"] = []string{strings.Join(requested, ",")}
	}
	w.WriteHeader(http.StatusOK)
}
