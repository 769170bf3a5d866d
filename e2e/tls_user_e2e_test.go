package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"paddock/control"
)

// With user set, the master (root) reads certfile and keyfile and hands
// the bytes to its workers, which never open them: a root-only key (0600
// in a 0700 directory, as /etc/ssl/private is) must not stop the workers
// (uid 65534) from booting nor from taking a new certificate on reload. A
// broken new pair keeps the old certificate, and so does a worker started
// after it: it gets the pair the master validated, not the files on disk.
func TestTLSUserRootOnlyKey(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only a root master can run workers as another user")
	}
	const uid = 65534
	u := secPasswdUser(t, uid)
	// The worker is this binary started as the user: make it and the
	// config reachable (go test's directories are 0700); the key's
	// directory stays root's alone.
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
	private := filepath.Join(dir, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	certfile, keyfile := filepath.Join(private, "cert.pem"), filepath.Join(private, "key.pem")
	writePair := func(serial int64) {
		t.Helper()
		protoWritePair(t, certfile, keyfile, serial)
		for _, f := range []string{certfile, keyfile} {
			if err := os.Chmod(f, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	writePair(1001)
	// The premise: the workers' user cannot read the key.
	if cat, err := exec.LookPath("cat"); err == nil {
		c := exec.Command(cat, keyfile)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
		if out, err := c.CombinedOutput(); err == nil {
			t.Fatalf("uid %d can read %s (%d bytes): the test proves nothing", uid, keyfile, len(out))
		}
	}

	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sock := filepath.Join(dir, "ctl.sock")
	cfg := filepath.Join(dir, "paste.ini")
	// watch_config off: the reloads below are the test's, one at a time.
	config := fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = 2\nuser = %s\ngroup = %d\ngraceful_timeout = 3\nwatch_config = false\ncertfile = %s\nkeyfile = %s\n\n[app:main]\nuse = egg:paddock#hello\nbody = over tls\n",
		addr, u.Username, uid, certfile, keyfile)
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("paddock", "serve", "--ctl-socket", sock, cfg)
	m := startSecMaster(t, cmd, sock, addr, cfg)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	t.Cleanup(client.CloseIdleConnections)
	// serves checks that n handshakes (landing on both workers) present
	// serial and that HTTPS requests are answered.
	serves := func(serial int64, n int) {
		t.Helper()
		for i := range n {
			if got := protoSerialAt(addr); got != serial {
				t.Fatalf("handshake %d presented serial %d, want %d", i, got, serial)
			}
		}
		resp, err := client.Get("https://" + addr + "/")
		if err != nil {
			t.Fatalf("HTTPS request: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "over tls" || resp.TLS == nil || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != serial {
			t.Fatalf("HTTPS request: %d %q", resp.StatusCode, body)
		}
	}
	asUser := func(ws []control.Worker) {
		t.Helper()
		for _, w := range ws {
			if st := secProcStatus(t, w.Pid); !slices.Equal(st["Uid"], []string{strconv.Itoa(uid), strconv.Itoa(uid), strconv.Itoa(uid), strconv.Itoa(uid)}) {
				t.Fatalf("worker %d: Uid %v, want %d", w.Pid, st["Uid"], uid)
			}
		}
	}

	before := m.waitReady(t, 2)
	asUser(before)
	serves(1001, 10)

	// A new pair, root-only too: ctl reload swaps it in place.
	writePair(1002)
	if out, errOut, code := ctlRunE2E(t, sock, "reload"); code != 0 {
		t.Fatalf("ctl reload: exit %d\n%s%s", code, out, errOut)
	}
	serves(1002, 10)
	after := m.waitReady(t, 2)
	if !slices.Equal(pidsOf(before), pidsOf(after)) {
		t.Errorf("workers %v were replaced by %v: a certificate change is loaded in place", pidsOf(before), pidsOf(after))
	}

	// A broken pair: a certificate of another key. The reload fails,
	// naming certfile and the problem, and the old certificate stays.
	other := t.TempDir()
	protoWritePair(t, filepath.Join(other, "c.pem"), filepath.Join(other, "k.pem"), 1003)
	data, err := os.ReadFile(filepath.Join(other, "c.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certfile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := ctlRunE2E(t, sock, "reload")
	if code != 1 || !strings.Contains(errOut, "certfile") || !strings.Contains(errOut, "private key does not match public key") {
		t.Errorf("ctl reload with a broken pair: exit %d, want 1 naming certfile and the mismatch\n%s", code, errOut)
	}
	serves(1002, 4)
	st, err := m.client.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.LastReload == nil || st.LastReload.OK {
		t.Errorf("last reload %+v, want the failure", st.LastReload)
	}

	// A worker started now (one killed) boots on the pair the master
	// validated, not on the broken files, and as the user.
	victim := after[0].Pid
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var replaced []control.Worker
	waitFor(t, "a replacement worker", 15*time.Second, func() bool {
		ws, err := m.client.Workers(t.Context())
		if err != nil || len(ws) != 2 || slices.Contains(pidsOf(ws), victim) {
			return false
		}
		for _, w := range ws {
			if w.State != "ready" {
				return false
			}
		}
		replaced = ws
		return true
	})
	asUser(replaced)
	serves(1002, 10)

	// The key's bytes are nowhere in what ctl shows, nor in the logs
	// (read once the master has stopped: its stderr is written until
	// then).
	keyPEM, err := os.ReadFile(keyfile)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.TrimSpace(string(keyPEM[strings.Index(string(keyPEM), "\n")+1:]))[:40]
	shown, _, _ := ctlRunE2E(t, sock, "config", "show", "--raw")
	shown2, _, _ := ctlRunE2E(t, sock, "config", "show")
	secStopMaster(t, cmd)
	for what, out := range map[string]string{"the logs": m.stderr.String(), "ctl config show --raw": shown, "ctl config show": shown2} {
		if strings.Contains(out, body) || strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("%s show the private key", what)
		}
	}
	if strings.Contains(m.stderr.String(), "permission denied") {
		t.Error("a permission error was logged")
	}
}
