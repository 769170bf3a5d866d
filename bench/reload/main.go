// Command reload measures paddock's reload latency on this machine: the
// time from a config save (by rename, as editors do) to the first response
// of the new generation, seen by a keep-alive client polling as fast as it
// can, over N saves; and the same from `POST /v1/reload` returning. It
// counts every failed request meanwhile. Loopback only, bounded.
//
//	go build -o /tmp/paddock . && go run ./bench/reload -paddock /tmp/paddock -saves 50
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("paddock", "./paddock", "the paddock `BINARY`")
	saves := flag.Int("saves", 50, "number of saves (and of ctl reloads)")
	workers := flag.Int("workers", 2, "workers")
	flag.Parse()
	if err := run(*bin, *saves, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "reload bench:", err)
		os.Exit(1)
	}
}

const configTmpl = `[server:main]
use = egg:paddock#http
bind = %s
workers = %d
control_socket = %s

[app:main]
use = egg:paddock#hello
body = %s
`

func run(bin string, saves, workers int) error {
	dir, err := os.MkdirTemp("", "paddock-reload-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	sock := filepath.Join(dir, "ctl.sock")
	cfg := filepath.Join(dir, "paste.ini")
	write := func(body string) error {
		tmp := cfg + ".tmp"
		if err := os.WriteFile(tmp, fmt.Appendf(nil, configTmpl, addr, workers, sock, body), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, cfg)
	}
	if err := write("gen-0"); err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", "--log-level", "warning", cfg)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
		}
	}()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func() (string, error) {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d", resp.StatusCode)
		}
		return string(b), err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if body, err := get(); err == nil && body == "gen-0" {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("paddock did not start serving within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var failed atomic.Int64
	// waitFor polls until body is served, counting failures; it returns the
	// time the first matching response arrived.
	waitFor := func(body string, limit time.Duration) (time.Time, error) {
		end := time.Now().Add(limit)
		for time.Now().Before(end) {
			got, err := get()
			if err != nil {
				failed.Add(1)
				continue
			}
			if got == body {
				return time.Now(), nil
			}
		}
		return time.Time{}, fmt.Errorf("%q not served within %v", body, limit)
	}

	var saveLat []time.Duration
	for i := 1; i <= saves; i++ {
		body := fmt.Sprintf("gen-%d", i)
		start := time.Now()
		if err := write(body); err != nil {
			return err
		}
		at, err := waitFor(body, 5*time.Second)
		if err != nil {
			return err
		}
		saveLat = append(saveLat, at.Sub(start))
		time.Sleep(50 * time.Millisecond) // let the debounce window close
	}

	ctl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	// Each new body is written and reloaded at once, so the reload applies
	// it before the watcher's debounce fires; the watcher's own reload that
	// follows finds nothing new to serve.
	var ctlLat []time.Duration
	for i := 1; i <= saves; i++ {
		body := fmt.Sprintf("ctl-%d", i)
		if err := write(body); err != nil {
			return err
		}
		resp, err := ctl.Post("http://paddock/v1/reload", "application/json", strings.NewReader("{}"))
		if err != nil {
			return fmt.Errorf("ctl reload: %w", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		returned := time.Now()
		if resp.StatusCode != 200 && resp.StatusCode != 409 {
			return fmt.Errorf("ctl reload: status %d", resp.StatusCode)
		}
		at, err := waitFor(body, 5*time.Second)
		if err != nil {
			return err
		}
		ctlLat = append(ctlLat, max(at.Sub(returned), 0))
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("workers=%d saves=%d failed_requests=%d\n", workers, saves, failed.Load())
	fmt.Printf("save (rename) -> first new response: %s\n", summary(saveLat))
	fmt.Printf("POST /v1/reload returned -> first new response: %s\n", summary(ctlLat))
	return nil
}

func summary(d []time.Duration) string {
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return fmt.Sprintf("p50 %v  p99 %v  max %v", q(0.50).Round(time.Millisecond), q(0.99).Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}
