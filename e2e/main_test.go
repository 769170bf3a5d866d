package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"paddock/internal/command"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets scripts run the test binary as paddock (testscript puts it
// on $PATH under that name).
func TestMain(m *testing.M) {
	// A master given no control socket puts it under $RUNTIME_DIRECTORY
	// or $XDG_RUNTIME_DIR when they are set: one path for every master
	// of the suite. Without them it goes next to the test's own pidfile.
	// (Only in the test process: run as paddock, this binary keeps the
	// environment its test gave it.)
	if filepath.Base(os.Args[0]) != "paddock" {
		for _, v := range []string{"RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR", "PADDOCK_CTL_SOCKET", "PADDOCK_PIDFILE"} {
			os.Unsetenv(v)
		}
	}
	testscript.Main(m, map[string]func(){
		"paddock": func() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) },
	})
}

// repoRoot is the module's root, where the binary's main package is.
const repoRoot = ".."

// version and commit are main's defaults: an unstamped build.
var (
	version = "dev"
	commit  = ""
)

// run runs the CLI in-process, as the binary built from main.go would.
func run(args []string, stdout, stderr io.Writer) int {
	return command.Run(args, stdout, stderr, command.Build{Version: version, Commit: commit})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"freeport":    cmdFreeport,
			"waitfile":    cmdWaitfile,
			"httpget":     cmdHTTPGet,
			"sigsend":     cmdSigsend,
			"waitworkers": cmdWaitWorkers,
			"httpload":    cmdHTTPLoad,
		},
	})
}

// waitTimeout bounds every wait of the custom commands: a server that is
// not up by then is broken, and the script must fail rather than hang.
const waitTimeout = 10 * time.Second

// freeport NAME: set $NAME to a TCP port on 127.0.0.1 that was free a
// moment ago, from below the ephemeral range (allocPort). (A bind to :0
// would be free for sure, but its port is only in the server's log, which
// a script sees after the server exits.)
func cmdFreeport(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport NAME")
	}
	port, err := allocPort()
	ts.Check(err)
	ts.Setenv(args[0], strconv.Itoa(port))
}

// waitfile PATH: wait until PATH exists and is not empty.
func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile PATH")
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("%s did not appear within %v", args[0], waitTimeout)
}

// httpget [-fill Name=N]... [-target-len N] URL [want-status] [want-body-regexp]
//
// GETs URL, retrying while the connection is refused (the server may still
// be starting). -fill adds header Name with an N-byte value; -target-len
// pads the path so the request line is N bytes long. The response status
// and body go to stdout, so scripts can also match them with stdout.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! httpget")
	}
	hdr := http.Header{}
	targetLen := 0
	for len(args) >= 2 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-fill":
			name, n, ok := strings.Cut(args[1], "=")
			size, err := strconv.Atoi(n)
			if !ok || err != nil {
				ts.Fatalf("httpget: -fill wants Name=N, got %q", args[1])
			}
			hdr.Set(name, strings.Repeat("x", size))
		case "-target-len":
			n, err := strconv.Atoi(args[1])
			ts.Check(err)
			targetLen = n
		default:
			ts.Fatalf("httpget: unknown option %s", args[0])
		}
		args = args[2:]
	}
	if len(args) < 1 || len(args) > 3 {
		ts.Fatalf("usage: httpget [-fill Name=N]... [-target-len N] URL [want-status] [want-body-regexp]")
	}
	url := args[0]
	if targetLen > 0 {
		// "GET " + path + " HTTP/1.1" == targetLen
		i := strings.Index(url[len("http://"):], "/")
		path := url[len("http://")+i:]
		pad := targetLen - len("GET ") - len(path) - len(" HTTP/1.1")
		if pad < 0 {
			ts.Fatalf("httpget: -target-len %d is shorter than the request", targetLen)
		}
		url += strings.Repeat("a", pad)
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	ts.Check(err)
	req.Header = hdr
	client := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{DisableKeepAlives: true}}

	var resp *http.Response
	deadline := time.Now().Add(waitTimeout)
	for {
		resp, err = client.Do(req)
		if err == nil || !isRefused(err) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Check(err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "%d\n%s", resp.StatusCode, body)

	if len(args) >= 2 {
		want, err := strconv.Atoi(args[1])
		ts.Check(err)
		if resp.StatusCode != want {
			ts.Fatalf("GET %s: status %d, want %d; body:\n%s", args[0], resp.StatusCode, want, body)
		}
	}
	if len(args) == 3 {
		re, err := regexp.Compile(args[2])
		ts.Check(err)
		if !re.Match(body) {
			ts.Fatalf("GET %s: body %q does not match %q", args[0], body, args[2])
		}
	}
}

func isRefused(err error) bool {
	return strings.Contains(err.Error(), "connection refused")
}

// sigsend PIDFILE SIG: send SIG (TERM, INT, QUIT, HUP, USR1, ...) to the
// process whose pid PIDFILE holds. testscript's kill sends only KILL and
// INT, and does not reach processes by pidfile.
func cmdSigsend(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: sigsend PIDFILE SIG")
	}
	sigs := map[string]syscall.Signal{
		"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "HUP": syscall.SIGHUP,
		"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "TTIN": syscall.SIGTTIN, "TTOU": syscall.SIGTTOU,
		"WINCH": syscall.SIGWINCH, "KILL": syscall.SIGKILL, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
	}
	sig, ok := sigs[strings.TrimPrefix(args[1], "SIG")]
	if !ok {
		ts.Fatalf("sigsend: unknown signal %q", args[1])
	}
	var pid int
	if n, err := strconv.Atoi(args[0]); err == nil {
		pid = n // a pid, e.g. $WORKER1 from waitworkers
	} else {
		pid = readPid(ts, args[0])
	}
	ts.Check(syscall.Kill(pid, sig))
}

func readPid(ts *testscript.TestScript, path string) int {
	b, err := os.ReadFile(ts.MkAbs(path))
	ts.Check(err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	ts.Check(err)
	return pid
}

// waitworkers [-replaced] PIDFILE N: wait until the master whose pid
// PIDFILE holds has exactly N child processes (its workers), then set
// $WORKERS to their pids and $WORKER1... to each. With -replaced, none of
// them may be one of the previous $WORKERS.
func cmdWaitWorkers(ts *testscript.TestScript, neg bool, args []string) {
	replaced, without := false, 0
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch {
		case args[0] == "-replaced":
			replaced = true
			args = args[1:]
		case args[0] == "-without" && len(args) > 1:
			w, err := strconv.Atoi(args[1])
			ts.Check(err)
			without = w
			args = args[2:]
		default:
			ts.Fatalf("waitworkers: unknown option %s", args[0])
		}
	}
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitworkers [-replaced] [-without PID] PIDFILE N")
	}
	master := readPid(ts, args[0])
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	old := map[int]bool{}
	for _, f := range strings.Fields(ts.Getenv("WORKERS")) {
		p, _ := strconv.Atoi(f)
		old[p] = true
	}
	var got []int
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		got = childrenOf(master)
		ok := len(got) == n
		for _, p := range got {
			if replaced && old[p] || p == without {
				ok = false
			}
		}
		if ok {
			var strs []string
			for i, p := range got {
				strs = append(strs, strconv.Itoa(p))
				ts.Setenv(fmt.Sprintf("WORKER%d", i+1), strconv.Itoa(p))
			}
			ts.Setenv("WORKERS", strings.Join(strs, " "))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("master %d has workers %v, want %d (replaced=%v, previous %v)", master, got, n, replaced, old)
}

// httpload URL N: N sequential GETs, each on a new connection; every one
// must get 200. Prints "ok N" and, on a line of its own, how many distinct
// X-Paddock-Worker values answered ("workers K").
func cmdHTTPLoad(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: httpload URL N")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	client := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]bool{}
	for i := range n {
		resp, err := client.Get(args[0])
		if err != nil {
			ts.Fatalf("request %d: %v", i+1, err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			ts.Fatalf("request %d: status %d, %v", i+1, resp.StatusCode, err)
		}
		seen[resp.Header.Get("X-Paddock-Worker")] = true
	}
	fmt.Fprintf(ts.Stdout(), "ok %d\nworkers %d\n", n, len(seen))
}

// childrenOf lists the live (not zombie) children of pid, from /proc.
func childrenOf(pid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; split after ")".
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			out = append(out, child)
		}
	}
	slices.Sort(out)
	return out
}

// The exit codes scripts cannot see (! exec only says non-zero).
func TestServeExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.ini", "[app:main]\nuse = egg:paddock#hello\n")
	broken := write("broken.ini", "[app:main]\nuse = egg:paddock#nope\n")
	badSetting := write("setting.ini", "[server:main]\nuse = egg:paddock#http\nworkers = lots\n\n[app:main]\nuse = egg:paddock#hello\n")
	tests := []struct {
		name   string
		args   []string
		want   int
		stderr string
	}{
		{"broken app", []string{"serve", broken}, command.ExitFailed, broken + `:2: [app:main]: no factory registered for "egg:paddock#nope"`},
		{"bad file setting", []string{"serve", badSetting}, command.ExitFailed, badSetting + `:3: [server:main]: workers: not an integer: "lots"`},
		{"missing file", []string{"serve", filepath.Join(dir, "nope.ini")}, command.ExitFailed, "nope.ini"},
		{"bad flag value", []string{"serve", "--workers", "x", good}, command.ExitUsage, `--workers: not an integer: "x"`},
		{"bad log level", []string{"serve", "--log-level", "loud", good}, command.ExitUsage, `--log-level: unknown log level "loud"`},
		{"bad log format", []string{"serve", "--log-format", "xml", good}, command.ExitUsage, `--log-format "xml": want text or json`},
		{"no config", []string{"serve"}, command.ExitUsage, "need a CONFIG argument"},
		{"two configs", []string{"serve", good, good}, command.ExitUsage, "give CONFIG once"},
		{"flag after config", []string{"serve", good, "--workers", "1"}, command.ExitUsage, "flag --workers after CONFIG"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			got := run(append([]string{"paddock"}, tc.args...), &stdout, &stderr)
			if got != tc.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", got, tc.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr\n%s\ndoes not contain %q", stderr.String(), tc.stderr)
			}
		})
	}
}
