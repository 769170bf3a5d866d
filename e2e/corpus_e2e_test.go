package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"paddock/control"
)

// The hostile-request corpus (issue 8): every request of
// gunicorn's and llhttp's test suites, sent to the real server in one
// write and in random small pieces, then half-closed. The full corpus is
// ../shared/corpora/http (see its README); e2e/testdata/corpus is the subset
// used without it.

// corpusCase is one .bin of either manifest.
type corpusCase struct {
	set, name string
	wire      []byte
	// class: "invalid" (gunicorn invalid with default settings, llhttp
	// error), "valid" (gunicorn valid with default settings, llhttp ok and
	// complete) or "other" (needs a gunicorn setting paddock does not
	// have, llhttp benign or incomplete): only the rules every case
	// follows apply to those.
	class    string
	requests []corpusRequest // gunicorn valid: what the app must see
	messages int             // llhttp ok: requests in the stream
	baseline []string        // statuses plain net/http answered
}

type corpusRequest struct {
	Method  string      `json:"method"`
	URI     string      `json:"uri"`
	Headers [][2]string `json:"headers"`
	Body    struct {
		Text   *string `json:"text"`
		Base64 *string `json:"base64"`
	} `json:"body"`
}

func (r corpusRequest) body() string {
	switch {
	case r.Body.Text != nil:
		return *r.Body.Text
	case r.Body.Base64 != nil:
		b, _ := base64.StdEncoding.DecodeString(*r.Body.Base64)
		return string(b)
	}
	return ""
}

type observed struct {
	Status []string `json:"status"`
}

// loadCorpus reads ../shared/corpora/http when it is there, else
// testdata/corpus.
func loadCorpus(t *testing.T) (string, []corpusCase) {
	t.Helper()
	root := filepath.Join(repoRoot, "..", "shared", "corpora", "http")
	if _, err := os.Stat(filepath.Join(root, "gunicorn", "manifest.json")); err != nil {
		root = filepath.Join("testdata", "corpus")
	}
	var out []corpusCase
	var g struct {
		Cases []struct {
			Name     string          `json:"name"`
			Kind     string          `json:"kind"`
			Wire     string          `json:"wire"`
			Cfg      map[string]any  `json:"gunicorn_cfg"`
			Requests []corpusRequest `json:"requests"`
			Go       observed        `json:"go_net_http_observed"`
		} `json:"cases"`
	}
	readJSON(t, filepath.Join(root, "gunicorn", "manifest.json"), &g)
	for _, c := range g.Cases {
		cc := corpusCase{set: "gunicorn", name: c.Name, wire: readWire(t, root, "gunicorn", c.Wire), baseline: c.Go.Status, class: "other"}
		if len(c.Cfg) == 0 {
			cc.class = c.Kind
			if c.Kind == "valid" {
				cc.requests = c.Requests
			}
		}
		out = append(out, cc)
	}
	var l struct {
		Cases []struct {
			Name       string   `json:"name"`
			Wire       string   `json:"wire"`
			Expect     string   `json:"llhttp_expect"`
			Messages   int      `json:"messages_completed"`
			Incomplete bool     `json:"incomplete"`
			Go         observed `json:"go_net_http_observed"`
		} `json:"cases"`
	}
	readJSON(t, filepath.Join(root, "llhttp", "manifest.json"), &l)
	for _, c := range l.Cases {
		cc := corpusCase{set: "llhttp", name: c.Name, wire: readWire(t, root, "llhttp", c.Wire), baseline: c.Go.Status, class: "other"}
		switch {
		case c.Expect == "error":
			cc.class = "invalid"
		case c.Expect == "ok" && !c.Incomplete:
			cc.class, cc.messages = "valid", c.Messages
		}
		out = append(out, cc)
	}
	if len(out) == 0 {
		t.Fatalf("no cases in %s", root)
	}
	return root, out
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readWire(t *testing.T, root, set, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, set, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bodyLevel are invalid cases whose head is valid and whose fault is in
// the chunked body (a bad chunk size or line end, a forbidden trailer): a
// server reads a body only as the app asks for it, so the head reaches the
// app and its body read fails at the fault (strict_http). The echo app (a
// CGI script) cannot tell a failed body read from the end of the body, so
// it may answer 2xx with the part before the fault. What must hold: at
// most that one request reaches the app and nothing after the fault is
// taken as another request. (Most of these lack Host, so net/http refuses
// them at the head anyway.)
var bodyLevel = map[string]bool{
	"gunicorn/chunked_01":                            true,
	"gunicorn/chunked_09":                            true,
	"gunicorn/chunked_10":                            true,
	"gunicorn/chunked_11":                            true,
	"gunicorn/chunked_12":                            true,
	"gunicorn/chunked_13":                            true,
	"gunicorn/chunked_14":                            true,
	"gunicorn/rfc9110_trailer_forbidden_cl_01":       true,
	"gunicorn/rfc9110_trailer_forbidden_host_01":     true,
	"gunicorn/rfc9110_trailer_forbidden_te_01":       true,
	"gunicorn/rfc9112_chunked_size_minus_sign_01":    true,
	"gunicorn/rfc9112_chunked_size_plus_sign_01":     true,
	"gunicorn/rfc9112_chunked_missing_final_crlf_01": true,
	"llhttp/transfer-encoding_008":                   true,
	"llhttp/transfer-encoding_009":                   true,
	"llhttp/transfer-encoding_011":                   true,
	"llhttp/transfer-encoding_020":                   true,
	"llhttp/transfer-encoding_021":                   true,
	"llhttp/transfer-encoding_022":                   true,
	"llhttp/transfer-encoding_023":                   true,
	"llhttp/transfer-encoding_024":                   true,
}

// appCannotShow says why a valid case the app should have answered could
// not be shown by it ("" when it could):
//   - net/http/cgi refuses a chunked request body (400) before running
//     the script: the framing of these is checked by httpguard's tests
//     against net/http's parser instead;
//   - net/http answers OPTIONS * itself, without a handler.
func appCannotShow(c corpusCase, st []string, resp []byte, hits int) string {
	for _, req := range c.requests {
		for _, h := range req.Headers {
			if strings.EqualFold(h[0], "Transfer-Encoding") && hits == 1 && slices.Equal(st, []string{"400"}) &&
				bytes.Contains(resp, []byte(cgiNoChunked)) {
				return "net/http/cgi refuses chunked request bodies"
			}
		}
		if req.Method == "OPTIONS" && req.URI == "*" && hits == 0 && slices.Equal(st, []string{"200"}) {
			return "net/http answers OPTIONS * itself"
		}
	}
	return ""
}

// cgiNoChunked is net/http/cgi's answer to a chunked request body.
const cgiNoChunked = "Chunked request bodies are not supported by CGI"

// corpusEcho is the app: a CGI script that logs each request it gets,
// with the client's port, to a file, and answers with what it got.
const corpusEcho = `#!/bin/sh
printf '%%s %%s %%s\n' "$REMOTE_PORT" "$REQUEST_METHOD" "$REQUEST_URI" >> %s
printf 'Content-Type: application/octet-stream\r\n\r\n'
printf 'ECHO-APP\nmethod=%%s\nuri=%%s\n' "$REQUEST_METHOD" "$REQUEST_URI"
env | grep '^HTTP_' | sort
printf 'body:'
exec cat
`

// corpusRun is one case sent one way.
type corpusRun struct {
	c        corpusCase
	mode     string // "whole" or "pieces"
	port     int    // the client's port: the app logs it
	resp     []byte
	hung     bool
	alive    error // the normal request after it
	dialFail error
}

func TestCorpusHostileRequests(t *testing.T) {
	root, cases := loadCorpus(t)
	dir := t.TempDir()
	hitsFile := filepath.Join(dir, "hits")
	script := filepath.Join(dir, "echo.sh")
	if err := os.WriteFile(script, fmt.Appendf(nil, corpusEcho, hitsFile), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sock := filepath.Join(dir, "ctl.sock")
	_, stderr, _ := startPaddock(t, fmt.Sprintf(`[server:main]
use = egg:paddock#http
bind = %s
workers = 2
timeout = 10
graceful_timeout = 3

[pipeline:main]
pipeline = health echo

[filter:health]
use = egg:paddock#healthcheck_filter

[app:echo]
use = egg:paddock#cgi
script = %s
`, addr, script), "--ctl-socket", sock)
	client := &control.Client{Path: sock, Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	var before []control.Worker
	waitFor(t, "2 ready workers", 15*time.Second, func() bool {
		ws, err := client.Workers(t.Context())
		if err != nil || len(ws) != 2 {
			return false
		}
		for _, w := range ws {
			if w.State != "ready" {
				return false
			}
		}
		before = ws
		return healthy(addr) == nil
	})

	// Every case both ways, a few connections at once.
	var runs []*corpusRun
	for _, c := range cases {
		for _, mode := range []string{"whole", "pieces"} {
			runs = append(runs, &corpusRun{c: c, mode: mode})
		}
	}
	jobs := make(chan *corpusRun)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for r := range jobs {
				r.send(addr)
				r.alive = healthy(addr)
			}
		})
	}
	start := time.Now()
	for _, r := range runs {
		jobs <- r
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)

	// The app logs a request before answering it; a script still running
	// after its client went away logs it a moment later.
	time.Sleep(300 * time.Millisecond)
	hits := readHits(t, hitsFile)

	type tally struct{ runs, ok, refused, reached, exception, failed int }
	tallies := map[string]*tally{}
	exceptions := map[string][]string{} // why -> cases
	var diffs []string
	for _, r := range runs {
		key := r.c.class + " " + r.mode
		if tallies[key] == nil {
			tallies[key] = &tally{}
		}
		ty := tallies[key]
		ty.runs++
		st, echoes, perr := parseResponses(r.resp, r.c.wire)
		nhits := len(hits[r.port])
		if bytes.Contains(r.resp, []byte(cgiNoChunked)) {
			nhits++ // the app (net/http/cgi) got it, and refused its body
		}
		fail := func(format string, args ...any) {
			ty.failed++
			t.Errorf("%s/%s (%s): %s\nstatuses %v, app hits %d, response %q", r.c.set, r.c.name, r.mode, fmt.Sprintf(format, args...), st, nhits, truncate(r.resp, 600))
		}
		switch {
		case r.dialFail != nil:
			fail("dial: %v", r.dialFail)
			continue
		case r.hung:
			fail("no EOF within the deadline (a hang)")
			continue
		case r.alive != nil:
			fail("the server did not answer a normal request after it: %v", r.alive)
			continue
		}
		if bad := slices.IndexFunc(st, func(s string) bool { return s[0] == '5' && s != "501" && s != "505" }); bad >= 0 {
			fail("a %s", st[bad])
			continue
		}
		if i := slices.IndexFunc(st, func(s string) bool { return s[0] >= '4' }); i >= 0 && i != len(st)-1 {
			// After an error the connection must close: whatever
			// followed could be a request smuggled behind it.
			fail("answers after a %s", st[i])
			continue
		}
		if r.mode == "whole" && !slices.Equal(st, r.c.baseline) {
			diffs = append(diffs, fmt.Sprintf("%s/%s %s: net/http %v, paddock %v", r.c.set, r.c.name, r.c.class, r.c.baseline, st))
		}
		switch r.c.class {
		case "invalid":
			if bodyLevel[r.c.set+"/"+r.c.name] {
				if nhits > 1 || len(st) > 1 {
					fail("a fault in the body: at most its own head may reach the app, and nothing after it")
					continue
				}
				if nhits == 1 {
					ty.reached++
				} else {
					ty.refused++
				}
				continue
			}
			if nhits > 0 || len(echoes) > 0 {
				fail("an invalid request reached the app")
				continue
			}
			if slices.ContainsFunc(st, func(s string) bool { return s[0] != '4' && s != "501" && s != "505" }) {
				fail("want only 4xx, 501 or 505 (or a close)")
				continue
			}
			ty.refused++
		case "valid":
			want := len(r.c.requests)
			if r.c.set == "llhttp" {
				want = r.c.messages
			}
			if !allSuccess(r.c.baseline) || len(r.c.baseline) != want {
				// net/http refuses it too (no Host on HTTP/1.1, a
				// transfer coding other than chunked, a truncated
				// body): any 4xx, 501 or close will do.
				if slices.ContainsFunc(st, func(s string) bool { return s[0] != '2' && s[0] != '4' && s != "501" }) {
					fail("want 2xx, 4xx or 501 like net/http's %v", r.c.baseline)
					continue
				}
				if allSuccess(st) && len(st) == want {
					ty.ok++
				} else {
					ty.refused++
				}
				continue
			}
			if why := appCannotShow(r.c, st, r.resp, nhits); why != "" {
				ty.exception++
				exceptions[why] = append(exceptions[why], r.c.set+"/"+r.c.name)
				continue
			}
			if !allSuccess(st) || len(st) != want || nhits != want {
				fail("want %d answers from the app, like net/http's %v (parse: %v)", want, r.c.baseline, perr)
				continue
			}
			for i, exp := range r.c.requests {
				if msg := exp.matches(echoes[i]); msg != "" {
					fail("request %d: %s", i+1, msg)
				}
			}
			ty.ok++
		default:
			if len(st) > 0 && allSuccess(st) {
				ty.ok++
			} else {
				ty.refused++
			}
		}
	}

	// No bad request killed or restarted a worker.
	after, err := client.Workers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(workerPids(before), workerPids(after)) {
		t.Errorf("workers changed: before %v, after %v\n%s", workerPids(before), workerPids(after), stderr.String())
	}

	t.Logf("corpus %s: %d cases, %d runs in %v", root, len(cases), len(runs), elapsed.Round(time.Millisecond))
	keys := make([]string, 0, len(tallies))
	for k := range tallies {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ty := tallies[k]
		t.Logf("%-14s runs %3d: accepted (2xx) %3d, refused (4xx/501/505/close) %3d, head reached the app (fault in body) %2d, documented exception %2d, failed %d",
			k, ty.runs, ty.ok, ty.refused, ty.reached, ty.exception, ty.failed)
	}
	for why, names := range exceptions {
		t.Logf("exception (%s): %v", why, names)
	}
	t.Logf("differences from plain net/http (one write):\n%s", strings.Join(diffs, "\n"))
}

// send writes the case's bytes (whole, or in seeded random pieces of 1 to
// 16 bytes with small pauses), half-closes and reads until EOF.
func (r *corpusRun) send(addr string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		r.dialFail = err
		return
	}
	defer c.Close()
	r.port = c.LocalAddr().(*net.TCPAddr).Port
	_ = c.SetDeadline(time.Now().Add(15 * time.Second)) // timeout (10 s) and some
	done := make(chan struct{})
	go func() { // writes while the reply is read: the server may answer and close early
		defer close(done)
		wire := r.c.wire
		if r.mode == "whole" {
			_, _ = c.Write(wire)
		} else {
			h := fnv.New64a()
			h.Write([]byte(r.c.set + "/" + r.c.name))
			rng := rand.New(rand.NewPCG(8, h.Sum64()))
			for len(wire) > 0 {
				n := min(1+rng.IntN(16), len(wire))
				if _, err := c.Write(wire[:n]); err != nil {
					break
				}
				wire = wire[n:]
				if rng.IntN(8) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	r.resp, err = io.ReadAll(c)
	var ne net.Error
	r.hung = errors.As(err, &ne) && ne.Timeout()
	<-done
}

// healthy sends a normal request on a fresh connection.
func healthy(addr string) error {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/healthcheck")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// readHits maps the client port to the requests the app logged for it.
func readHits(t *testing.T, path string) map[int][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	out := map[int][]string{}
	for line := range strings.Lines(string(b)) {
		port, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		if p, err := strconv.Atoi(port); err == nil {
			out[p] = append(out[p], rest)
		}
	}
	return out
}

// echo is what the app said it got.
type echo struct {
	method, uri, body string
	headers           map[string]string // HTTP_NAME -> value
}

// parseResponses reads the responses in resp; answers of the app are
// parsed as echoes. The method of the case's first request tells a HEAD.
func parseResponses(resp, wire []byte) (statuses []string, echoes []echo, err error) {
	method, _, _ := bytes.Cut(wire, []byte(" "))
	br := bufio.NewReader(bytes.NewReader(resp))
	for {
		if _, err := br.Peek(1); err != nil {
			return statuses, echoes, nil
		}
		r, err := http.ReadResponse(br, &http.Request{Method: string(method)})
		if err != nil {
			return statuses, echoes, err
		}
		statuses = append(statuses, strconv.Itoa(r.StatusCode))
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if rest, ok := bytes.CutPrefix(b, []byte("ECHO-APP\n")); ok {
			head, body, _ := bytes.Cut(rest, []byte("body:"))
			e := echo{body: string(body), headers: map[string]string{}}
			for line := range strings.Lines(string(head)) {
				k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
				switch {
				case k == "method":
					e.method = v
				case k == "uri":
					e.uri = v
				default:
					e.headers[k] = v
				}
			}
			echoes = append(echoes, e)
		}
		if err != nil {
			return statuses, echoes, err
		}
	}
}

// matches says how e differs from what gunicorn parsed ("" when it does
// not): method, target (as net/http gives it to CGI: path and query, no
// fragment, scheme or host; CONNECT's authority is not a path), body and
// the header fields net/http passes on as they came.
// raw turns a manifest string back into the bytes it stands for: the
// manifests hold gunicorn's parse, which decodes bytes as Latin-1.
func raw(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return s // not a Latin-1 decoding after all
		}
		b = append(b, byte(r))
	}
	return string(b)
}

func (exp corpusRequest) matches(e echo) string {
	if e.method != exp.Method {
		return fmt.Sprintf("method %q, want %q", e.method, exp.Method)
	}
	if exp.Method != "CONNECT" {
		want := raw(exp.URI)
		if u, err := url.Parse(want); err == nil && u.IsAbs() {
			want = strings.TrimPrefix(want, u.Scheme+"://"+u.User.String())
			want = strings.TrimPrefix(strings.TrimPrefix(want, "@"), u.Host)
		}
		want, _, _ = strings.Cut(want, "#")
		got, _ := url.PathUnescape(e.uri)
		if w, _ := url.PathUnescape(want); got != w {
			return fmt.Sprintf("target %q, want %q", e.uri, want)
		}
	}
	if body := raw(exp.body()); e.body != body {
		return fmt.Sprintf("body %q, want %q", truncate([]byte(e.body), 200), truncate([]byte(body), 200))
	}
	want := map[string][]string{}
	for _, h := range exp.Headers {
		name := strings.ToUpper(h[0])
		switch {
		case name == "HOST", name == "CONTENT-LENGTH", name == "CONTENT-TYPE", name == "TRANSFER-ENCODING",
			name == "CONNECTION", name == "TRAILER", name == "PROXY", strings.Contains(name, "_"),
			strings.Contains(name, "FORWARDED"):
			continue // moved, removed or rewritten on the way, or not a CGI name
		}
		if strings.Trim(strings.ReplaceAll(name, "-", "_"), "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
			continue // not a name the shell passes on to env
		}
		want[name] = append(want[name], raw(h[1]))
	}
	for name, vs := range want {
		key := "HTTP_" + strings.ReplaceAll(name, "-", "_")
		sep := ", "
		if name == "COOKIE" {
			sep = "; "
		}
		if got := e.headers[key]; got != strings.Join(vs, sep) {
			return fmt.Sprintf("%s = %q, want %q", key, got, strings.Join(vs, sep))
		}
	}
	return ""
}

func allSuccess(st []string) bool {
	return len(st) > 0 && !slices.ContainsFunc(st, func(s string) bool { return s[0] != '2' })
}

func workerPids(ws []control.Worker) []int {
	out := pidsOf(ws)
	slices.Sort(out)
	return out
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
