package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"paddock/control"
)

// The config edits people and tools make, applied by the watcher to a
// master under load: every kind of save, broken saves, and bursts.

// reditSwitchLimit is how soon after a save the new body must be served
// (the watcher's debounce, the master's validation and the workers'
// in-place swap together).
const reditSwitchLimit = time.Second

// reditSetup bounds waits that are not under test (start, convergence):
// generous, the machine is shared.
const reditSetup = 20 * time.Second

// reditStartAt starts paddock serve on an existing config path (which may
// be a symlink) with a control socket, like startCtlMaster does for a
// config it writes itself, and waits for n ready workers.
func reditStartAt(t *testing.T, cfg, addr string, n int) *ctlMaster {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl.sock")
	cmd := exec.Command("paddock", "serve", "--pidfile", filepath.Join(dir, "paddock.pid"), "--ctl-socket", sock, cfg)
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
	m := &ctlMaster{cmd: cmd, stderr: &stderr, sock: sock, addr: addr, config: cfg,
		client: &control.Client{Path: sock, Timeout: 5 * time.Second}}
	t.Cleanup(m.client.CloseIdleConnections)
	reditStopOnCleanup(t, m)
	m.waitReady(t, n)
	return m
}

// reditStopOnCleanup stops the master gracefully when the test ends (it
// runs before startPaddock's kill, which then has nothing to do), waits
// for its workers to be gone, kills by pid whatever is left, and prints
// the master's log when the test failed.
func reditStopOnCleanup(t *testing.T, m *ctlMaster) {
	t.Cleanup(func() {
		var workers []int
		if ws, err := m.client.Workers(t.Context()); err == nil {
			workers = pidsOf(ws)
		}
		pid := m.cmd.Process.Pid
		exited := make(chan error, 1)
		go func() { exited <- m.cmd.Wait() }()
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			t.Errorf("master %d did not stop on TERM; killing it", pid)
			_ = m.cmd.Process.Kill()
			<-exited
		}
		deadline := time.Now().Add(10 * time.Second)
		for _, w := range workers {
			for !reditGone(w) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if !reditGone(w) {
				t.Errorf("worker %d still running after its master stopped; killing it", w)
				_ = syscall.Kill(w, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			log := m.stderr.String()
			if len(log) > 30000 {
				log = "...\n" + log[len(log)-30000:]
			}
			t.Logf("master log:\n%s", log)
		}
	})
}

// reditGone reports whether pid has exited (no process, or a zombie).
func reditGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}

// reditLoader is startLoad, finished when the test ends if finish was
// not reached (a t.Fatal on the way), so no client outlives its test.
type reditLoader struct {
	l    *loadClient
	done bool
}

func reditLoad(t *testing.T, addr string) *reditLoader {
	r := &reditLoader{l: startLoad(addr)}
	t.Cleanup(func() {
		if !r.done {
			r.l.finish(t)
		}
	})
	return r
}

// finish stops the load and requires zero failed requests.
func (r *reditLoader) finish(t *testing.T) {
	t.Helper()
	r.done = true
	r.l.finish(t)
}

// reditFinish stops the load and the poller and requires zero failed
// requests from both.
func reditFinish(t *testing.T, load *reditLoader, p *poller) {
	t.Helper()
	load.finish(t)
	p.close()
	if len(p.failures) > 0 {
		t.Errorf("poller: %d failed requests, first: %s", len(p.failures), p.failures[0])
	}
}

// reditStatus is `paddock ctl status --json`.
func reditStatus(t *testing.T, m *ctlMaster) control.Status {
	t.Helper()
	out, errOut, code := ctlRunE2E(t, m.sock, "status", "--json")
	var st control.Status
	if code != 0 {
		t.Fatalf("ctl status --json: exit %d\n%s%s", code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("ctl status --json: %v\n%s", err, out)
	}
	return st
}

// reditWorkerPids is the pids of `paddock ctl workers --json`, sorted.
func reditWorkerPids(t *testing.T, m *ctlMaster) []int {
	t.Helper()
	out, errOut, code := ctlRunE2E(t, m.sock, "workers", "--json")
	var res control.WorkersResponse
	if code != 0 {
		t.Fatalf("ctl workers --json: exit %d\n%s%s", code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("ctl workers --json: %v\n%s", err, out)
	}
	pids := pidsOf(res.Workers)
	slices.Sort(pids)
	return pids
}

// reditWaitBody waits until the poller's keep-alive connection gets body
// and returns how long that took from since; past give it fails the test.
func reditWaitBody(t *testing.T, p *poller, body string, since time.Time, give time.Duration) time.Duration {
	t.Helper()
	for p.lastBody() != body {
		if time.Since(since) > give {
			t.Fatalf("body %q not served %s after the save (serving %q)", body, give, p.lastBody())
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(since)
}

// reditWaitConverged waits until the master is at generation gen and every
// one of its n workers is ready on it, so that the next edit does not
// race a worker still loading this one.
func reditWaitConverged(t *testing.T, m *ctlMaster, gen, n int) {
	t.Helper()
	var last string
	deadline := time.Now().Add(reditSetup)
	for {
		st, err := m.client.Status(t.Context())
		ws, werr := m.client.Workers(t.Context())
		ok := err == nil && werr == nil && st.Generation == gen && len(ws) == n
		for _, w := range ws {
			ok = ok && w.State == "ready" && w.Generation == gen
		}
		if ok {
			return
		}
		last = fmt.Sprintf("generation %d (%v), workers %+v (%v)", st.Generation, err, ws, werr)
		if time.Now().After(deadline) {
			t.Fatalf("workers did not converge on generation %d: %s", gen, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reditPercentile is the q-quantile (0..1) of ds, nearest rank.
func reditPercentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Fifty saves of a config laid out like a mounted Kubernetes ConfigMap
// (paste.ini -> ..data/paste.ini, ..data -> ..vN), cycling through a
// rename save inside the data dir, an in-place write through the
// symlinks, and a ConfigMap update (new ..vN, ..data swapped by rename,
// the old version removed): each is served within a second, no request
// fails, no worker restarts.
func TestReloadFiftyEdits(t *testing.T) {
	const workers, saves = 2, 50
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(dir, "paste.ini")
	version := 0
	vdir := func(n int) string { return filepath.Join(dir, fmt.Sprintf("..v%d", n)) }
	if err := os.Mkdir(vdir(0), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vdir(0), "paste.ini"), []byte(ctlConfig(addr, workers, "A")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..v0", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "paste.ini"), cfg); err != nil {
		t.Fatal(err)
	}

	m := reditStartAt(t, cfg, addr, workers)
	before := reditWorkerPids(t, m)
	gen0 := reditStatus(t, m).Generation
	p := startPoller(t, addr)
	waitFor(t, "body A", reditSetup, func() bool { return p.lastBody() == "A" })
	load := reditLoad(t, addr)

	styles := []string{"rename in ..data", "in-place write", "ConfigMap swap"}
	var lat []time.Duration
	for i := range saves {
		body := "B"
		if i%2 == 1 {
			body = "A"
		}
		content := []byte(ctlConfig(addr, workers, body))
		style := styles[i%len(styles)]
		switch i % len(styles) {
		case 0: // vim, sed -i: a new file renamed over the real one
			renameSave(t, filepath.Join(vdir(version), "paste.ini"), string(content))
		case 1: // echo > paste.ini: truncate and write through the links
			if err := os.WriteFile(cfg, content, 0o644); err != nil {
				t.Fatal(err)
			}
		case 2: // kubelet's AtomicWriter
			old := version
			version++
			if err := os.Mkdir(vdir(version), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(vdir(version), "paste.ini"), content, 0o644); err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(dir, "..data_tmp")
			if err := os.Symlink(filepath.Base(vdir(version)), tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(vdir(old)); err != nil {
				t.Fatal(err)
			}
		}
		saved := time.Now()
		d := reditWaitBody(t, p, body, saved, reditSetup)
		lat = append(lat, d)
		if d > reditSwitchLimit {
			t.Errorf("save %d (%s): body %q served %s after the save, want within %s", i, style, body, d.Round(time.Millisecond), reditSwitchLimit)
		}
		reditWaitConverged(t, m, gen0+i+1, workers)
	}
	reditFinish(t, load, p)
	t.Logf("switch latency over %d saves: p50 %s, p90 %s, max %s", saves,
		reditPercentile(lat, 0.5).Round(time.Millisecond), reditPercentile(lat, 0.9).Round(time.Millisecond),
		slices.Max(lat).Round(time.Millisecond))
	for i, s := range styles {
		var mine []time.Duration
		for j := i; j < len(lat); j += len(styles) {
			mine = append(mine, lat[j])
		}
		t.Logf("  %s: p50 %s, max %s", s, reditPercentile(mine, 0.5).Round(time.Millisecond), slices.Max(mine).Round(time.Millisecond))
	}

	if after := reditWorkerPids(t, m); !slices.Equal(before, after) {
		t.Errorf("worker pids %v after the edits, want %v (reloaded in place)", after, before)
	}
	st := reditStatus(t, m)
	if st.Generation != gen0+saves || st.LastReload == nil || !st.LastReload.OK {
		t.Errorf("status after %d edits: generation %d (want %d), last reload %+v", saves, st.Generation, gen0+saves, st.LastReload)
	}
	if got := get(t, addr); got != "A" {
		t.Errorf("GET on a new connection = %q, want A", got)
	}
}

// Broken saves keep the running pipeline: a syntax error and an unknown
// factory (a failed reload in status, at the file:line), the file deleted
// or replaced by a directory (nothing to reload; the master warns and
// serves on), binary garbage (a failed reload); each good save after them
// is served within a second, and no request fails.
func TestReloadBadEdits(t *testing.T) {
	const workers = 2
	m := startCtlMaster(t, workers, "A")
	reditStopOnCleanup(t, m)
	before := reditWorkerPids(t, m)
	st0 := reditStatus(t, m)
	gen := st0.Generation
	p := startPoller(t, m.addr)
	waitFor(t, "body A", reditSetup, func() bool { return p.lastBody() == "A" })
	load := reditLoad(t, m.addr)
	serving := "A"

	// ctlConfig: line 7 is [app:main], 8 its use =, 9 body =.
	good := func(body string) string { return ctlConfig(m.addr, workers, body) }
	master := m.cmd.Process.Pid

	// keepsServing waits ~600 ms and checks nothing changed: the old body
	// on the keep-alive poller and on new connections, the master alive,
	// the generation the same.
	keepsServing := func(what string) control.Status {
		t.Helper()
		time.Sleep(600 * time.Millisecond)
		if got := p.lastBody(); got != serving {
			t.Errorf("%s: keep-alive client gets %q, want the old %q", what, got, serving)
		}
		for range 4 {
			if got := get(t, m.addr); got != serving {
				t.Errorf("%s: GET on a new connection = %q, want the old %q", what, got, serving)
			}
		}
		if !alive(master) || reditGone(master) {
			t.Fatalf("%s: the master (pid %d) is gone", what, master)
		}
		st := reditStatus(t, m)
		if st.Generation != gen {
			t.Errorf("%s: generation %d, want %d (nothing applied)", what, st.Generation, gen)
		}
		return st
	}
	// failedReload waits until status shows a reload after since that
	// failed, and checks its error names paste.ini at a line matching
	// line (a regexp) and contains want.
	failedReload := func(what string, since time.Time, line, want string) {
		t.Helper()
		var st control.Status
		waitFor(t, what+": a failed reload in status", 10*time.Second, func() bool {
			var err error
			st, err = m.client.Status(t.Context())
			return err == nil && st.LastReload != nil && !st.LastReload.At.Before(since)
		})
		st = keepsServing(what)
		lr := st.LastReload
		if lr == nil || lr.OK || lr.At.Before(since) {
			t.Errorf("%s: last_reload %+v, want a failure after the save", what, lr)
			return
		}
		re := regexp.MustCompile(regexp.QuoteMeta(m.config) + ":" + line + ": ")
		if !re.MatchString(lr.Error) || !strings.Contains(lr.Error, want) {
			t.Errorf("%s: last_reload error %q, want %s:%s: ... %s", what, lr.Error, m.config, line, want)
		}
		t.Logf("%s: last_reload error: %s", what, lr.Error)
	}
	// applied saves a good config with a new body and checks it is served
	// within a second, in place.
	applied := func(what, body string, save func(content string)) {
		t.Helper()
		save(good(body))
		saved := time.Now()
		d := reditWaitBody(t, p, body, saved, reditSetup)
		t.Logf("%s: %q served %s after the save", what, body, d.Round(time.Millisecond))
		if d > reditSwitchLimit {
			t.Errorf("%s: %q served %s after the save, want within %s", what, body, d.Round(time.Millisecond), reditSwitchLimit)
		}
		gen++
		serving = body
		reditWaitConverged(t, m, gen, workers)
		if st := reditStatus(t, m); st.LastReload == nil || !st.LastReload.OK {
			t.Errorf("%s: last_reload %+v, want ok", what, st.LastReload)
		}
	}
	write := func(content string) {
		if err := os.WriteFile(m.config, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// (a) a line without "=" inside [app:main], line 9.
	since := time.Now()
	renameSave(t, m.config, strings.Replace(good("B"), "body = ", "this line has no equals\nbody = ", 1))
	failedReload("syntax error", since, "9", "this line has no equals")

	// (b) an unknown factory on line 8.
	since = time.Now()
	renameSave(t, m.config, strings.Replace(good("B"), "egg:paddock#hello", "egg:paddock#nope", 1))
	failedReload("unknown factory", since, "8", `"egg:paddock#nope"`)
	lrB := reditStatus(t, m).LastReload

	// (c) the file deleted: nothing to load, the master serves on; the
	// file coming back with a new body is applied.
	if err := os.Remove(m.config); err != nil {
		t.Fatal(err)
	}
	st := keepsServing("config deleted")
	if st.LastReload == nil || !st.LastReload.At.Equal(lrB.At) {
		t.Errorf("config deleted: last_reload %+v, want the previous one %+v (no reload of a missing file)", st.LastReload, lrB)
	}
	applied("config restored after delete", "C", write)

	// (d) the file replaced by a directory.
	if err := os.Remove(m.config); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.config, 0o755); err != nil {
		t.Fatal(err)
	}
	lrC := reditStatus(t, m).LastReload
	st = keepsServing("config replaced by a directory")
	if st.LastReload == nil || !st.LastReload.At.Equal(lrC.At) || !st.LastReload.OK {
		t.Errorf("config replaced by a directory: last_reload %+v, want the previous one %+v", st.LastReload, lrC)
	}
	applied("config restored after a directory", "D", func(content string) {
		if err := os.Remove(m.config); err != nil {
			t.Fatal(err)
		}
		write(content)
	})

	// (e) 4 KiB of binary garbage, written in place.
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i)
	}
	since = time.Now()
	if err := os.WriteFile(m.config, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	failedReload("binary garbage", since, `\d+`, "")

	// (f) a good edit.
	applied("valid edit after garbage", "E", func(content string) { renameSave(t, m.config, content) })

	reditFinish(t, load, p)
	p.mu.Lock()
	for b := range p.bodies {
		if !strings.Contains("ACDE", b) || len(b) != 1 {
			t.Errorf("the poller got body %q, which no good config served", b)
		}
	}
	t.Logf("poller responses: %v", p.bodies)
	p.mu.Unlock()
	if after := reditWorkerPids(t, m); !slices.Equal(before, after) {
		t.Errorf("worker pids %v after the edits, want %v (reloaded in place)", after, before)
	}
	if st := reditStatus(t, m); st.Generation != st0.Generation+3 {
		t.Errorf("generation %d, want %d (three good edits)", st.Generation, st0.Generation+3)
	}
}

// A hundred in-place saves in about a second (an editor's autosave, a
// config generator rewriting in a loop) end up as a few reloads, not a
// hundred, with the last content served within a second of the last save.
func TestReloadHundredSavesInOneSecond(t *testing.T) {
	const workers, saves = 2, 100
	m := startCtlMaster(t, workers, "init")
	reditStopOnCleanup(t, m)
	before := reditWorkerPids(t, m)
	gen0 := reditStatus(t, m).Generation
	p := startPoller(t, m.addr)
	waitFor(t, "body init", reditSetup, func() bool { return p.lastBody() == "init" })
	load := reditLoad(t, m.addr)

	start := time.Now()
	var last time.Time
	for i := range saves {
		if err := os.WriteFile(m.config, []byte(ctlConfig(m.addr, workers, "s"+strconv.Itoa(i))), 0o644); err != nil {
			t.Fatal(err)
		}
		last = time.Now()
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * 10 * time.Millisecond)))
	}
	t.Logf("%d saves in %s", saves, last.Sub(start).Round(time.Millisecond))
	final := "s" + strconv.Itoa(saves-1)
	d := reditWaitBody(t, p, final, last, reditSetup)
	t.Logf("%q served %s after the last save", final, d.Round(time.Millisecond))
	if d > reditSwitchLimit {
		t.Errorf("%q served %s after the last save, want within %s", final, d.Round(time.Millisecond), reditSwitchLimit)
	}

	// Let any reload still pending settle, then read the generation.
	time.Sleep(time.Second)
	st := reditStatus(t, m)
	reditWaitConverged(t, m, st.Generation, workers)
	for range 8 {
		if got := get(t, m.addr); got != final {
			t.Errorf("GET on a new connection = %q, want %q", got, final)
		}
	}
	reditFinish(t, load, p)
	reloads := st.Generation - gen0
	t.Logf("%d saves gave %d reloads (generation %d -> %d); last_reload %+v", saves, reloads, gen0, st.Generation, st.LastReload)
	if reloads < 1 || reloads > 20 {
		t.Errorf("%d saves gave %d reloads, want 1..20 (debounced)", saves, reloads)
	}
	if st.LastReload == nil || !st.LastReload.OK {
		t.Errorf("last_reload %+v, want ok", st.LastReload)
	}
	if after := reditWorkerPids(t, m); !slices.Equal(before, after) {
		t.Errorf("worker pids %v after the burst, want %v (reloaded in place)", after, before)
	}
}

// Saves arriving while the workers are still swapping to the previous one
// (just over the debounce apart) never restart a worker: each worker
// builds the bytes its master validated, not the file as it is by then.
func TestReloadRacingSaves(t *testing.T) {
	const workers, saves = 2, 40
	m := startCtlMaster(t, workers, "s-init")
	reditStopOnCleanup(t, m)
	before := reditWorkerPids(t, m)
	load := reditLoad(t, m.addr)
	p := startPoller(t, m.addr)
	for i := range saves {
		if err := os.WriteFile(m.config, []byte(ctlConfig(m.addr, workers, fmt.Sprintf("s%d", i))), 0o644); err != nil {
			t.Fatal(err)
		}
		// 78-96 ms: past the 75 ms debounce, while the workers of the
		// previous save are still loading.
		time.Sleep(time.Duration(78+i%4*6) * time.Millisecond)
	}
	last := fmt.Sprintf("s%d", saves-1)
	reditWaitBody(t, p, last, time.Now(), reditSetup)
	reditFinish(t, load, p)
	if after := reditWorkerPids(t, m); !slices.Equal(before, after) {
		t.Errorf("worker pids %v after racing saves, want %v (every reload in place)", after, before)
	}
	for range 10 {
		if got := get(t, m.addr); got != last {
			t.Fatalf("GET = %q, want %q from every worker", got, last)
		}
	}
}

// A worker started after a broken edit (here: one killed and replaced)
// builds the last validated config, not the broken file: it boots and
// serves the running body.
func TestReloadReplacementBootsValidatedConfig(t *testing.T) {
	m := startCtlMaster(t, 2, "good")
	reditStopOnCleanup(t, m)
	if err := os.WriteFile(m.config, []byte(strings.Replace(ctlConfig(m.addr, 2, "bad"), "egg:paddock#hello", "egg:paddock#nope", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload in status", reditSetup, func() bool {
		st, err := m.client.Status(t.Context())
		return err == nil && st.LastReload != nil && !st.LastReload.OK
	})
	victim := reditWorkerPids(t, m)[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ws []control.Worker
	waitFor(t, "a replacement worker ready", reditSetup, func() bool {
		ws = m.waitReady(t, 2)
		return !slices.Contains(pidsOf(ws), victim)
	})
	for range 10 {
		if got := get(t, m.addr); got != "good" {
			t.Fatalf("GET = %q, want the validated body from every worker", got)
		}
	}
	st := reditStatus(t, m)
	if st.Workers.Ready != 2 {
		t.Errorf("status workers %+v, want 2 ready", st.Workers)
	}
}
