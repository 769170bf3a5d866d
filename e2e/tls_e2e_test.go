package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"paddock/internal/testcert"
)

// With certfile/keyfile set, every worker serves TLS and offers HTTP/2.
func TestServeTLSWithHTTP2(t *testing.T) {
	pair := testcert.New(t, testcert.Options{Serial: 1})
	certfile, keyfile := pair.WriteTemp(t)
	pool := pair.Pool()
	for _, workers := range []string{"0", "1"} {
		t.Run("workers="+workers, func(t *testing.T) {
			port := freePort(t)
			config := fmt.Sprintf(`[server:main]
use = egg:paddock#http
bind = 127.0.0.1:%d
workers = %s
certfile = %s
keyfile = %s

[app:main]
use = egg:paddock#hello
body = over tls
`, port, workers, certfile, keyfile)
			cmd, stderr, _ := startPaddock(t, config)
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: pool},
				ForceAttemptHTTP2: true,
			}}
			url := fmt.Sprintf("https://127.0.0.1:%d/", port)
			var resp *http.Response
			waitFor(t, "the TLS listener", 10*time.Second, func() bool {
				var err error
				resp, err = client.Get(url)
				return err == nil
			})
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "over tls" || resp.ProtoMajor != 2 {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("got %s %d %q, want HTTP/2 200 \"over tls\"\n%s", resp.Proto, resp.StatusCode, body, stderr)
			}
			// Plain HTTP on the TLS port is not served as plain HTTP.
			if r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
				b, _ := io.ReadAll(r.Body)
				r.Body.Close()
				if strings.Contains(string(b), "over tls") {
					t.Fatal("the app answered plain HTTP on a TLS listener")
				}
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit: %v\n%s", err, stderr)
			}
		})
	}
}

// A missing key file fails the start with the file named.
func TestServeTLSBadKeyFails(t *testing.T) {
	certfile, _ := testcert.New(t, testcert.Options{Serial: 1}).WriteTemp(t)
	config := fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = 127.0.0.1:%d\nworkers = 0\ncertfile = %s\nkeyfile = /nonexistent/key.pem\n\n[app:main]\nuse = egg:paddock#hello\n", freePort(t), certfile)
	cmd, stderr, _ := startPaddock(t, config)
	err := cmd.Wait()
	if err == nil || !strings.Contains(stderr.String(), "/nonexistent/key.pem") {
		t.Fatalf("exit %v, stderr:\n%s", err, stderr)
	}
}
