package pipeline

import (
	"encoding/json"
	"html"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The healthcheck factories follow oslo_middleware.healthcheck: an app
// (every request is a check) and a deprecated-in-oslo filter form that
// answers only requests to `path`.

func healthcheckAppFactory() Factory {
	return App("health check endpoint (oslo.middleware healthcheck)", func(c *Config) (http.Handler, error) {
		return newHealthcheck(c, true)
	})
}

func healthcheckFilterFactory() Factory {
	return Filter("answers health checks on `path`, passes the rest (oslo.middleware healthcheck)", func(c *Config) (Middleware, error) {
		h, err := newHealthcheck(c, false)
		if err != nil {
			return nil, err
		}
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !h.matchesPath(r) || !h.accepts(r) {
					next.ServeHTTP(w, r)
					return
				}
				h.serveCheck(w, r)
			})
		}, nil
	})
}

// hcResult is one backend's verdict (oslo's HealthcheckResult).
type hcResult struct {
	Available bool
	Reason    string
	Details   string
}

type hcBackend func(port string) hcResult

type healthcheck struct {
	path          string
	detailed      bool
	appMode       bool
	backends      []hcBackend
	sources       []netip.Prefix
	ignoreProxied bool
}

func newHealthcheck(c *Config, appMode bool) (*healthcheck, error) {
	// oslo.config plumbing that has no meaning here.
	catAcceptOptions(c, "oslo_config_project", "oslo_config_file", "oslo_config_program")

	h := &healthcheck{appMode: appMode}
	h.path = strings.TrimSpace(c.String("path", "/healthcheck"))
	if !strings.HasPrefix(h.path, "/") {
		return nil, c.Errorf("path", "path: must start with /, got %q", h.path)
	}
	var err error
	if h.detailed, err = c.Bool("detailed", false); err != nil {
		return nil, err
	}
	if h.ignoreProxied, err = c.Bool("ignore_proxied_requests", false); err != nil {
		return nil, err
	}
	if h.sources, _, err = catParsePrefixes(c, "allowed_source_ranges", c.List("allowed_source_ranges")); err != nil {
		return nil, err
	}

	disablePath := strings.TrimSpace(c.String("disable_by_file_path", ""))
	backends, explicit := c.Lookup("backends")
	names := SplitList(backends)
	if !explicit && disablePath != "" {
		// Convenience over oslo: naming the file is enough to enable the
		// check it belongs to.
		names = []string{"disable_by_file"}
	}
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		switch name {
		case "disable_by_file":
			h.backends = append(h.backends, disableByFile(disablePath))
		case "disable_by_files_ports":
			ports, err := parsePortPaths(c, "disable_by_file_paths")
			if err != nil {
				return nil, err
			}
			h.backends = append(h.backends, disableByFilesPorts(ports))
		case "enable_by_files":
			paths := c.List("enable_by_file_paths")
			h.backends = append(h.backends, enableByFiles(paths))
		default:
			// stevedore, which oslo uses to load backends, skips unknown
			// names with a warning; do the same.
			catLogger(c).Warn("unknown healthcheck backend ignored", "section", c.Section, "backend", name)
		}
	}
	if seen["disable_by_file"] && seen["enable_by_files"] {
		return nil, c.Errorf("backends", "backends: `enable_by_files` and `disable_by_file` healthcheck middleware should not be configured at once.")
	}
	return h, nil
}

func parsePortPaths(c *Config, key string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range c.List(key) {
		port, p, ok := strings.Cut(item, ":")
		n, err := strconv.Atoi(port)
		if !ok || err != nil || n <= 0 || n > 65535 || p == "" {
			return nil, c.Errorf(key, "%s: want PORT:PATH, got %q", key, item)
		}
		out[strconv.Itoa(n)] = p
	}
	return out, nil
}

func hcFileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func disableByFile(p string) hcBackend {
	return func(string) hcResult {
		switch {
		case p == "":
			return hcResult{Available: true, Reason: "OK", Details: "Path not configured"}
		case hcFileExists(p):
			return hcResult{Available: false, Reason: "DISABLED BY FILE", Details: "Path '" + p + "' was found"}
		default:
			return hcResult{Available: true, Reason: "OK", Details: "Path '" + p + "' was not found"}
		}
	}
}

func disableByFilesPorts(ports map[string]string) hcBackend {
	return func(port string) hcResult {
		p, ok := ports[port]
		if !ok {
			return hcResult{Available: true, Reason: "OK", Details: "No path configured for port " + port}
		}
		return disableByFile(p)(port)
	}
}

func enableByFiles(paths []string) hcBackend {
	return func(string) hcResult {
		for _, p := range paths {
			if !hcFileExists(p) {
				return hcResult{Available: false, Reason: "FILE PATH MISSING", Details: "File path " + p + " is missing"}
			}
		}
		return hcResult{Available: true, Reason: "OK", Details: "Specified file paths are available"}
	}
}

func (h *healthcheck) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.accepts(r) {
		// oslo would hand the request to a nonexistent application; not
		// revealing the endpoint is the useful equivalent.
		http.NotFound(w, r)
		return
	}
	h.serveCheck(w, r)
}

// matchesPath compares the full path (script name + path, webob's
// req.path) with the configured path, without allocating.
func (h *healthcheck) matchesPath(r *http.Request) bool {
	p := r.URL.Path
	if len(p) > len(h.path) {
		return false
	}
	sn := ScriptName(r)
	return len(sn)+len(p) == len(h.path) && strings.HasPrefix(h.path, sn) && h.path[len(sn):] == p
}

// accepts applies allowed_source_ranges and ignore_proxied_requests.
func (h *healthcheck) accepts(r *http.Request) bool {
	if len(h.sources) > 0 {
		ip, ok := catRemoteIP(r)
		if !ok || !catPrefixesContain(h.sources, ip) {
			return false
		}
	}
	if h.ignoreProxied {
		for _, k := range [...]string{"X-Forwarded", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-For", "X-Forwarded-Prefix"} {
			if r.Header.Get(k) != "" {
				return false
			}
		}
	}
	return true
}

func (h *healthcheck) serveCheck(w http.ResponseWriter, r *http.Request) {
	port := catServerPort(r)
	results := make([]hcResult, 0, max(len(h.backends), 1))
	healthy := true
	for _, b := range h.backends {
		res := b(port)
		healthy = healthy && res.Available
		results = append(results, res)
	}
	if len(results) == 0 {
		// oslo answers an empty body when no backend is configured; an
		// explicit OK is what probes and people expect to see.
		results = append(results, hcResult{Available: true, Reason: "OK"})
	}
	status := http.StatusOK
	if !healthy {
		status = http.StatusServiceUnavailable
	}
	hdr := w.Header()
	if r.Method == http.MethodHead {
		// oslo: HEAD answers 204 when healthy, 503 when not, no body.
		if healthy {
			status = http.StatusNoContent
		}
		hdr.Set("Content-Type", "text/plain; charset=UTF-8")
		w.WriteHeader(status)
		return
	}
	var body []byte
	switch hcNegotiate(r.Header.Values("Accept"), hcOffers) {
	case "application/json":
		body = h.jsonBody(results)
		hdr.Set("Content-Type", "application/json; charset=UTF-8")
	case "text/html":
		body = h.htmlBody(results, healthy)
		hdr.Set("Content-Type", "text/html; charset=UTF-8")
	default:
		reasons := make([]string, 0, len(results))
		for _, res := range results {
			if res.Reason != "" {
				reasons = append(reasons, res.Reason)
			}
		}
		body = []byte(strings.Join(reasons, "\n"))
		hdr.Set("Content-Type", "text/plain; charset=UTF-8")
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// hcOffers is oslo's preference order; the first is the fallback.
var hcOffers = []string{"text/plain", "text/html", "application/json"}

func (h *healthcheck) jsonBody(results []hcResult) []byte {
	var body map[string]any
	if h.detailed {
		reasons := make([]map[string]string, 0, len(results))
		for _, res := range results {
			reasons = append(reasons, map[string]string{"reason": res.Reason, "details": res.Details, "class": "HealthcheckResult"})
		}
		hostname, _ := os.Hostname()
		body = map[string]any{
			"detailed":   true,
			"reasons":    reasons,
			"now":        time.Now().UTC().Format(time.RFC3339Nano),
			"hostname":   hostname,
			"go_version": runtime.Version(),
			"platform":   runtime.GOOS + "/" + runtime.GOARCH,
			"goroutines": runtime.NumGoroutine(),
		}
	} else {
		reasons := make([]string, 0, len(results))
		for _, res := range results {
			reasons = append(reasons, res.Reason)
		}
		body = map[string]any{"detailed": false, "reasons": reasons}
	}
	// Map keys marshal sorted, matching oslo's json.dumps(sort_keys=True).
	out, err := json.MarshalIndent(body, "", "    ")
	if err != nil {
		return []byte(`{"detailed": false, "reasons": []}`)
	}
	return out
}

func (h *healthcheck) htmlBody(results []hcResult, healthy bool) []byte {
	var b strings.Builder
	b.WriteString("<HTML>\n<HEAD><TITLE>Healthcheck Status</TITLE></HEAD>\n<BODY>\n")
	if h.detailed {
		b.WriteString("<H1>Server status</H1>\n")
		if hn, err := os.Hostname(); err == nil {
			b.WriteString("<B>Server hostname:</B><PRE>" + html.EscapeString(hn) + "</PRE>\n")
		}
		b.WriteString("<B>Current time:</B><PRE>" + time.Now().UTC().Format(time.RFC3339Nano) + "</PRE>\n")
		b.WriteString("<B>Go version:</B><PRE>" + html.EscapeString(runtime.Version()) + "</PRE>\n")
		b.WriteString("<B>Platform:</B><PRE>" + runtime.GOOS + "/" + runtime.GOARCH + "</PRE>\n<HR></HR>\n")
	}
	b.WriteString("<H2>Result of " + strconv.Itoa(len(results)) + " checks:</H2>\n<TABLE bgcolor=\"#ffffff\" border=\"1\">\n<TBODY>\n<TR>\n")
	if h.detailed {
		b.WriteString("<TH>\nKind\n</TH>\n<TH>\nReason\n</TH>\n<TH>\nDetails\n</TH>\n")
	} else {
		b.WriteString("<TH>\nReason\n</TH>\n")
	}
	b.WriteString("</TR>\n")
	for _, res := range results {
		if res.Reason == "" {
			continue
		}
		b.WriteString("<TR>\n")
		if h.detailed {
			b.WriteString("    <TD>HealthcheckResult</TD>\n")
		}
		b.WriteString("    <TD>" + html.EscapeString(res.Reason) + "</TD>\n")
		if h.detailed {
			b.WriteString("    <TD>" + html.EscapeString(res.Details) + "</TD>\n")
		}
		b.WriteString("</TR>\n")
	}
	b.WriteString("</TBODY>\n</TABLE>\n<HR></HR>\n</BODY>\n</HTML>")
	return []byte(b.String())
}

// hcNegotiate picks the offer with the highest q in the Accept header(s),
// earlier offers winning ties; no header or no acceptable offer yields
// offers[0] (oslo never answers 406 from a health check).
func hcNegotiate(accept []string, offers []string) string {
	if len(accept) == 0 {
		return offers[0]
	}
	best, bestQ := offers[0], 0.0
	for _, offer := range offers {
		q := hcAcceptQ(accept, offer)
		if q > bestQ {
			best, bestQ = offer, q
		}
	}
	return best
}

// hcAcceptQ returns the q value of the most specific media range matching
// offer (type/subtype over type/* over */*).
func hcAcceptQ(accept []string, offer string) float64 {
	otype, _, _ := strings.Cut(offer, "/")
	q, spec := 0.0, -1
	for _, line := range accept {
		for part := range strings.SplitSeq(line, ",") {
			mr, params, _ := strings.Cut(part, ";")
			mr = strings.ToLower(strings.TrimSpace(mr))
			s := -1
			switch {
			case mr == offer:
				s = 2
			case mr == otype+"/*":
				s = 1
			case mr == "*/*":
				s = 0
			}
			if s < spec || s < 0 {
				continue
			}
			pq := 1.0
			for param := range strings.SplitSeq(params, ";") {
				k, v, _ := strings.Cut(param, "=")
				if strings.TrimSpace(strings.ToLower(k)) == "q" {
					if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
						pq = f
					}
				}
			}
			if s > spec || pq > q {
				q, spec = pq, s
			}
		}
	}
	return q
}
