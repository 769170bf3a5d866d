package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Started the way systemd starts a socket-activated service (the socket
// as fd 3, LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES in the environment) and
// with no bind configured, paddock serves on the inherited socket.
func TestServeSocketActivation(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "paste.ini")
	if err := os.WriteFile(cfg, []byte("[server:main]\nuse = egg:paddock#http\nworkers = 1\n\n[app:main]\nuse = egg:paddock#hello\nbody = activated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// exec keeps the shell's pid, so LISTEN_PID=$$ names paddock.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec paddock serve "$0"`, cfg)
	cmd.ExtraFiles = []*os.File{f}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	// Only paddock holds the socket now.
	f.Close()
	ln.Close()

	client := &http.Client{Timeout: 5 * time.Second}
	var body []byte
	waitFor(t, "a response on the activated socket", 10*time.Second, func() bool {
		resp, err := client.Get(fmt.Sprintf("http://%s/", addr))
		if err != nil {
			return false
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	cmd.Process.Signal(syscall.SIGTERM)
	waitErr := cmd.Wait() // stderr is complete (and safe to read) after Wait
	if string(body) != "activated" {
		t.Fatalf("body %q, want \"activated\"\n%s", body, stderr.String())
	}
	if waitErr != nil {
		t.Fatalf("exit: %v\n%s", waitErr, stderr.String())
	}
	if !strings.Contains(stderr.String(), "bind=fd://3") && !strings.Contains(stderr.String(), "systemd:web") {
		t.Errorf("log does not show the activated socket:\n%s", stderr.String())
	}
}
