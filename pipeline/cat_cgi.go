package pipeline

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// cgiFactory runs a CGI script per request (RFC 3875) with net/http/cgi,
// like Paste's paste.cgiapp:make_cgi_application.
func cgiFactory() Factory {
	return App("runs a CGI script per request (Paste's cgiapp)", newCGIApp)
}

// cgiMaxStderrLine bounds one logged line of a script's stderr; longer
// lines are logged in pieces.
const cgiMaxStderrLine = 4096

type cgiApp struct {
	base        cgi.Handler // Path, Dir, Args, InheritEnv, Logger; Env and Stderr are set per request
	userEnv     []string    // the env option, appended last so it wins
	queryString string      // Paste's query_string, appended to QUERY_STRING
	log         hclog.Logger
}

func newCGIApp(c *Config) (http.Handler, error) {
	script := strings.TrimSpace(c.String("script", ""))
	if script == "" {
		return nil, c.Errorf("script", "script: required option is missing")
	}
	abs, err := cgiFindScript(c, script)
	if err != nil {
		return nil, err
	}
	// LookPath on a path with a slash checks exactly that file: a regular
	// file (not a directory) this process may execute (faccessat with
	// the effective ids), which is what each request will need.
	if _, err := exec.LookPath(abs); err != nil {
		return nil, catErr(c, "script", "OSError", unwrapExecError(err), "script: %q is not an executable file", abs)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.Mode().IsRegular() {
		if err == nil {
			err = errors.New("not a regular file")
		}
		return nil, catErr(c, "script", "OSError", err, "script: %q", abs)
	}
	a := &cgiApp{log: catLogger(c)}
	a.base.Path = abs

	if d := strings.TrimSpace(c.String("dir", "")); d != "" {
		dir, err := catResolvePath(c, d)
		if err != nil {
			return nil, catErr(c, "dir", "ValueError", err, "dir: %q", d)
		}
		fi, err := os.Stat(dir)
		if err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
		if err != nil {
			return nil, catErr(c, "dir", "OSError", err, "dir: %q", dir)
		}
		a.base.Dir = dir
	}
	if v, ok := c.Lookup("args"); ok {
		a.base.Args = strings.Fields(v)
	}
	if v, ok := c.Lookup("env"); ok {
		for line := range strings.SplitSeq(v, "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			name, _, found := strings.Cut(line, "=")
			if !found || !cgiValidEnvName(name) || strings.IndexByte(line, 0) >= 0 {
				return nil, c.Errorf("env", "env: want NAME=value lines, got %q", line)
			}
			a.userEnv = append(a.userEnv, line)
		}
	}
	for _, name := range c.List("inherit_env") {
		if !cgiValidEnvName(name) {
			return nil, c.Errorf("inherit_env", "inherit_env: %q is not an environment variable name", name)
		}
		a.base.InheritEnv = append(a.base.InheritEnv, name)
	}
	all, err := c.Bool("include_os_environ", false)
	if err != nil {
		return nil, err
	}
	if all {
		for _, kv := range os.Environ() {
			if name, _, ok := strings.Cut(kv, "="); ok && name != "" {
				a.base.InheritEnv = append(a.base.InheritEnv, name)
			}
		}
	}
	a.queryString = strings.TrimSpace(c.String("query_string", ""))
	a.base.Logger = a.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error})
	return a, nil
}

// cgiFindScript resolves the script option: an absolute path as is; a
// relative one in the directories of path (Paste's option, separated by
// ':' like $PATH) when it is set, else relative to the config file.
func cgiFindScript(c *Config, script string) (string, error) {
	if filepath.IsAbs(script) {
		return filepath.Clean(script), nil
	}
	search, ok := c.Lookup("path")
	if !ok || strings.TrimSpace(search) == "" {
		p, err := catResolvePath(c, script)
		if err != nil {
			return "", catErr(c, "script", "ValueError", err, "script: %q", script)
		}
		return p, nil
	}
	var tried []string
	for dir := range strings.SplitSeq(search, ":") {
		dir = strings.TrimSpace(dir)
		if dir == "" {
			continue
		}
		d, err := catResolvePath(c, dir)
		if err != nil {
			return "", catErr(c, "path", "ValueError", err, "path: %q", dir)
		}
		p := filepath.Join(d, script)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, d)
	}
	return "", c.Errorf("script", "script: %q not found in path %q", script, strings.Join(tried, ":"))
}

// unwrapExecError drops exec.Error's repetition of the file name.
func unwrapExecError(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

func cgiValidEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if b == '=' || b <= ' ' || b >= 0x7f {
			return false
		}
	}
	return true
}

func (a *cgiApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := a.base
	sn := ScriptName(r)
	pathInfo := r.URL.Path
	origPath, _, _ := strings.Cut(r.RequestURI, "?")
	if pathInfo == "/" && sn != "" && strings.HasPrefix(origPath, "/") && !strings.HasSuffix(origPath, "/") {
		// urlmap makes an empty remainder "/"; CGI, like WSGI, wants
		// PATH_INFO empty when the request named the mount itself.
		pathInfo = ""
	}
	requestURI := r.RequestURI
	if !strings.HasPrefix(requestURI, "/") {
		// Absolute-form ("http://h/p") or none (an in-process request).
		requestURI = (&url.URL{Path: sn + r.URL.Path}).EscapedPath() + cgiQuery(r.URL.RawQuery)
	}
	env := make([]string, 0, 8+len(a.userEnv))
	// net/http/cgi derives these from the request URL alone; paddock's
	// values follow the mount (SCRIPT_NAME/PATH_INFO), the listener
	// (SERVER_PORT) and a scheme established by http_proxy_to_wsgi.
	env = append(env,
		"SERVER_SOFTWARE=paddock",
		"SERVER_PROTOCOL="+r.Proto,
		"SCRIPT_NAME="+sn,
		"PATH_INFO="+pathInfo,
		"REQUEST_URI="+requestURI,
		"SERVER_PORT="+catServerPort(r),
	)
	if catRequestScheme(r) == "https" {
		env = append(env, "HTTPS=on", "REQUEST_SCHEME=https")
	} else {
		env = append(env, "REQUEST_SCHEME=http")
	}
	if a.queryString != "" {
		qs := r.URL.RawQuery
		if qs != "" {
			qs += "&"
		}
		env = append(env, "QUERY_STRING="+qs+a.queryString)
	}
	h.Env = append(env, a.userEnv...)
	stderr := &cgiStderr{log: a.log, script: h.Path}
	h.Stderr = stderr
	cw := &cgiWriter{ResponseWriter: w}
	h.ServeHTTP(cw, r)
	stderr.flush()
	if !cw.wrote {
		// net/http/cgi returns without an answer on a malformed Status
		// line, which the server would send as an empty 200.
		a.log.Error("cgi: malformed response from the script", "script", h.Path)
		catWriteText(w, http.StatusBadGateway, "502 Bad Gateway\n")
	}
}

func cgiQuery(raw string) string {
	if raw == "" {
		return ""
	}
	return "?" + raw
}

// cgiWriter records whether net/http/cgi answered at all.
type cgiWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *cgiWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *cgiWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *cgiWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// cgiStderr logs a script's standard error one line at a time. exec.Cmd
// writes to it from one goroutine, and Wait (which net/http/cgi's
// ServeHTTP does before returning) waits for that goroutine.
type cgiStderr struct {
	log    hclog.Logger
	script string
	buf    []byte
}

func (s *cgiStderr) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := cgiMaxStderrLine - len(s.buf); len(chunk) > room {
			s.buf = append(s.buf, chunk[:room]...)
			s.flush()
			p = p[room:]
			continue
		}
		s.buf = append(s.buf, chunk...)
		if i < 0 {
			break
		}
		s.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (s *cgiStderr) flush() {
	line := strings.TrimRight(string(s.buf), "\r")
	s.buf = s.buf[:0]
	if line != "" {
		s.log.Warn("cgi stderr", "script", s.script, "line", line)
	}
}
