// Command upgrade measures paddock's zero-downtime binary upgrade on this
// machine. It starts a master (copied from -v1 into a temp dir, 127.0.0.1
// only, a control socket and a pidfile there) and upgrades it -n times,
// alternating the two binaries by atomic rename into the path the master
// was started from, under a bounded load (keep-alive clients and clients
// opening a fresh connection per request). For each upgrade it measures,
// from the POST /v1/upgrade call (the request `paddock ctl upgrade`
// sends):
//
//   - the answer (the new master is ready);
//   - the first GET /v1/status naming the new version (the version shows
//     in status only: responses of the app carry no version);
//   - the first app response served by a worker of the new master (its
//     X-Paddock-Worker pid, debug_worker_header, is a child of the new
//     master);
//   - the old master's exit (its workers drained).
//
// It counts every failed app request, and at the end kills every process
// it started, by pid. It builds nothing itself:
//
//	go build -ldflags "-X main.version=v1" -o /tmp/v1 . &&
//	go build -ldflags "-X main.version=v2" -o /tmp/v2 . &&
//	go run ./bench/upgrade -v1 /tmp/v1 -v2 /tmp/v2 -n 10
package main

import (
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"paddock/internal/loadgen"

	"paddock/control"
)

func main() {
	v1 := flag.String("v1", "", "the paddock `BINARY` started first (built with -X main.version=v1)")
	v2 := flag.String("v2", "", "the paddock `BINARY` upgraded to (a different version)")
	n := flag.Int("n", 10, "number of upgrades (v1 -> v2 -> v1 ...)")
	workers := flag.Int("workers", 2, "workers")
	flag.Parse()
	if *v1 == "" || *v2 == "" || *n < 1 || *workers < 1 {
		fmt.Fprintln(os.Stderr, "upgrade bench: need -v1 and -v2 binaries, -n >= 1 and -workers >= 1")
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*v1, *v2, *n, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "upgrade bench:", err)
		os.Exit(1)
	}
}

const configTmpl = `[server:main]
use = egg:paddock#http
bind = %s
workers = %d
control_socket = %s
graceful_timeout = 5
debug_worker_header = true

[app:main]
use = egg:paddock#hello
body = hi
`

// Bounds of one upgrade.
const (
	upgradeLimit = 90 * time.Second // the POST /v1/upgrade call
	seenLimit    = 30 * time.Second // the new version seen, from the call
	exitLimit    = 30 * time.Second // the old master gone, from the answer
)

// versionOf runs `BINARY version`, whose first line is "paddock v1".
func versionOf(bin string) (string, error) {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", bin, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	f := strings.Fields(first)
	if len(f) != 2 {
		return "", fmt.Errorf("%s version: %q", bin, out)
	}
	return f[1], nil
}

// install copies src to dst by an atomic rename, as a package manager
// replaces a binary.
func install(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// procStat returns the state letter and parent pid of pid ("" when gone).
// gone counts a zombie as gone: the first master is this process's child,
// reaped by cmd.Wait.
func procStat(pid int) (state string, ppid int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0], ppid
}

func gone(pid int) bool {
	s, _ := procStat(pid)
	return s == "" || s == "Z" || s == "X"
}

// childrenOf lists the live children of pid.
func childrenOf(pid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if s, ppid := procStat(p); ppid == pid && s != "Z" && s != "X" {
			out = append(out, p)
		}
	}
	return out
}

// sample is one upgrade's timings, from the call.
type sample struct {
	answer, status, app, exit time.Duration
}

func run(v1, v2 string, n, workers int) (err error) {
	ver1, err := versionOf(v1)
	if err != nil {
		return err
	}
	ver2, err := versionOf(v2)
	if err != nil {
		return err
	}
	if ver1 == ver2 {
		return fmt.Errorf("both binaries are version %s: build them with different -ldflags \"-X main.version=...\"", ver1)
	}
	dir, err := os.MkdirTemp("", "paddock-upgrade-bench")
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
	exe := filepath.Join(dir, "paddock")
	sock := filepath.Join(dir, "ctl.sock")
	cfg := filepath.Join(dir, "paste.ini")
	if err := install(v1, exe); err != nil {
		return err
	}
	if err := os.WriteFile(cfg, fmt.Appendf(nil, configTmpl, addr, workers, sock), 0o644); err != nil {
		return err
	}
	// A file, not a pipe: every new master inherits it.
	logPath := filepath.Join(dir, "paddock.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	defer func() {
		if err != nil {
			if b, _ := os.ReadFile(logPath); len(b) > 0 {
				fmt.Fprintf(os.Stderr, "masters' log:\n%s", b)
			}
		}
	}()
	cmd := exec.Command(exe, "serve", "--log-level", "warning", "--pidfile", filepath.Join(dir, "paddock.pid"), cfg)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	firstDone := make(chan struct{})
	go func() { cmd.Wait(); close(firstDone) }()
	var (
		mu      sync.Mutex
		masters = []int{cmd.Process.Pid} // every master started, killed at the end
	)
	defer func() {
		mu.Lock()
		pids := slices.Clone(masters)
		mu.Unlock()
		// The live master stops gracefully; whatever is left of any
		// master and its workers is killed.
		last := pids[len(pids)-1]
		if !gone(last) {
			syscall.Kill(last, syscall.SIGTERM)
			for end := time.Now().Add(15 * time.Second); !gone(last) && time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond)
			}
		}
		for _, pid := range pids {
			kids := childrenOf(pid)
			syscall.Kill(pid, syscall.SIGKILL)
			for _, k := range kids {
				syscall.Kill(k, syscall.SIGKILL)
			}
		}
		<-firstDone
	}()

	ctl := &control.Client{Path: sock, Timeout: 5 * time.Second}
	defer ctl.CloseIdleConnections()
	status := func() (control.Status, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return ctl.Status(ctx)
	}
	var st control.Status
	for end := time.Now().Add(30 * time.Second); ; {
		st, err = status()
		if err == nil && st.Workers.Ready == workers {
			break
		}
		if time.Now().After(end) {
			return fmt.Errorf("paddock did not get %d ready workers within 30s: %v", workers, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Pid != cmd.Process.Pid || st.Version != ver1 {
		return fmt.Errorf("status names pid %d %s, want %d %s", st.Pid, st.Version, cmd.Process.Pid, ver1)
	}

	l := loadgen.Start("http://" + addr + "/")
	stopped := false
	defer func() {
		if !stopped {
			l.Stop()
		}
	}()
	oldPid, oldVersion := st.Pid, ver1
	var samples []sample
	for i := 1; i <= n; i++ {
		bin, want := v2, ver2
		if i%2 == 0 {
			bin, want = v1, ver1
		}
		if err := install(bin, exe); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond) // load on the old master
		s, newPid, err := upgradeOnce(sock, addr, oldPid, want)
		if newPid > 0 {
			mu.Lock()
			masters = append(masters, newPid)
			mu.Unlock()
		}
		if err != nil {
			return fmt.Errorf("upgrade %d (%s -> %s): %w", i, oldVersion, want, err)
		}
		fmt.Printf("upgrade %2d  %s -> %s  pid %d -> %d  answer %v  status %v  app %v  old master gone %v\n", i, oldVersion, want, oldPid, newPid,
			ms(s.answer), ms(s.status), ms(s.app), ms(s.exit))
		samples = append(samples, s)
		oldPid, oldVersion = newPid, want
	}
	l.Stop()
	stopped = true
	fmt.Printf("\nworkers=%d upgrades=%d requests ok=%d failed=%d\n", workers, n, l.OK(), l.Failed())
	if errs := l.Errors(); len(errs) > 0 {
		fmt.Printf("first failures: %q\n", errs)
	}
	pick := func(f func(sample) time.Duration) []time.Duration {
		var d []time.Duration
		for _, s := range samples {
			d = append(d, f(s))
		}
		return d
	}
	fmt.Printf("POST /v1/upgrade (ctl upgrade) call -> answer:           %s\n", summary(pick(func(s sample) time.Duration { return s.answer })))
	fmt.Printf("call -> first status with the new version:              %s\n", summary(pick(func(s sample) time.Duration { return s.status })))
	fmt.Printf("call -> first app response from a new master's worker:  %s\n", summary(pick(func(s sample) time.Duration { return s.app })))
	fmt.Printf("call -> old master exited (drained):                    %s\n", summary(pick(func(s sample) time.Duration { return s.exit })))
	if l.Failed() > 0 {
		return fmt.Errorf("%d failed requests", l.Failed())
	}
	return nil
}

// upgradeOnce upgrades the master oldPid to version want and returns the
// timings and the new master's pid.
func upgradeOnce(sock, addr string, oldPid int, want string) (sample, int, error) {
	var s sample
	oldWorkers := childrenOf(oldPid)
	ctx, cancel := context.WithTimeout(context.Background(), seenLimit)
	defer cancel()
	var wg sync.WaitGroup
	var statusAt, appAt atomic.Int64 // since start; 0: not seen
	var appPid atomic.Int64
	start := time.Now()
	// The first status naming the new version, each on a new connection
	// (one kept alive to the old master goes on being answered by it
	// until it exits).
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &control.Client{Path: sock, Timeout: time.Second}
		for ctx.Err() == nil {
			st, err := c.Status(ctx)
			c.CloseIdleConnections()
			if err == nil && st.Version == want && st.Pid != oldPid {
				statusAt.Store(int64(time.Since(start)))
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	// The first app response from a worker the old master did not have,
	// on fresh connections (a kept-alive one stays with its worker).
	wg.Add(1)
	go func() {
		defer wg.Done()
		tr := &http.Transport{DisableKeepAlives: true}
		c := &http.Client{Timeout: 2 * time.Second, Transport: tr}
		for ctx.Err() == nil {
			resp, err := c.Get("http://" + addr + "/")
			if err != nil {
				continue // the load client counts failures
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			w, _ := strconv.Atoi(resp.Header.Get("X-Paddock-Worker"))
			if w > 0 && !slices.Contains(oldWorkers, w) {
				appAt.Store(int64(time.Since(start)))
				appPid.Store(int64(w))
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	uctx, ucancel := context.WithTimeout(context.Background(), upgradeLimit)
	defer ucancel()
	ctl := &control.Client{Path: sock, Timeout: upgradeLimit}
	res, err := ctl.Upgrade(uctx)
	ctl.CloseIdleConnections()
	s.answer = time.Since(start)
	if err != nil {
		cancel()
		wg.Wait()
		return s, res.NewPid, err
	}
	if !res.OK || res.OldPid != oldPid || res.NewPid <= 0 || res.NewVersion != want {
		cancel()
		wg.Wait()
		return s, res.NewPid, fmt.Errorf("answer %+v, want old pid %d and version %s", res, oldPid, want)
	}
	wg.Wait()
	if statusAt.Load() == 0 || appAt.Load() == 0 {
		return s, res.NewPid, fmt.Errorf("the new version was not seen within %v (status: %v, app: %v)", seenLimit, statusAt.Load() != 0, appAt.Load() != 0)
	}
	s.status, s.app = time.Duration(statusAt.Load()), time.Duration(appAt.Load())
	if _, ppid := procStat(int(appPid.Load())); ppid != res.NewPid {
		fmt.Fprintf(os.Stderr, "upgrade bench: the first new worker %d has parent %d, not the new master %d\n", appPid.Load(), ppid, res.NewPid)
	}
	for end := time.Now().Add(exitLimit); ; {
		if gone(oldPid) {
			break
		}
		if time.Now().After(end) {
			return s, res.NewPid, errors.New("the old master did not exit")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.exit = time.Since(start)
	return s, res.NewPid, nil
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

func summary(d []time.Duration) string {
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return fmt.Sprintf("p50 %v  p99 %v  max %v", ms(q(0.50)), ms(q(0.99)), ms(d[len(d)-1]))
}
