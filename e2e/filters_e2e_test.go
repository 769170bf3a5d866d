package e2e

import (
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"paddock/internal/command"

	"golang.org/x/crypto/bcrypt"
)

// filtersConfig is the e2e site: every filter of the catalog's second
// batch on its own mount, in front of hello, static files or a proxy to
// the test's upstream. @NAME@ placeholders are filled in by the test.
const filtersConfig = `[server:main]
use = egg:paddock#http
bind = @ADDR@
workers = 1
graceful_timeout = 3
accesslog = @DIR@/access.log
access_log_format = %%(u)s %%(U)s %%(s)s

[composite:main]
use = egg:paddock#urlmap
/gz = gz
/gzstream = gzstream
/auth = auth
/rl = rl
/slow = slow
/err = err
/tl = tl

[filter:gzip]
use = egg:Paste#gzip
compress_level = 5
min_length = 100

[pipeline:gz]
pipeline = gzip files

[app:files]
use = egg:paddock#static
document_root = @DIR@/www

[pipeline:gzstream]
pipeline = gzip upstream

[app:upstream]
use = egg:paddock#proxy
address = @UPSTREAM@

[pipeline:auth]
pipeline = basic_auth hello

[filter:basic_auth]
use = egg:paddock#basic_auth
htpasswd = @DIR@/htpasswd
realm = e2e site

[app:hello]
use = egg:paddock#hello
body = hello

[pipeline:rl]
pipeline = ratelimit hello

[filter:ratelimit]
use = egg:paddock#ratelimit
rate = 1/m
burst = 2

[pipeline:slow]
pipeline = timeout upstream

[filter:timeout]
use = egg:paddock#timeout
timeout = 0.3
status = 504

[pipeline:err]
pipeline = errordocument upstream

[filter:errordocument]
use = egg:Paste#errordocument
404 = @DIR@/404.html

[pipeline:tl]
pipeline = translogger basic_auth hello

[filter:translogger]
use = egg:Paste#translogger
output = @DIR@/trans.log
format = %%(REMOTE_USER)s "%%(REQUEST_METHOD)s %%(REQUEST_URI)s" %%(status)s
`

// TestFiltersEndToEnd runs gzip, basic_auth, ratelimit, timeout,
// errordocument and translogger in a real paddock (one worker process)
// and checks each with real requests; it reloads after a broken and then
// a changed htpasswd file.
func TestFiltersEndToEnd(t *testing.T) {
	t.Setenv("PADDOCK_WATCH_CONFIG", "false") // reloads are by hand here
	dir := t.TempDir()
	json := `{"items":[` + strings.Repeat(`{"name":"paddock","kind":"server"},`, 100) + `{}]}`
	for name, body := range map[string]string{
		"www/data.json": json,
		"www/tiny.txt":  "tiny",
		"404.html":      "<h1>custom not found</h1>\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	writeUsers := func(lines ...string) {
		t.Helper()
		if err := os.WriteFile(htpasswd, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	writeUsers("# e2e users", "alice:"+hash("wonderland"))

	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.Error(w, "upstream 404", http.StatusNotFound)
		case "/ok":
			io.WriteString(w, "upstream ok")
		case "/sleep":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/partial":
			io.WriteString(w, "partial\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			io.WriteString(w, "data: two\n\n")
		}
	}))
	defer upstream.Close()
	defer close(release)

	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	config := strings.NewReplacer("@ADDR@", addr, "@DIR@", dir, "@UPSTREAM@", upstream.URL).Replace(filtersConfig)
	sock := filepath.Join(dir, "ctl.sock")
	_, stderr, pidfile := startPaddock(t, config, "--ctl-socket", sock)
	cfgPath := filepath.Join(filepath.Dir(pidfile), "paste.ini")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	do := func(method, path string, hdr ...string) (*http.Response, string, error) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	mustDo := func(method, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		resp, body, err := do(method, path, hdr...)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, stderr)
		}
		return resp, body
	}
	waitFor(t, "the server", 20*time.Second, func() bool {
		resp, _, err := do("GET", "/gz/tiny.txt")
		return err == nil && resp.StatusCode == 200
	})

	t.Run("gzip", func(t *testing.T) {
		resp, body := mustDo("GET", "/gz/data.json", "Accept-Encoding", "br;q=1.0, gzip;q=0.8")
		if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("not compressed: %v", resp.Header)
		}
		// net/http sets the length of a short complete body: the
		// compressed one, never static's uncompressed length.
		if cl := resp.Header.Get("Content-Length"); cl != "" && cl != fmt.Sprint(len(body)) {
			t.Errorf("Content-Length %s for %d bytes", cl, len(body))
		}
		if len(body) >= len(json)/2 {
			t.Errorf("%d compressed bytes for %d", len(body), len(json))
		}
		zr, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil || string(plain) != json {
			t.Errorf("decompressed %d bytes, %v", len(plain), err)
		}
		for _, ae := range []string{"", "gzip;q=0", "gzip;q=NaN, ;;;=,,*;q=-1, \xd7\xff", "identity"} {
			resp, body := mustDo("GET", "/gz/data.json", "Accept-Encoding", ae)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || body != json {
				t.Errorf("Accept-Encoding %q: %d %q, %d bytes", ae, resp.StatusCode, resp.Header.Get("Content-Encoding"), len(body))
			}
		}
		resp, body = mustDo("GET", "/gz/tiny.txt", "Accept-Encoding", "gzip")
		if resp.Header.Get("Content-Encoding") != "" || body != "tiny" {
			t.Errorf("tiny body compressed: %v", resp.Header)
		}
		resp, body = mustDo("GET", "/gz/data.json", "Accept-Encoding", "gzip", "Range", "bytes=0-9")
		if resp.StatusCode != 206 || resp.Header.Get("Content-Encoding") != "" || body != json[:10] {
			t.Errorf("Range: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
		}
	})

	t.Run("gzip streams", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/gzstream/stream", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("event stream not compressed: %v", resp.Header)
		}
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		// The first event arrives while the upstream still holds the
		// second one back.
		line, err := bufio.NewReader(zr).ReadString('\n')
		if err != nil || line != "data: one\n" {
			t.Fatalf("first event: %q %v", line, err)
		}
	})

	auth := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	t.Run("basic_auth", func(t *testing.T) {
		resp, _ := mustDo("GET", "/auth")
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="e2e site", charset="UTF-8"` {
			t.Errorf("no credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if resp, body := mustDo("GET", "/auth", "Authorization", auth("alice", "wonderland")); resp.StatusCode != 200 || body != "hello" {
			t.Errorf("alice: %d %q", resp.StatusCode, body)
		}
		if resp, _ := mustDo("GET", "/auth", "Authorization", auth("alice", "nope")); resp.StatusCode != 401 {
			t.Errorf("wrong password: %d", resp.StatusCode)
		}
		if resp, _ := mustDo("GET", "/auth", "Authorization", auth("mallory", "wonderland")); resp.StatusCode != 401 {
			t.Errorf("unknown user: %d", resp.StatusCode)
		}
		if resp, _ := mustDo("GET", "/auth", "Authorization", "Basic "+strings.Repeat("QUFB", 2000)); resp.StatusCode != 401 {
			t.Errorf("huge Authorization: %d", resp.StatusCode)
		}
		// %(u)s of the access log is the user basic_auth checked.
		access := filepath.Join(dir, "access.log")
		waitFor(t, "access log lines", 10*time.Second, func() bool {
			text := fileText(access)
			return strings.Contains(text, "- /auth 401\n") && strings.Contains(text, "alice /auth 200\n") && strings.Contains(text, "mallory /auth 401\n")
		})
	})

	t.Run("translogger", func(t *testing.T) {
		mustDo("GET", "/tl/x?y=1", "Authorization", auth("alice", "wonderland"))
		mustDo("GET", "/tl/x")
		want := "alice \"GET /tl/x?y=1\" 200\n- \"GET /tl/x\" 401\n"
		waitFor(t, "translogger lines", 5*time.Second, func() bool { return fileText(filepath.Join(dir, "trans.log")) == want })
	})

	t.Run("ratelimit", func(t *testing.T) {
		var codes []int
		var retry string
		for range 3 {
			resp, _ := mustDo("GET", "/rl")
			codes = append(codes, resp.StatusCode)
			retry = resp.Header.Get("Retry-After")
		}
		if fmt.Sprint(codes) != "[200 200 429]" || retry != "60" {
			t.Errorf("codes %v, Retry-After %q; want [200 200 429] and 60", codes, retry)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		resp, body := mustDo("GET", "/slow/sleep")
		if resp.StatusCode != 504 || body != "Gateway Timeout: the request took too long.\n" || time.Since(start) > 3*time.Second {
			t.Errorf("slow upstream: %d %q after %v", resp.StatusCode, body, time.Since(start))
		}
		if resp, body := mustDo("GET", "/slow/ok"); resp.StatusCode != 200 || body != "upstream ok" {
			t.Errorf("fast upstream: %d %q", resp.StatusCode, body)
		}
		resp, body, err := do("GET", "/slow/partial")
		if err == nil || resp.StatusCode != 200 || body != "partial\n" {
			t.Errorf("started response: %v %q %v; want it cut after the first line", resp, body, err)
		}
	})

	t.Run("errordocument", func(t *testing.T) {
		resp, body := mustDo("GET", "/err/missing")
		if resp.StatusCode != 404 || body != "<h1>custom not found</h1>\n" || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("404: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if resp, body := mustDo("GET", "/err/ok"); resp.StatusCode != 200 || body != "upstream ok" {
			t.Errorf("200: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("htpasswd reload", func(t *testing.T) {
		// A broken line: the reload fails naming the htpasswd file's
		// line, and the old users keep working.
		writeUsers("alice:"+hash("wonderland"), "", "bob:$apr1$xyz$0123456789abcdefghijkl")
		out, errOut, code := runCmd(t, exec.Command("paddock", "ctl", "--socket", sock, "--timeout", "10s", "reload"))
		if code != command.ExitFailed || !strings.Contains(errOut, htpasswd+":3: [filter:basic_auth]: htpasswd (") || !strings.Contains(errOut, "Apache MD5") {
			t.Fatalf("reload with a broken htpasswd: exit %d\n%s%s", code, out, errOut)
		}
		if resp, _ := mustDo("GET", "/auth", "Authorization", auth("alice", "wonderland")); resp.StatusCode != 200 {
			t.Errorf("alice after the failed reload: %d", resp.StatusCode)
		}
		// paddock check names the same place.
		_, errOut, code = runCmd(t, exec.Command("paddock", "check", cfgPath))
		if code != command.ExitFailed || !strings.Contains(errOut, htpasswd+":3: ") {
			t.Errorf("check: exit %d\n%s", code, errOut)
		}
		// A good file: the reload re-reads it.
		writeUsers("bob:" + hash("builder"))
		out, errOut, code = runCmd(t, exec.Command("paddock", "ctl", "--socket", sock, "--timeout", "10s", "reload"))
		if code != 0 {
			t.Fatalf("reload: exit %d\n%s%s", code, out, errOut)
		}
		waitFor(t, "the new users", 5*time.Second, func() bool {
			resp, _, err := do("GET", "/auth", "Authorization", auth("bob", "builder"))
			return err == nil && resp.StatusCode == 200
		})
		if resp, _ := mustDo("GET", "/auth", "Authorization", auth("alice", "wonderland")); resp.StatusCode != 401 {
			t.Errorf("alice after she was removed: %d", resp.StatusCode)
		}
	})
	if t.Failed() {
		t.Logf("paddock stderr:\n%s", stderr)
	}
}

// An edit of the htpasswd file alone reloads the server (the master
// watches the files factories read as configuration), like an edit of
// the config.
func TestFiltersHtpasswdWatched(t *testing.T) {
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	save := func(lines ...string) {
		t.Helper()
		tmp := htpasswd + ".tmp"
		if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, htpasswd); err != nil {
			t.Fatal(err)
		}
	}
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	save("alice:" + hash("wonderland"))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	config := fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = 2\n\n[pipeline:main]\npipeline = auth hello\n\n[filter:auth]\nuse = egg:paddock#basic_auth\nhtpasswd = %s\n\n[app:hello]\nuse = egg:paddock#hello\n", addr, htpasswd)
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	startPaddock(t, config, "--ctl-socket", sock)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	status := func(user, pw string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.SetBasicAuth(user, pw)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, "alice served", 15*time.Second, func() bool { return status("alice", "wonderland") == 200 })
	if got := status("bob", "builder"); got != 401 {
		t.Fatalf("bob before he is added: %d, want 401", got)
	}
	save("alice:"+hash("wonderland"), "bob:"+hash("builder"))
	saved := time.Now()
	waitFor(t, "bob accepted after the htpasswd edit", 5*time.Second, func() bool { return status("bob", "builder") == 200 })
	t.Logf("bob accepted %s after the save", time.Since(saved).Round(time.Millisecond))
	for range 10 {
		if got := status("bob", "builder"); got != 200 {
			t.Fatalf("bob on a new connection: %d, want 200 from every worker", got)
		}
	}
}
