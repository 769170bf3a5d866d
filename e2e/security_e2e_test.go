package e2e

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"paddock/internal/command"

	"golang.org/x/crypto/bcrypt"

	"paddock/control"
)

// Security review of the privilege drop and of what paddock shows and
// logs (issue 8 item 6), against the real binary. The control socket's
// own checks are tested in control/security_test.go.

// secPasswdUser returns the /etc/passwd entry with uid, or skips the test.
func secPasswdUser(t *testing.T, uid int) *user.User {
	t.Helper()
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Skipf("no /etc/passwd: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) >= 4 && f[2] == strconv.Itoa(uid) {
			u, err := user.Lookup(f[0])
			if err != nil {
				t.Skipf("user %s (uid %d): %v", f[0], uid, err)
			}
			return u
		}
	}
	t.Skipf("no user with uid %d in /etc/passwd", uid)
	return nil
}

// secProcStatus returns the fields of /proc/PID/status by name ("Uid",
// "Groups", "CapEff").
func secProcStatus(t *testing.T, pid int) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	out := make(map[string][]string)
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.Fields(v)
		}
	}
	return out
}

// secUnixInode is the inode of the listening unix socket bound at path, from
// /proc/net/unix; 0 when there is none.
func secUnixInode(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path; Flags 00010000
		// is __SO_ACCEPTCON, a listening socket.
		fl := strings.Fields(sc.Text())
		if len(fl) == 8 && fl[7] == path && fl[3] == "00010000" {
			return fl[6]
		}
	}
	return ""
}

// secHoldsSocket reports whether process pid has a descriptor on the socket
// with inode.
func secHoldsSocket(t *testing.T, pid int, inode string) bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == "socket:["+inode+"]" {
			return true
		}
	}
	return false
}

// secStopMaster stops a master with TERM (its workers with it), and kills it
// by pid if it has not exited within 15 s.
// startSecMaster starts cmd, a `paddock serve` whose control socket is
// sock, stops it when the test ends (printing its stderr if the test
// failed) and returns it as a ctlMaster.
func startSecMaster(t *testing.T, cmd *exec.Cmd, sock, addr, cfg string) *ctlMaster {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		secStopMaster(t, cmd)
		if t.Failed() {
			t.Logf("paddock stderr:\n%s", stderr.String())
		}
	})
	m := &ctlMaster{cmd: cmd, stderr: &stderr, sock: sock, addr: addr, config: cfg,
		client: &control.Client{Path: sock, Timeout: 10 * time.Second}}
	t.Cleanup(m.client.CloseIdleConnections)
	return m
}

func secStopMaster(t *testing.T, cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("the master did not stop within 15 s of TERM")
	}
}

// As root with user = <the uid 65534 user> and group = 65534, every
// worker runs with real, effective, saved and filesystem uid and gid
// 65534, only that user's supplementary groups (none of the master's) and
// no capabilities, and does not hold the control socket; the master stays
// root (it binds and supervises). The workers serve on the socket the
// master opened, and so do those of a reload.
func TestSecurityWorkersRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only a root master can run workers as another user")
	}
	const uid = 65534
	u := secPasswdUser(t, uid)
	wantGroups, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	// The worker is this binary started as the user: make it and the
	// config reachable (go test's directories are 0700).
	bin, err := exec.LookPath("paddock")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(filepath.Dir(bin)), filepath.Dir(bin), filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sock := filepath.Join(dir, "ctl.sock")
	cfg := filepath.Join(dir, "paste.ini")
	config := func(body string) string {
		return fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = 2\nuser = %s\ngroup = %d\ngraceful_timeout = 3\n\n[app:main]\nuse = egg:paddock#hello\nbody = %s\n", addr, u.Username, uid, body)
	}
	if err := os.WriteFile(cfg, []byte(config("first")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("paddock", "serve", "--ctl-socket", sock, cfg)
	// The master has supplementary groups (a root shell often has some):
	// the workers must not inherit them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{0, 4242}}}
	m := startSecMaster(t, cmd, sock, addr, cfg)

	ids := func(n string) []string { return []string{n, n, n, n} } // real, effective, saved, fs
	zero := "0000000000000000"
	check := func(ws []control.Worker, body string) {
		t.Helper()
		master := secProcStatus(t, cmd.Process.Pid)
		if !slices.Equal(master["Uid"], ids("0")) || !slices.Equal(master["Gid"], ids("0")) {
			t.Errorf("master: Uid %v Gid %v, want root", master["Uid"], master["Gid"])
		}
		inode := secUnixInode(t, sock)
		if inode == "" || !secHoldsSocket(t, cmd.Process.Pid, inode) {
			t.Fatalf("cannot find the master's control socket %s (inode %q)", sock, inode)
		}
		for _, w := range ws {
			st := secProcStatus(t, w.Pid)
			if !slices.Equal(st["Uid"], ids(strconv.Itoa(uid))) || !slices.Equal(st["Gid"], ids(strconv.Itoa(uid))) {
				t.Errorf("worker %d: Uid %v Gid %v, want %d everywhere", w.Pid, st["Uid"], st["Gid"], uid)
			}
			for _, g := range st["Groups"] {
				if !slices.Contains(wantGroups, g) {
					t.Errorf("worker %d has group %s; %s's groups are %v", w.Pid, g, u.Username, wantGroups)
				}
			}
			for _, c := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
				if got := st[c]; len(got) != 1 || got[0] != zero {
					t.Errorf("worker %d: %s %v, want none", w.Pid, c, got)
				}
			}
			if secHoldsSocket(t, w.Pid, inode) {
				t.Errorf("worker %d holds the control socket: a worker as %s could take over the master", w.Pid, u.Username)
			}
		}
		waitFor(t, "the workers to answer "+body, 10*time.Second, func() bool {
			for range 4 {
				if get(t, addr) != body {
					return false
				}
			}
			return true
		})
	}
	first := m.waitReady(t, 2)
	check(first, "first")

	if err := os.WriteFile(cfg, []byte(config("second")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.client.Reload(t.Context()); err != nil {
		t.Fatalf("reload: %v\n%s", err, m.stderr.String())
	}
	var second []control.Worker
	waitFor(t, "two new ready workers", 15*time.Second, func() bool {
		ws, err := m.client.Workers(t.Context())
		if err != nil || len(ws) != 2 {
			return false
		}
		for _, w := range ws {
			if w.State != "ready" {
				return false
			}
		}
		second = ws
		return true
	})
	check(second, "second")
}

// No secret reaches an error message, a log line, an access log line or
// what ctl shows: a broken htpasswd line, a broken TLS key, a proxy
// upstream with a password; and, from a running master, secret options of
// the config (ctl config show, --raw, ctl pipeline in all formats) and the
// passwords clients send to basic_auth.
func TestSecurityNoSecretsShown(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noSecret := func(what, out string, secrets ...string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s shows the secret %q:\n%s", what, s, out)
			}
		}
	}
	check := func(name, config string) string {
		t.Helper()
		out, errOut, code := runCmd(t, exec.Command("paddock", "check", write(name, config)))
		if code != command.ExitFailed {
			t.Fatalf("check %s: exit %d, want %d\n%s%s", name, code, command.ExitFailed, out, errOut)
		}
		return out + errOut
	}
	authConfig := func(htpasswd string) string {
		return "[pipeline:main]\npipeline = auth hello\n\n[filter:auth]\nuse = egg:paddock#basic_auth\nhtpasswd = " + htpasswd +
			"\n\n[app:hello]\nuse = egg:paddock#hello\n"
	}

	t.Run("htpasswd errors", func(t *testing.T) {
		for i, tc := range []struct{ line, secret, want string }{
			{"alice:$apr1$SECRETSALT$0123456789abcdefghijkl", "SECRETSALT", "Apache MD5"},
			{"bob:{SHA}c2VjcmV0c2hhMWhhc2g=", "c2VjcmV0c2hhMWhhc2g", "unsupported password hash"},
			{"carol:$2y$05$SECRETbcryptbutwaytooshort", "SECRETbcrypt", `user "carol"`},
			{"plaintextpasswordline", "plaintextpassword", "want user:hash"},
			{"dave:secretplainpw", "secretplainpw", `user "dave"`},
		} {
			htp := write(fmt.Sprintf("htpasswd%d", i), "# users\n"+tc.line+"\n")
			out := check(fmt.Sprintf("auth%d.ini", i), authConfig(htp))
			if !strings.Contains(out, htp+":2:") || !strings.Contains(out, tc.want) {
				t.Errorf("htpasswd %q: the error does not say %q at %s:2:\n%s", tc.line, tc.want, htp, out)
			}
			noSecret("the error for htpasswd line "+strconv.Quote(tc.line), out, tc.secret)
		}
	})

	t.Run("proxy upstream with a password", func(t *testing.T) {
		for _, tc := range []struct{ url, secret string }{
			{"http://bob:s3cr3tpw@127.0.0.1:1", "s3cr3tpw"},
			{"http://bob:s3cr3t/pw@127.0.0.1:1", "s3cr3t"},
			{"http://bob:s3cr3t%zz@127.0.0.1:1", "s3cr3t"},
			{"ftp://bob:s3cr3tpw@127.0.0.1:1", "s3cr3tpw"},
		} {
			out := check("proxy.ini", "[app:main]\nuse = egg:paddock#proxy\naddress = "+tc.url+"\n")
			if !strings.Contains(out, "proxy.ini:3:") {
				t.Errorf("%s: no located error:\n%s", tc.url, out)
			}
			noSecret("the error for upstream "+tc.url, out, tc.secret)
		}
	})

	t.Run("broken TLS key", func(t *testing.T) {
		certfile, keyfile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		protoWritePair(t, certfile, keyfile, 1)
		secret := base64.StdEncoding.EncodeToString([]byte("SECRET-KEY-MATERIAL-0123456789"))
		write("key.pem", "-----BEGIN EC PRIVATE KEY-----\n"+secret+"\n-----END EC PRIVATE KEY-----\n")
		cfg := write("tls.ini", fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = 127.0.0.1:%d\ncertfile = %s\nkeyfile = %s\nworkers = 1\n\n[app:main]\nuse = egg:paddock#hello\n",
			freePort(t), certfile, keyfile))
		out, errOut, code := runCmd(t, exec.Command("paddock", "serve", "--ctl-socket", filepath.Join(dir, "tls.sock"), cfg))
		if code == 0 || !strings.Contains(errOut, "keyfile") {
			t.Fatalf("serve with a broken key: exit %d, want a failure naming keyfile:\n%s%s", code, out, errOut)
		}
		noSecret("serve with a broken key", out+errOut, secret, "SECRET-KEY", secret[:16])
	})

	t.Run("running master", func(t *testing.T) {
		hash, err := bcrypt.GenerateFromPassword([]byte("right-password-7"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htp := write("users", "alice:"+string(hash)+"\n")
		access := filepath.Join(dir, "access.log")
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		config := fmt.Sprintf(`[DEFAULT]
db_password = hunter2-db

[server:main]
use = egg:paddock#http
bind = %s
workers = 1
graceful_timeout = 3
accesslog = %s

[pipeline:main]
pipeline = auth hello

[filter:auth]
use = egg:paddock#basic_auth
htpasswd = %s

[app:hello]
use = egg:paddock#hello
body = hello %%(db_password)s
api_token = tok-SECRET-42
`, addr, access, htp)
		// The app's body shows the interpolated secret on purpose: that
		// is the app's business, not the control API's.
		cmd, stderr, _ := startPaddock(t, config, "--ctl-socket", filepath.Join(dir, "m.sock"))
		t.Cleanup(func() { secStopMaster(t, cmd) })
		m := &ctlMaster{cmd: cmd, stderr: stderr, sock: filepath.Join(dir, "m.sock"), addr: addr,
			client: &control.Client{Path: filepath.Join(dir, "m.sock"), Timeout: 10 * time.Second}}
		t.Cleanup(m.client.CloseIdleConnections)
		m.waitReady(t, 1)

		client := &http.Client{Timeout: 5 * time.Second}
		for _, pw := range []string{"right-password-7", "WRONG-password-9"} {
			req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth("alice", pw)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[bool]int{true: 200, false: 401}[pw == "right-password-7"]; resp.StatusCode != want {
				t.Errorf("password %s: status %d, want %d", pw, resp.StatusCode, want)
			}
		}
		secrets := []string{"hunter2-db", "tok-SECRET-42", "right-password-7", "WRONG-password-9", string(hash)}
		for _, args := range [][]string{
			{"config", "show"}, {"config", "show", "--raw"}, {"--json", "config", "show"},
			{"pipeline", "--format", "json"}, {"pipeline", "--format", "text"}, {"pipeline", "--format", "dot"},
		} {
			out, errOut, code := ctlRunE2E(t, m.sock, args...)
			if code != 0 {
				t.Fatalf("ctl %v: exit %d\n%s%s", args, code, out, errOut)
			}
			noSecret(fmt.Sprintf("ctl %v", args), out+errOut, secrets...)
			if slices.Contains(args, "--raw") && (!strings.Contains(out, "db_password = "+control.Redacted) ||
				!strings.Contains(out, "api_token = "+control.Redacted) || !strings.Contains(out, "htpasswd = "+htp)) {
				t.Errorf("ctl config show --raw: secrets not redacted in place, or the htpasswd path hidden:\n%s", out)
			}
		}
		waitFor(t, "two access log lines", 10*time.Second, func() bool {
			b, _ := os.ReadFile(access)
			return strings.Count(string(b), "\n") >= 2
		})
		secStopMaster(t, cmd)
		b, err := os.ReadFile(access)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), " alice ") {
			t.Errorf("the access log does not name the user:\n%s", b)
		}
		noSecret("the access log", string(b), secrets...)
		noSecret("the master's log", stderr.String(), secrets...)
	})
}
