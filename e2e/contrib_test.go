package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unitFile is a systemd unit as key=value lines by section; comments are
// kept apart (some document alternatives the tests run).
type unitFile struct {
	keys     map[string]map[string][]string // section -> key -> values
	comments []string
}

func (u unitFile) get(section, key string) string {
	v := u.keys[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// parseUnit reads a unit file strictly: every line is blank, a comment, a
// [Section] systemd knows, or Key=Value with a key of letters and digits.
func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{keys: map[string]map[string][]string{}}
	known := map[string]bool{"Unit": true, "Service": true, "Socket": true, "Install": true}
	keyRe := regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			u.comments = append(u.comments, strings.TrimSpace(strings.TrimLeft(line, "#;")))
		case strings.HasPrefix(line, "["):
			section = strings.TrimSuffix(strings.TrimPrefix(line, "["), "]")
			if !known[section] || !strings.HasSuffix(line, "]") {
				t.Fatalf("%s:%d: unknown section %s", path, n, line)
			}
			u.keys[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || !keyRe.MatchString(k) || strings.TrimSpace(v) == "" {
				t.Fatalf("%s:%d: not Key=Value in a section: %q", path, n, line)
			}
			u.keys[section][k] = append(u.keys[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// commented returns the command of a comment line "Key=..." (an
// alternative the unit documents).
func (u unitFile) commented(t *testing.T, key string) string {
	t.Helper()
	for _, c := range u.comments {
		if v, ok := strings.CutPrefix(c, key+"="); ok {
			return v
		}
	}
	t.Fatalf("no commented %s= line", key)
	return ""
}

// TestContribSystemd checks the units ship what the README promises, and
// that the commands they document work against a real master.
func TestContribSystemd(t *testing.T) {
	defaultGrace := 30 * time.Second // graceful_timeout's default
	for _, c := range []struct {
		file, config, runtimeDir, ctlSock string
	}{
		{"paddock.service", "/etc/paddock/paddock.ini", "paddock", "/run/paddock/ctl.sock"},
		{"paddock@.service", "/etc/paddock/%i.ini", "paddock/%i", "/run/paddock/%i/ctl.sock"},
	} {
		t.Run(c.file, func(t *testing.T) {
			u := parseUnit(t, filepath.Join(repoRoot, "contrib", "systemd", c.file))
			want := map[string]string{
				"Type": "notify-reload", "NotifyAccess": "all", "KillMode": "mixed", "OOMPolicy": "continue",
				"RuntimeDirectory": c.runtimeDir, "NoNewPrivileges": "yes", "ProtectSystem": "strict",
				"ProtectHome": "yes", "PrivateTmp": "yes", "ExecStart": "/usr/bin/paddock serve " + c.config,
			}
			for k, v := range want {
				if got := u.get("Service", k); got != v {
					t.Errorf("%s=%q, want %q", k, got, v)
				}
			}
			if !strings.Contains(u.get("Service", "AmbientCapabilities"), "CAP_NET_BIND_SERVICE") {
				t.Error("no AmbientCapabilities=CAP_NET_BIND_SERVICE")
			}
			if n, err := strconv.Atoi(u.get("Service", "LimitNOFILE")); err != nil || n < 4096 {
				t.Errorf("LimitNOFILE=%q", u.get("Service", "LimitNOFILE"))
			}
			stop, err := time.ParseDuration(u.get("Service", "TimeoutStopSec"))
			if err != nil || stop < defaultGrace+5*time.Second {
				t.Errorf("TimeoutStopSec=%q: want more than graceful_timeout (%v) plus a margin", u.get("Service", "TimeoutStopSec"), defaultGrace)
			}
			for _, k := range []string{"PIDFile", "ExecReload"} { // notify-reload needs no ExecReload; PIDFile races MAINPID
				if u.get("Service", k) != "" {
					t.Errorf("%s= is set", k)
				}
			}
			if u.get("Install", "WantedBy") != "multi-user.target" {
				t.Error("no WantedBy=multi-user.target")
			}
			// The pre-253 alternative names a ctl command that exists,
			// on the socket RuntimeDirectory= gives.
			reload := u.commented(t, "ExecReload")
			if !strings.HasPrefix(reload, "/usr/bin/paddock ctl --socket "+c.ctlSock+" ") {
				t.Errorf("commented ExecReload=%s", reload)
			}
		})
	}

	s := parseUnit(t, filepath.Join(repoRoot, "contrib", "systemd", "paddock-http.socket"))
	if s.get("Socket", "FileDescriptorName") != "http" || s.get("Socket", "Service") != "paddock.service" || s.get("Socket", "ListenStream") == "" {
		t.Errorf("paddock-http.socket: %v", s.keys)
	}

	// ExecReload of the pre-253 variant, against a real master.
	m := startCtlMaster(t, 1, "hi")
	reload := parseUnit(t, filepath.Join(repoRoot, "contrib", "systemd", "paddock.service")).commented(t, "ExecReload")
	args := strings.Fields(strings.ReplaceAll(reload, "/run/paddock/ctl.sock", m.sock))[1:]
	out, errOut, code := runCmd(t, exec.Command("paddock", args...))
	if code != 0 || !strings.Contains(out, "generation 1") {
		t.Fatalf("ExecReload command %q: exit %d: %s%s", args, code, out, errOut)
	}

	verifyUnits(t)
}

// verifyUnits runs systemd-analyze verify, when there is one, on copies
// of the units whose binary is this test's (it must exist); systemd
// older than 253 gets Type=notify, the comment's alternative. Any
// complaint fails.
func verifyUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("no systemd-analyze: units not verified by systemd")
		return
	}
	verOut, err := exec.Command(sa, "--version").Output()
	if err != nil {
		t.Skipf("systemd-analyze --version: %v", err)
	}
	f := strings.Fields(string(verOut))
	ver := 0
	if len(f) >= 2 {
		ver, _ = strconv.Atoi(f[1])
	}
	bin, err := exec.LookPath("paddock")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	names := []string{"paddock.service", "paddock@.service", "paddock-http.socket"}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(repoRoot, "contrib", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/bin/paddock", bin)
		if ver < 253 {
			text = strings.ReplaceAll(text, "Type=notify-reload", "Type=notify")
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// An instance of the template, as systemctl would load it.
	if err := os.Symlink("paddock@.service", filepath.Join(dir, "paddock@shop.service")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", "--man=no", "paddock.service", "paddock@shop.service", "paddock-http.socket")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
	out, err := cmd.CombinedOutput()
	t.Logf("systemd %d: systemd-analyze verify: %v %s", ver, err, out)
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify (systemd %d): %v\n%s", ver, err, out)
	}
}

// TestContribLogrotate runs the postrotate command of the logrotate
// stanza against a real master.
func TestContribLogrotate(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "contrib", "logrotate.d", "paddock"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, w := range []string{"postrotate", "endscript", "sharedscripts", "/var/log/paddock/*.log"} {
		if !strings.Contains(text, w) {
			t.Errorf("no %q in the logrotate stanza", w)
		}
	}
	if regexp.MustCompile(`(?m)^\s*copytruncate`).MatchString(text) {
		t.Error("copytruncate loses lines; paddock reopens its logs")
	}
	re := regexp.MustCompile(`/usr/bin/paddock (ctl [^>]*logs reopen)`)
	cmdLine := re.FindStringSubmatch(text)
	if cmdLine == nil {
		t.Fatalf("no `paddock ctl ... logs reopen` in:\n%s", text)
	}
	m := startCtlMaster(t, 1, "hi")
	args := strings.Fields(strings.ReplaceAll(cmdLine[1], `"$sock"`, m.sock))
	out, errOut, code := runCmd(t, exec.Command("paddock", args...))
	if code != 0 || !strings.Contains(out, "logs reopened") {
		t.Fatalf("postrotate command %q: exit %d: %s%s", args, code, out, errOut)
	}
}
