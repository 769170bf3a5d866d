package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// envPeerClient makes the test binary a one-shot control client (see
// TestMain): GET /v1/status on the socket it names, the answer as JSON on
// stdout. The tests run it as another uid.
const envPeerClient = "PADDOCK_CONTROL_TEST_PEER_CLIENT"

// nobody is the uid and gid the peer tests run the client as.
const nobody = 65534

func TestMain(m *testing.M) {
	if sock := os.Getenv(envPeerClient); sock != "" {
		os.Exit(peerClient(sock))
	}
	os.Exit(m.Run())
}

// peerResult is what the peer client saw.
type peerResult struct {
	UID     int    `json:"uid"`
	DialErr string `json:"dial_error,omitempty"`
	Status  int    `json:"status,omitempty"`
	Code    string `json:"code,omitempty"`
	Body    string `json:"body,omitempty"`
}

func peerClient(sock string) int {
	res := peerResult{UID: os.Getuid()}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	resp, err := c.Get("http://localhost/v1/status")
	if err != nil {
		res.DialErr = err.Error()
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res.Status, res.Body = resp.StatusCode, string(b)
		var eb ErrorBody
		if json.Unmarshal(b, &eb) == nil {
			res.Code = eb.Code
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// asNobody runs a copy of the test binary as uid/gid 65534 as a control
// client of sock and returns what it saw. The copy lives in a directory
// nobody can traverse (go test's own is 0700).
func asNobody(t *testing.T, sock string) peerResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pdcbin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "client.test")
	if err := copyFile(exe, bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), envPeerClient+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("peer client: %v\n%s", err, stderr.String())
	}
	var res peerResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("peer client output %q: %v\n%s", out, err, stderr.String())
	}
	if res.UID != nobody {
		t.Fatalf("the peer client ran as uid %d, want %d", res.UID, nobody)
	}
	return res
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test runs a client as uid 65534 and chowns files")
	}
}

// A client of another uid is refused twice over: the 0600 socket file
// refuses its connect(2), and with the file opened up the SO_PEERCRED
// check answers 403 without reaching the Controller. The owner (root
// here) is served, and so is uid 65534 once AllowedUIDs names it.
func TestSecurityPeerOtherUID(t *testing.T) {
	needRoot(t)
	var logs syncBuffer
	f := newFake()
	c, _ := serve(t, ServerOptions{Controller: f, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})})
	// nobody must reach the socket's directory to try.
	if err := os.Chmod(filepath.Dir(c.Path), 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(c.Path); err != nil || fi.Mode().Perm() != SocketMode {
		t.Fatalf("socket mode %v (%v), want %v", fi.Mode(), err, SocketMode)
	}

	res := asNobody(t, c.Path)
	if res.DialErr == "" || !strings.Contains(res.DialErr, "permission denied") {
		t.Errorf("uid %d on the 0600 socket: %+v, want permission denied at connect", nobody, res)
	}

	if err := os.Chmod(c.Path, 0o666); err != nil {
		t.Fatal(err)
	}
	res = asNobody(t, c.Path)
	if res.Status != http.StatusForbidden || res.Code != CodeForbidden || !strings.Contains(res.Body, "peer uid 65534") {
		t.Errorf("uid %d on a 0666 socket: %+v, want 403 %s", nobody, res, CodeForbidden)
	}
	if got := f.lastCall(); got != "" {
		t.Errorf("a refused peer reached the Controller: %s", got)
	}
	if !strings.Contains(logs.String(), "peer_uid=65534") || !strings.Contains(logs.String(), "refused") {
		t.Errorf("the refusal is not logged with the peer's uid:\n%s", logs.String())
	}
	// The owner is served.
	if st, err := c.Status(t.Context()); err != nil || st.Pid != 4120 {
		t.Fatalf("root: %+v, %v", st, err)
	}

	// The refusal is by uid: allow 65534 and it is served.
	c2, _ := serve(t, ServerOptions{Controller: f, AllowedUIDs: []uint32{0, nobody}})
	if err := os.Chmod(filepath.Dir(c2.Path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(c2.Path, 0o666); err != nil {
		t.Fatal(err)
	}
	if res := asNobody(t, c2.Path); res.Status != http.StatusOK {
		t.Errorf("uid %d allowed: %+v, want 200", nobody, res)
	}
}

// Anything but a socket at the socket path is refused with an error that
// says so, and left exactly as it was: a regular file, a directory, a
// symlink to a missing file (the bind must not create it), to a file, to
// a stale socket (which must not be removed through the link) and to a
// live one.
func TestSecurityNothingButASocketIsTouched(t *testing.T) {
	dir := shortDir(t)
	elsewhere := shortDir(t)
	path := filepath.Join(dir, "ctl.sock")

	victim := filepath.Join(elsewhere, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(elsewhere, "stale.sock")
	staleSocket(t, stale)
	live, err := net.Listen("unix", filepath.Join(elsewhere, "live.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	missing := filepath.Join(elsewhere, "created-through-a-link")

	cases := []struct {
		name  string
		plant func() error
		want  string
	}{
		{"regular file", func() error { return os.WriteFile(path, []byte("precious"), 0o600) }, "not a socket"},
		{"directory", func() error { return os.Mkdir(path, 0o700) }, "not a socket"},
		{"symlink to nothing", func() error { return os.Symlink(missing, path) }, "not a socket"},
		{"symlink to a file", func() error { return os.Symlink(victim, path) }, "not a socket"},
		{"symlink to a stale socket", func() error { return os.Symlink(stale, path) }, "not a socket"},
		{"symlink to a live socket", func() error { return os.Symlink(live.Addr().String(), path) }, "not a socket"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.plant(); err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := Listen(t.Context(), path, nil)
			if err == nil {
				ln.Close()
				t.Fatalf("Listen over a %s succeeded", tc.name)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s and say %q", err, path, tc.want)
			}
			after, err := os.Lstat(path)
			if err != nil || !os.SameFile(before, after) || after.Mode() != before.Mode() {
				t.Fatalf("the %s at the socket path was replaced or removed: %v", tc.name, err)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
				t.Errorf("the symlink's target changed: %q, %v", b, err)
			}
			if fi, err := os.Lstat(victim); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("the symlink's target mode changed: %v, %v", fi.Mode(), err)
			}
			if fi, err := os.Lstat(stale); err != nil || fi.Mode().Type() != fs.ModeSocket {
				t.Errorf("the stale socket behind the symlink was removed: %v", err)
			}
			if _, err := os.Lstat(missing); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a file was created through the symlink: %v", err)
			}
		})
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Fatalf("victim: %q %v", b, err)
	}
	// And with nothing planted, the socket is made there, a socket, 0600.
	ln, err := Listen(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != SocketMode {
		t.Fatalf("socket: %v, %v", fi.Mode(), err)
	}
}

// The socket's directory must be one only this uid (or root) can change:
// one owned by another uid, writable by everyone without the sticky bit,
// or a symlink another uid owns, is refused with an error that says why;
// a sticky world-writable one (like /tmp), a root-owned one and a
// symlink of our own are accepted.
func TestSecuritySocketDirectory(t *testing.T) {
	needRoot(t)
	base := shortDir(t)
	mkdir := func(name string, mode os.FileMode, uid int) string {
		t.Helper()
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(d, uid, uid); err != nil {
			t.Fatal(err)
		}
		return d
	}
	symlink := func(name, target string, uid int) string {
		t.Helper()
		l := filepath.Join(base, name)
		if err := os.Symlink(target, l); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(l, uid, uid); err != nil {
			t.Fatal(err)
		}
		return l
	}
	ours := mkdir("ours", 0o755, 0)
	refused := []struct{ dir, want string }{
		{mkdir("theirs", 0o700, nobody), "belongs to uid 65534"},
		{mkdir("open", 0o777, 0), "writable by everyone"},
		{mkdir("open-group", 0o777|fs.ModeSetgid, 0), "writable by everyone"},
		{symlink("planted", ours, nobody), "symlink owned by uid 65534"},
	}
	for _, tc := range refused {
		ln, err := Listen(t.Context(), filepath.Join(tc.dir, "ctl.sock"), nil)
		if err == nil {
			ln.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "set control_socket") {
			t.Errorf("%s: err %v, want %q", tc.dir, err, tc.want)
		}
		if _, err := os.Lstat(filepath.Join(tc.dir, "ctl.sock")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: a socket was created in a refused directory", tc.dir)
		}
	}
	if err := os.Mkdir(ours+"-target", 0o700); err != nil {
		t.Fatal(err)
	}
	// A directory Listen creates is ours, whoever owns its parent.
	fresh := filepath.Join(mkdir("theirs-parent", 0o755, nobody), "sub")
	accepted := []string{
		ours,
		mkdir("sticky", 0o777|fs.ModeSticky, 0),
		symlink("our-link", ours+"-target", 0),
		fresh,
	}
	for _, d := range accepted {
		ln, err := Listen(t.Context(), filepath.Join(d, "ctl.sock"), nil)
		if err != nil {
			t.Errorf("%s: %v", d, err)
			continue
		}
		ln.Close()
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created directory: %v, %v; want 0700", fi.Mode(), err)
	}
}

// What the control API shows of the config carries no secret: option
// values whose name says secret, URL passwords, secret NAME=VALUE items
// and PEM private keys are redacted in GET /v1/config (both formats), GET
// /v1/pipeline (all three) and error answers; everything else is shown
// as it is.
func TestSecurityConfigRedacted(t *testing.T) {
	f := &secretsCtrl{fake: newFake()}
	c, _ := serve(t, ServerOptions{Controller: f})
	secrets := []string{"hunter2", "s3cr3tpw", "tok123", "AKIAKEY", "MIIEsecretkeybody", "cookieval", "envpw", "bearerval", "commentedpw"}
	kept := []string{"workers = 4", "body = hello", "http://user:" + Redacted + "@10.0.0.1:8080", "htpasswd = /etc/paddock/users",
		"tls_key_file = /etc/ssl/k.pem", "-----BEGIN PRIVATE KEY-----", "DB_PASSWORD=" + Redacted, "Authorization: " + Redacted}
	check := func(what, body string, keep []string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("%s shows the secret %q:\n%s", what, s, body)
			}
		}
		for _, s := range keep {
			if !strings.Contains(body, s) {
				t.Errorf("%s lost %q:\n%s", what, s, body)
			}
		}
	}
	resp, body := request(t, c, "GET", "/v1/config?format=ini", "")
	if resp.StatusCode != 200 {
		t.Fatalf("ini: %d %s", resp.StatusCode, body)
	}
	check("GET /v1/config?format=ini", body, kept)
	if !strings.Contains(body, "db_password = "+Redacted+"\n") || !strings.Contains(body, "\t"+Redacted+"\n") {
		t.Errorf("ini: option or continuation not redacted in place:\n%s", body)
	}
	_, body = request(t, c, "GET", "/v1/config", "")
	check("GET /v1/config", body, []string{`"workers":{"value":"4"`})
	if !json.Valid([]byte(body)) || !strings.Contains(body, `"statsd_password":{"value":"`+Redacted+`"`) {
		t.Errorf("GET /v1/config: %s", body)
	}
	for _, format := range []string{"json", "text", "dot"} {
		resp, body := request(t, c, "GET", "/v1/pipeline?format="+format, "")
		if resp.StatusCode != 200 {
			t.Fatalf("pipeline %s: %d %s", format, resp.StatusCode, body)
		}
		check("GET /v1/pipeline?format="+format, body, []string{"hello"})
		if format == "json" && (!json.Valid([]byte(body)) || !strings.Contains(body, "\n  \"global_conf\"")) {
			t.Errorf("pipeline json is no longer indented JSON:\n%s", body)
		}
	}
	f.mu.Lock()
	f.err = &ConfigError{Problems: []ConfigProblem{{File: "/p.ini", Line: 3,
		Message: `address: upstream "http://bob:s3cr3tpw@10.0.0.2" must not carry user info`}}}
	f.mu.Unlock()
	resp, body = request(t, c, "POST", "/v1/reload", "")
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("reload: %d %s", resp.StatusCode, body)
	}
	check("a 422 answer", body, []string{"http://bob:" + Redacted + "@10.0.0.2"})
}

// secretsCtrl is the fake with a config full of secrets.
type secretsCtrl struct{ *fake }

const secretINI = `[DEFAULT]
db_password = hunter2
; api_token = commentedpw

[server:main]
use = egg:paddock#http
workers = 4

[app:main]
use = egg:paddock#proxy
address = http://user:s3cr3tpw@10.0.0.1:8080
aws_secret_access_key =
	AKIAKEY
header = Authorization: Bearer bearerval
env = DB_PASSWORD=envpw
	COOKIE=cookieval
htpasswd = /etc/paddock/users
tls_key_file = /etc/ssl/k.pem
inline_cert =
	-----BEGIN PRIVATE KEY-----
	MIIEsecretkeybody
	-----END PRIVATE KEY-----
body = hello
`

func (c *secretsCtrl) ConfigFile(ctx context.Context) ([]byte, error) {
	if err := c.call(ctx, "ConfigFile"); err != nil {
		return nil, err
	}
	return []byte(secretINI), nil
}

func (c *secretsCtrl) Config(ctx context.Context) (ConfigView, error) {
	if err := c.call(ctx, "Config"); err != nil {
		return ConfigView{}, err
	}
	return ConfigView{Path: "/etc/paddock/paddock.ini", Settings: map[string]SettingValue{
		"workers":         {Value: "4", Source: "file"},
		"statsd_password": {Value: "hunter2", Source: "env", Where: "PADDOCK_STATSD_PASSWORD"},
		"statsd_url":      {Value: "udp://m:s3cr3tpw@127.0.0.1:8125", Source: "file"},
	}}, nil
}

func (c *secretsCtrl) Pipeline(ctx context.Context, format string) ([]byte, error) {
	if err := c.call(ctx, "Pipeline"); err != nil {
		return nil, err
	}
	switch format {
	case "json":
		return []byte(`{
  "factory": "egg:paddock#hello",
  "global_conf": {
    "db_password": "hunter2",
    "here": "."
  },
  "local_conf": {
    "address": "http://user:s3cr3tpw@10.0.0.1:8080",
    "api_token": "tok123",
    "body": "hello",
    "env": "DB_PASSWORD=envpw\nCOOKIE=cookieval",
    "greeting": "hi hunter2, interpolated from [DEFAULT]"
  }
}`), nil
	case "dot":
		return []byte("digraph paddock {\n  n1 [label=\"app\\negg:paddock#hello\\nhttp://u:s3cr3tpw@h hunter2\"];\n}\n"), nil
	}
	return []byte("app egg:paddock#hello (paste.app_factory)\n    api_token = tok123\n    body = hello\n    env = DB_PASSWORD=envpw\n    greeting = hi hunter2\n"), nil
}

// The redaction rules on their own: what counts as a secret name, and
// values that must come through unchanged.
func TestSecurityRedactRules(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "db_password": true, "DB-PASSWD": true, "api_token": true, "aws_secret_access_key": true,
		"api_key": true, "x-api-key": true, "Authorization": true, "session.cookie": true, "key": true, "client_secret": true,
		"htpasswd": false, "tls_key_file": false, "keyfile": false, "key_header": false, "keepalive": false, "workers": false,
		"body": false, "secret_file": false, "passthrough": false,
	} {
		if got := secretName(name); got != want {
			t.Errorf("secretName(%q) = %v, want %v", name, got, want)
		}
	}
	for _, s := range []string{
		"http://10.0.0.1:8080/path?a=b", "https://user@host/", "X-Forwarded-Proto: https", "127.0.0.1:8000",
		"%(h)s %(l)s %(u)s", "unix:/run/app.sock", "malformed JSON body: invalid character 'x'",
	} {
		if got := redactLines(s, nil); got != s {
			t.Errorf("redactLines(%q) = %q, want it unchanged", s, got)
		}
	}
	for in, want := range map[string]string{
		"http://a:b@h/":                   "http://a:" + Redacted + "@h/",
		"postgres://u:p%40ss@db:5432/x":   "postgres://u:" + Redacted + "@db:5432/x",
		"a=1&token=xyz&b=2":               "a=1&token=" + Redacted + "&b=2",
		`password="quoted value", user=x`: `password=` + Redacted + `, user=x`,
	} {
		if got := redactLines(in, nil); got != want {
			t.Errorf("redactLines(%q) = %q, want %q", in, got, want)
		}
	}
	if got := string(redactJSON([]byte(`{"a":"x"}`))); got != `{"a":"x"}` {
		t.Errorf("redactJSON changed a document without secrets: %s", got)
	}
	if got := fmt.Sprint(string(redactJSON([]byte("not json password=x")))); strings.Contains(got, "=x") {
		t.Errorf("redactJSON of non-JSON: %s", got)
	}
}
