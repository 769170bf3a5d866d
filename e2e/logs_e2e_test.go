package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"paddock/internal/command"

	"paddock/control"
)

// logsMaster is a master with its access and error logs in dir/logs.
type logsMaster struct {
	*ctlMaster
	dir, logs        string
	access, errorLog string
	pidfile          string
}

// startLogsMaster starts paddock serve (workers >= 1) with accesslog and
// errorlog files under a fresh directory; the access lines say which
// worker wrote them (%(p)s) and for which path.
func startLogsMaster(t *testing.T, workers int, extra string, args ...string) *logsMaster {
	t.Helper()
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sock := filepath.Join(dir, "ctl.sock")
	m := &logsMaster{dir: dir, logs: logs, access: filepath.Join(logs, "access.log"), errorLog: filepath.Join(logs, "error.log")}
	config := fmt.Sprintf(`[server:main]
use = egg:paddock#http
bind = %s
workers = %d
graceful_timeout = 3
debug_worker_header = true
accesslog = %s
errorlog = %s
access_log_format = %%%%(p)s %%%%(U)s %%%%(s)s
%s
[app:main]
use = egg:paddock#hello
`, addr, workers, m.access, m.errorLog, extra)
	cmd, stderr, pidfile := startPaddock(t, config, append([]string{"--ctl-socket", sock}, args...)...)
	m.pidfile = pidfile
	m.ctlMaster = &ctlMaster{cmd: cmd, stderr: stderr, sock: sock, addr: addr, config: filepath.Join(filepath.Dir(pidfile), "paste.ini"),
		client: &control.Client{Path: sock, Timeout: 10 * time.Second}}
	t.Cleanup(m.client.CloseIdleConnections)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stderr:\n%s\nerror log:\n%s", stderr, fileText(m.errorLog))
		}
	})
	var ws []control.Worker
	waitFor(t, fmt.Sprintf("%d ready workers", workers), 20*time.Second, func() bool {
		var err error
		ws, err = m.client.Workers(t.Context())
		if err != nil || len(ws) != workers {
			return false
		}
		for _, w := range ws {
			if w.State != "ready" {
				return false
			}
		}
		return true
	})
	return m
}

func fileText(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// workerPids are the pids of the running workers.
func (m *logsMaster) workerPids(t *testing.T) []int {
	t.Helper()
	ws, err := m.client.Workers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, w := range ws {
		pids = append(pids, w.Pid)
	}
	slices.Sort(pids)
	return pids
}

// hitEvery sends GET path on new connections, four at a time, until every
// worker in pids has answered one (X-Paddock-Worker); it returns how many
// requests each pid answered.
func (m *logsMaster) hitEvery(t *testing.T, path string, pids []int) map[int]int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var mu sync.Mutex
	seen := map[int]int{}
	all := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pids {
			if seen[p] == 0 {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for !all() {
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: after 20 s only workers %v answered, want all of %v", path, seen, pids)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				resp, err := client.Get("http://" + m.addr + path)
				if err != nil {
					t.Errorf("GET %s: %v", path, err)
					return
				}
				resp.Body.Close()
				pid, _ := strconv.Atoi(resp.Header.Get("X-Paddock-Worker"))
				if resp.StatusCode != 200 || pid == 0 {
					t.Errorf("GET %s: %d, worker %q", path, resp.StatusCode, resp.Header.Get("X-Paddock-Worker"))
					return
				}
				mu.Lock()
				seen[pid]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	return seen
}

// accessLines counts the lines "<pid> path 200" of a log, by pid.
func accessLines(text, path string) map[int]int {
	out := map[int]int{}
	re := regexp.MustCompile(`(?m)^<(\d+)> ` + regexp.QuoteMeta(path) + ` 200$`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		pid, _ := strconv.Atoi(m[1])
		out[pid]++
	}
	return out
}

// waitAccess waits until file holds exactly the lines seen (the workers
// write through a buffer: a line lands a moment after its response).
func waitAccess(t *testing.T, file, path string, seen map[int]int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s lines %v in %s", path, seen, file), 10*time.Second, func() bool {
		return fmt.Sprint(accessLines(fileText(file), path)) == fmt.Sprint(seen)
	})
}

// reopenedBy counts "worker: log files reopened" lines of each pid.
func reopenedBy(text string, pids []int) map[int]int {
	out := map[int]int{}
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, "worker: log files reopened") {
			continue
		}
		for _, p := range pids {
			if strings.Contains(line, fmt.Sprintf("pid=%d ", p)) {
				out[p]++
			}
		}
	}
	return out
}

// logrotate's way: rename the files, then ctl logs reopen (or USR1); the
// next lines of the master and of both workers go to new files at the old
// paths, and nothing more reaches the renamed ones.
func TestLogsReopen(t *testing.T) {
	m := startLogsMaster(t, 2, "")
	pids := m.workerPids(t)
	seen := m.hitEvery(t, "/before", pids)
	waitAccess(t, m.access, "/before", seen)
	if !strings.Contains(fileText(m.errorLog), "master: ready") || !strings.Contains(fileText(m.errorLog), "worker: booted") {
		t.Fatalf("error log lacks the master's or the workers' lines:\n%s", fileText(m.errorLog))
	}
	if m.stderr.String() != "" {
		t.Errorf("stderr is not empty with errorlog set:\n%s", m.stderr)
	}

	rotate := func(suffix string) {
		t.Helper()
		for _, f := range []string{m.access, m.errorLog} {
			if err := os.Rename(f, f+suffix); err != nil {
				t.Fatal(err)
			}
		}
	}

	// ctl logs reopen returns once every worker reopened.
	rotate(".1")
	out, errOut, code := ctlRunE2E(t, m.sock, "logs", "reopen")
	if code != 0 || out != "logs reopened\n" {
		t.Fatalf("ctl logs reopen: exit %d\n%s%s", code, out, errOut)
	}
	for _, f := range []string{m.access, m.errorLog} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("no new file at the old path once ctl returned: %v", err)
		}
	}
	seen = m.hitEvery(t, "/after-ctl", pids)
	waitAccess(t, m.access, "/after-ctl", seen)
	if n := accessLines(fileText(m.access+".1"), "/after-ctl"); len(n) != 0 {
		t.Errorf("the rotated access log got new lines: %v", n)
	}
	waitFor(t, "the workers' reopen lines in the new error log", 10*time.Second, func() bool {
		return fmt.Sprint(reopenedBy(fileText(m.errorLog), pids)) == fmt.Sprint(map[int]int{pids[0]: 1, pids[1]: 1})
	})
	if !strings.Contains(fileText(m.errorLog), "master: log files reopened") {
		t.Errorf("new error log lacks the master's line:\n%s", fileText(m.errorLog))
	}
	if strings.Contains(fileText(m.errorLog+".1"), "log files reopened") {
		t.Errorf("the rotated error log got lines after the rotation:\n%s", fileText(m.errorLog+".1"))
	}

	// USR1 to the master: the same, asynchronously.
	rotate(".2")
	if err := m.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both workers to reopen after USR1", 10*time.Second, func() bool {
		return fmt.Sprint(reopenedBy(fileText(m.errorLog), pids)) == fmt.Sprint(map[int]int{pids[0]: 1, pids[1]: 1})
	})
	seen = m.hitEvery(t, "/after-usr1", pids)
	waitAccess(t, m.access, "/after-usr1", seen)
	for _, old := range []string{m.access + ".1", m.access + ".2"} {
		if n := accessLines(fileText(old), "/after-usr1"); len(n) != 0 {
			t.Errorf("%s got new lines: %v", old, n)
		}
	}
	if !strings.Contains(fileText(m.errorLog), `master: signal received: signal=USR1 action="reopen logs"`) &&
		!strings.Contains(fileText(m.errorLog+".2"), `master: signal received: signal=USR1 action="reopen logs"`) {
		t.Errorf("no USR1 line in either error log")
	}

	// A graceful stop flushes: every line of the last requests is there.
	seen = m.hitEvery(t, "/last", pids)
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, m.ctlMaster)
	if got := accessLines(fileText(m.access), "/last"); fmt.Sprint(got) != fmt.Sprint(seen) {
		t.Errorf("after stop: /last lines %v, want %v", got, seen)
	}
	if !strings.Contains(fileText(m.errorLog), "master: stopped") {
		t.Errorf("error log lacks the master's last line:\n%s", fileText(m.errorLog))
	}
}

func waitExit(t *testing.T, m *ctlMaster) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- m.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("paddock exited with %v\n%s", err, m.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("paddock did not exit\n%s", m.stderr)
	}
}

// A path that cannot be opened at reopen time keeps the old files:
// ctl names every file that failed and exits 1, the lines keep going to
// the old files, and USR1 logs the same failures.
func TestLogsReopenFailureKeepsOldFiles(t *testing.T) {
	m := startLogsMaster(t, 2, "")
	pids := m.workerPids(t)
	// The log directory is moved away and a plain file takes its name:
	// nothing can be opened under it any more.
	old := m.logs + ".old"
	if err := os.Rename(m.logs, old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.logs, []byte("not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oldAccess, oldError := filepath.Join(old, "access.log"), filepath.Join(old, "error.log")

	out, errOut, code := ctlRunE2E(t, m.sock, "logs", "reopen")
	if code != 1 {
		t.Fatalf("ctl logs reopen: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"paddock ctl: ",
		"master: errorlog: reopen (still writing to the old file): open " + m.errorLog + ": not a directory",
		fmt.Sprintf("(pid %d): accesslog: reopen (still writing to the old file): open %s: not a directory", pids[0], m.access),
		fmt.Sprintf("(pid %d): accesslog: reopen (still writing to the old file): open %s: not a directory", pids[1], m.access),
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("ctl stderr lacks %q:\n%s", want, errOut)
		}
	}
	seen := m.hitEvery(t, "/kept", pids)
	waitAccess(t, oldAccess, "/kept", seen)
	waitFor(t, "the failures in the old error log", 10*time.Second, func() bool {
		text := fileText(oldError)
		return strings.Contains(text, "master: cannot reopen the error log; still writing to the old file") &&
			strings.Count(text, "worker: cannot reopen the access log; still writing to the old file") == 2
	})

	if err := m.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "USR1's failures in the old error log", 10*time.Second, func() bool {
		return strings.Count(fileText(oldError), "worker: cannot reopen the access log; still writing to the old file") == 4
	})
	seen = m.hitEvery(t, "/still-kept", pids)
	waitAccess(t, oldAccess, "/still-kept", seen)
}

// Log files that cannot be opened at start, and a bad access_log_format,
// stop serve with exit 1 naming the setting's file:line and the path.
func TestLogsStartErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name, settings string) string {
		p := filepath.Join(dir, name)
		text := "[server:main]\nuse = egg:paddock#http\nbind = 127.0.0.1:" + strconv.Itoa(freePort(t)) + "\n" + settings + "\n[app:main]\nuse = egg:paddock#hello\n"
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	errorlog := write("errorlog.ini", "errorlog = "+notDir+"/error.log\n")
	accesslog := write("accesslog.ini", "workers = 2\naccesslog = "+notDir+"/access.log\n")
	inproc := write("inproc.ini", "workers = 0\naccesslog = "+notDir+"/access.log\n")
	format := write("format.ini", "accesslog = -\naccess_log_format = %%(h)s %%({x}z)s\n")
	unescaped := write("unescaped.ini", "access_log_format = %(h)s\n")
	good := write("good.ini", "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"errorlog", []string{"serve", errorlog}, errorlog + ":4: errorlog: open " + notDir + "/error.log: not a directory"},
		{"accesslog", []string{"serve", accesslog}, accesslog + ":5: accesslog: open " + notDir + "/access.log: not a directory"},
		{"accesslog in process", []string{"serve", inproc}, inproc + ":5: accesslog: open " + notDir + "/access.log: not a directory"},
		{"accesslog flag", []string{"serve", "--accesslog", notDir + "/a.log", good}, "--accesslog: accesslog: open " + notDir + "/a.log: not a directory"},
		{"format at serve", []string{"serve", format}, format + `:5: [server:main]: access_log_format: unknown atom %({x}z)s: {NAME} is followed by i (request header), o (response header) or e (environment) (at byte 6 of "%(h)s %({x}z)s")`},
		{"format at check", []string{"check", format}, format + `:5: [server:main]: access_log_format: unknown atom %({x}z)s`},
		{"format flag", []string{"serve", "--access-log-format", "%(h)s %(zz)s", good}, `--access-log-format: unknown atom %(zz)s`},
		{"unescaped in the file", []string{"check", unescaped}, unescaped + `:4: [server:main]: Bad value substitution: option 'access_log_format'`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(append([]string{"paddock"}, tc.args...), &stdout, &stderr)
			wantCode := command.ExitFailed
			if strings.HasPrefix(tc.name, "format flag") {
				wantCode = command.ExitUsage // a bad flag is a bad command line
			}
			if code != wantCode || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d (want %d), stderr:\n%s\nwant it to contain %q", code, wantCode, stderr.String(), tc.want)
			}
			if strings.Contains(stderr.String(), "listening") {
				t.Errorf("served before failing:\n%s", stderr.String())
			}
		})
	}
}

// --log-format json makes the workers' access lines JSON objects too,
// with the fields of ECOSYSTEM §2.4; a reload to a new format rolls the
// workers onto it.
func TestLogsJSONAndReload(t *testing.T) {
	m := startLogsMaster(t, 1, "", "--log-format", "json", "--watch-config=false")
	pids := m.workerPids(t)
	m.hitEvery(t, "/json?q=1", pids)
	var line map[string]any
	waitFor(t, "a JSON access line", 10*time.Second, func() bool {
		first, _, _ := strings.Cut(fileText(m.access), "\n")
		return first != "" && json.Unmarshal([]byte(first), &line) == nil
	})
	for k, want := range map[string]any{"@module": "access", "@message": "request", "method": "GET", "path": "/json", "query": "q=1",
		"status": float64(200), "bytes": float64(len(get(t, m.addr))), "worker_pid": float64(pids[0]), "worker_id": float64(1),
		"generation": float64(0), "app": "main", "remote_addr": "127.0.0.1", "proto": "HTTP/1.1"} {
		if line[k] != want {
			t.Errorf("%s = %v (%T), want %v", k, line[k], line[k], want)
		}
	}
	for _, k := range []string{"@timestamp", "duration_s", "host", "user_agent", "referer", "request_id", "user"} {
		if _, ok := line[k]; !ok {
			t.Errorf("no %s in %v", k, line)
		}
	}
	var elog map[string]any
	first, _, _ := strings.Cut(fileText(m.errorLog), "\n")
	if err := json.Unmarshal([]byte(first), &elog); err != nil || elog["@module"] == nil {
		t.Errorf("error log line %q is not hclog JSON: %v", first, err)
	}

	// A bad format on reload is refused with its file:line; a good one
	// reaches the workers.
	cfg := fileText(m.config)
	bad := strings.Replace(cfg, "access_log_format = %%(p)s %%(U)s %%(s)s", "access_log_format = %%(p)s %%(nope)s", 1)
	if bad == cfg {
		t.Fatal("config edit did not apply")
	}
	if err := os.WriteFile(m.config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := ctlRunE2E(t, m.sock, "reload")
	if code != 1 || !strings.Contains(out+errOut, m.config+":9: [server:main]: access_log_format: unknown atom %(nope)s") {
		t.Fatalf("reload of a bad format: exit %d\n%s%s", code, out, errOut)
	}
	good := strings.Replace(cfg, "access_log_format = %%(p)s %%(U)s %%(s)s", "access_log_format = common", 1)
	good = strings.Replace(good, "accesslog = "+m.access+"\n", "accesslog = "+m.access+".new\n", 1)
	if err := os.WriteFile(m.config, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = ctlRunE2E(t, m.sock, "reload")
	if code != 0 {
		t.Fatalf("reload: exit %d\n%s%s", code, out, errOut)
	}
	m.hitEvery(t, "/common", pidsOf(m.waitReady(t, 1)))
	waitFor(t, "a JSON line in the new access log", 10*time.Second, func() bool {
		var l map[string]any
		first, _, _ := strings.Cut(fileText(m.access+".new"), "\n")
		return json.Unmarshal([]byte(first), &l) == nil && l["path"] == "/common" && l["generation"] == float64(1)
	})
}

// workers = 0: the process reopens its own files on USR1.
func TestLogsInProcessReopen(t *testing.T) {
	m := startLogsInProcess(t)
	getPath(t, m.addr, "/one")
	waitFor(t, "the first line", 10*time.Second, func() bool { return accessLines(fileText(m.access), "/one")[m.cmd.Process.Pid] == 1 })
	for _, f := range []string{m.access, m.errorLog} {
		if err := os.Rename(f, f+".1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reopen", 10*time.Second, func() bool { return strings.Contains(fileText(m.errorLog), "master: log files reopened") })
	getPath(t, m.addr, "/two")
	waitFor(t, "the second line in the new file", 10*time.Second, func() bool {
		return accessLines(fileText(m.access), "/two")[m.cmd.Process.Pid] == 1
	})
	if strings.Contains(fileText(m.access+".1"), "/two") {
		t.Error("the rotated file got the new line")
	}
}

func startLogsInProcess(t *testing.T) *logsMaster {
	t.Helper()
	dir := t.TempDir()
	m := &logsMaster{dir: dir, logs: dir, access: filepath.Join(dir, "access.log"), errorLog: filepath.Join(dir, "error.log")}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	config := fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = 0\naccesslog = %s\nerrorlog = %s\naccess_log_format = %%%%(p)s %%%%(U)s %%%%(s)s\n\n[app:main]\nuse = egg:paddock#hello\n",
		addr, m.access, m.errorLog)
	cmd, stderr, _ := startPaddock(t, config)
	m.ctlMaster = &ctlMaster{cmd: cmd, stderr: stderr, addr: addr}
	waitFor(t, "the server", 20*time.Second, func() bool { return strings.Contains(fileText(m.errorLog), "master: ready") })
	return m
}

func getPath(t *testing.T, addr, path string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
}
