package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAppsEndToEnd serves the cgi, redirect and cascade apps and urlmap's
// domain keys through the real binary (a worker process) and checks one
// request or a few against each.
func TestAppsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "env.cgi")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+
		"echo 'note from the script' >&2\n"+
		"printf 'Content-Type: text/plain\\r\\nX-Script: env\\r\\n\\r\\n'\n"+
		"env\n"+
		"echo '--body--'\n"+
		"cat\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	www := filepath.Join(dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("static index\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd, stderr, _ := startPaddock(t, fmt.Sprintf(`[server:main]
use = egg:paddock#http
bind = %s
workers = 1

[composite:main]
use = egg:Paste#urlmap
domain api.example.com / = api
domain API.example.com port 8080 /v2 = api_v2
domain 127.0.0.1 /ip = ip
/cgi-bin/env = cgi
/old = moved
/ = site

[app:cgi]
use = egg:Paste#cgi
script = %s
env = GREETING=hello world

[app:moved]
use = egg:paddock#redirect
status = 301
location = https://new.example{path}{query}

[composite:site]
use = egg:Paste#cascade
app1 = files
app2 = fallback
catch = 404 405

[app:files]
use = egg:Paste#static
document_root = %s

[app:fallback]
use = egg:paddock#hello
body = fallback

[app:api]
use = egg:paddock#hello
body = api

[app:api_v2]
use = egg:paddock#hello
body = api v2

[app:ip]
use = egg:paddock#hello
body = ip
`, addr, script, www))

	client := &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	base := "http://" + addr
	waitFor(t, "the server", 10*time.Second, func() bool {
		resp, err := client.Get(base + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	do := func(t *testing.T, method, path, host, body string) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(data)
	}

	t.Run("cgi", func(t *testing.T) {
		resp, body := do(t, "POST", "/cgi-bin/env/a/b?x=1", "", "posted data")
		if resp.StatusCode != 200 || resp.Header.Get("X-Script") != "env" {
			t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
		}
		head, input, _ := strings.Cut(body, "--body--\n")
		for _, want := range []string{
			"SCRIPT_NAME=/cgi-bin/env\n", "PATH_INFO=/a/b\n", "QUERY_STRING=x=1\n",
			"REQUEST_URI=/cgi-bin/env/a/b?x=1\n", "REQUEST_METHOD=POST\n", "REMOTE_ADDR=127.0.0.1\n",
			fmt.Sprintf("SERVER_PORT=%d\n", port), "CONTENT_LENGTH=11\n", "GREETING=hello world\n",
		} {
			if !strings.Contains(head, want) {
				t.Errorf("environment lacks %q:\n%s", want, head)
			}
		}
		if input != "posted data" {
			t.Errorf("stdin %q", input)
		}
	})
	t.Run("redirect", func(t *testing.T) {
		resp, _ := do(t, "GET", "/old/a/b?c=1", "", "")
		if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://new.example/a/b?c=1" {
			t.Errorf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("cascade", func(t *testing.T) {
		for _, tc := range []struct{ method, path, want string }{
			{"GET", "/index.html", "static index\n"}, // the first app answers
			{"GET", "/missing", "fallback"},          // 404 from static: the next app
			{"POST", "/index.html", "fallback"},      // 405 from static, caught too
		} {
			resp, body := do(t, tc.method, tc.path, "", "body")
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("%s %s: %d %q, want 200 %q", tc.method, tc.path, resp.StatusCode, body, tc.want)
			}
		}
	})
	t.Run("urlmap domains", func(t *testing.T) {
		for _, tc := range []struct{ host, path, want string }{
			{"api.example.com", "/x", "api"},
			{"API.Example.COM:8080", "/v2/x", "api v2"},
			{"api.example.com:9090", "/v2/x", "api"},
			{"api.example.com.", "/x", "api"},
			{"", "/ip/x", "ip"}, // Host 127.0.0.1:PORT
			{"[::1]:8000", "/ip/x", "fallback"},
			{"other.example", "/missing", "fallback"},
		} {
			resp, body := do(t, "GET", tc.path, tc.host, "")
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("Host %q %s: %d %q, want %q", tc.host, tc.path, resp.StatusCode, body, tc.want)
			}
		}
		// HTTP/1.0 without a Host header: only keys without a domain.
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, "GET /missing HTTP/1.0\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(data) != "fallback" {
			t.Errorf("no Host: %d %q", resp.StatusCode, data)
		}
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("paddock exited with %v\n%s", err, stderr)
	}
	// The script's stderr is in the worker's log.
	if !strings.Contains(stderr.String(), "note from the script") {
		t.Errorf("the CGI script's stderr is not in the log:\n%s", stderr)
	}
}
