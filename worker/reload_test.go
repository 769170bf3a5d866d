package worker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"paddock/control"
)

// closeRecorder is a generation's pipeline: it records its Close and
// fails the test if a request of its generation is still running then.
type closeRecorder struct {
	t        *testing.T
	inFlight *atomic.Int64
	closed   atomic.Int32
}

func (c *closeRecorder) Close() error {
	if n := c.inFlight.Load(); n != 0 {
		c.t.Errorf("pipeline closed with %d requests in flight", n)
	}
	c.closed.Add(1)
	return nil
}

func TestSwapHandlerInFlightFinishesOnOldGeneration(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	var inFlight1 atomic.Int64
	old := &closeRecorder{t: t, inFlight: &inFlight1}
	h1 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight1.Add(1)
		defer inFlight1.Add(-1)
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		fmt.Fprint(w, "A")
	})
	closedGens := make(chan int, 4)
	onClose := func(gen int, err error) { closedGens <- gen }
	swap := newSwapHandler(newHandlerGen(1, h1, old, onClose))
	srv := httptest.NewServer(swap)
	defer srv.Close()
	client := srv.Client() // keep-alive

	slow := make(chan string, 1)
	go func() {
		resp, err := client.Get(srv.URL + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	<-entered

	var inFlight2 atomic.Int64
	cur := &closeRecorder{t: t, inFlight: &inFlight2}
	h2 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "B") })
	if prev := swap.Swap(newHandlerGen(2, h2, cur, onClose)); prev.gen != 1 {
		t.Fatalf("Swap returned generation %d", prev.gen)
	}
	for range 3 { // the next requests, on a reused connection, get B
		resp, err := client.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "B" {
			t.Fatalf("after the swap got %q, want B", b)
		}
	}
	if old.closed.Load() != 0 {
		t.Fatal("old pipeline closed while a request was in flight")
	}
	close(release)
	if got := <-slow; got != "A" {
		t.Fatalf("in-flight request got %q, want A from the old generation", got)
	}
	select {
	case gen := <-closedGens:
		if gen != 1 {
			t.Fatalf("closed generation %d, want 1", gen)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("old pipeline not closed after its last request")
	}
	if old.closed.Load() != 1 || cur.closed.Load() != 0 {
		t.Fatalf("closed: old %d, current %d", old.closed.Load(), cur.closed.Load())
	}
	swap.Close()
	if cur.closed.Load() != 1 {
		t.Fatal("Close did not close the current pipeline")
	}
}

// Many requests while generations swap: every pipeline is closed exactly
// once, never under a running request.
func TestSwapHandlerConcurrentSwaps(t *testing.T) {
	var recs []*closeRecorder
	var mu sync.Mutex
	mk := func(gen int) *handlerGen {
		var n atomic.Int64
		rec := &closeRecorder{t: t, inFlight: &n}
		mu.Lock()
		recs = append(recs, rec)
		mu.Unlock()
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			defer n.Add(-1)
			if rec.closed.Load() != 0 {
				t.Error("request served on a closed pipeline")
			}
			time.Sleep(time.Millisecond)
		})
		return newHandlerGen(gen, h, rec, nil)
	}
	swap := newSwapHandler(mk(0))
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				swap.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
			}
		})
	}
	for gen := 1; gen <= 50; gen++ {
		swap.Swap(mk(gen))
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	swap.Close()
	for i, r := range recs {
		if r.closed.Load() != 1 {
			t.Errorf("generation %d closed %d times", i, r.closed.Load())
		}
	}
}

// In place: the master sends reload to every ready worker with the digest
// of what it validated, Reload returns once every worker answered, a
// worker that failed is rolled, and later workers start on the new
// generation.
func TestArbiterReloadInPlace(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "paste.ini")
	write := func(body string) {
		if err := os.WriteFile(cfg, []byte("[app:main]\nuse = egg:paddock#hello\nbody = "+body+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("A")
	s := &Settings{Workers: 2, Timeout: 30 * time.Second, GracefulTimeout: 5 * time.Second, Umask: -1,
		Origins: map[string]Origin{"workers": {Source: SourceFile, Value: "2"}}}
	reload := func(map[string][]byte) (*Settings, error) {
		ns := *s
		return &ns, nil
	}
	h := runHarness(t, ArbiterOptions{ConfigPath: cfg, Settings: s, Reload: reload})
	a := h.a
	p1, p2 := h.bootTwo()
	waitReadyCount(t, a, 2)

	write("B")
	type result struct {
		res control.ReloadResult
		err error
	}
	done := make(chan result, 1)
	go func() { r, err := a.Reload(t.Context()); done <- result{r, err} }()
	want, err := ConfigDigest([]string{cfg})
	if err != nil {
		t.Fatal(err)
	}
	m1, m2 := wantSent(t, p1, MsgReload), wantSent(t, p2, MsgReload)
	for _, m := range []Message{m1, m2} {
		if m.Generation != 1 || m.ConfigSHA256 != want {
			t.Fatalf("reload message %+v, want generation 1 and sha256 %s", m, want)
		}
	}
	h.noSpawn(100 * time.Millisecond) // in place: no new process
	p1.say(Message{Type: MsgReloaded, Generation: 1})
	select {
	case r := <-done:
		t.Fatalf("Reload returned before every worker answered: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	// p2 cannot load it: it is rolled (a replacement first, then it drains).
	p2.say(Message{Type: MsgReloadFailed, Generation: 1, Error: "boom"})
	n := h.spawned()
	if n.req.Generation != 1 {
		t.Fatalf("replacement generation %d", n.req.Generation)
	}
	n.say(Message{Type: MsgReady})
	wantSent(t, p2, MsgStop)
	r := <-done
	if r.err != nil || !r.res.OK || r.res.Generation != 1 || len(r.res.Changed) != 1 || r.res.Changed[0] != "pipeline" {
		t.Fatalf("Reload = %+v, %v", r.res, r.err)
	}
	ws, err := a.Workers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.Pid == p1.pid && w.Generation != 1 {
			t.Errorf("worker %d reloaded in place but shows generation %d", w.Pid, w.Generation)
		}
	}
	files, err := a.WatchedFiles(t.Context())
	if err != nil || len(files) != 1 || files[0] != cfg {
		t.Errorf("WatchedFiles = %v, %v", files, err)
	}
	// A worker added later starts on the current generation.
	if _, _, err := a.AddWorkers(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if p := h.spawned(); p.req.Generation != 1 {
		t.Errorf("new worker on generation %d, want 1", p.req.Generation)
	}

	// A broken edit changes nothing and sends nothing.
	if err := os.WriteFile(cfg, []byte("[app:main]\nuse = egg:paddock#nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reload(t.Context()); err == nil {
		t.Fatal("Reload of a broken config succeeded")
	}
	select {
	case m := <-p1.sent:
		t.Fatalf("worker got %q after a broken reload", m.Type)
	case <-time.After(100 * time.Millisecond):
	}
	st, err := a.Status(t.Context())
	if err != nil || st.Generation != 1 || st.LastReload == nil || st.LastReload.OK {
		t.Fatalf("Status = %+v, %v", st, err)
	}
}

// A changed worker setting (here timeout) rolls the workers instead.
func TestArbiterReloadRollsOnProcessSettings(t *testing.T) {
	reload := func(map[string][]byte) (*Settings, error) {
		return &Settings{Workers: 1, Timeout: 10 * time.Second, GracefulTimeout: 5 * time.Second, Umask: -1}, nil
	}
	h := startArbiterWith(t, func(s *Settings) { s.Workers = 1 }, reload)
	p1 := h.spawned()
	p1.say(Message{Type: MsgReady})
	h.sigs <- syscall.SIGHUP
	n := h.spawned()
	if n.req.Generation != 1 || n.req.Settings.Timeout != 10*time.Second {
		t.Fatalf("rolled worker %+v", n.req)
	}
	select {
	case m := <-p1.sent:
		t.Fatalf("old worker got %q before its replacement was ready", m.Type)
	case <-time.After(100 * time.Millisecond):
	}
	n.say(Message{Type: MsgReady})
	wantSent(t, p1, MsgStop)
}

// waitReadyCount waits until the arbiter has handled n ready messages
// (say only queues them).
func waitReadyCount(t *testing.T, a *Arbiter, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := a.Status(t.Context())
		if err == nil && st.Workers.Ready == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ready workers: %+v, %v; want %d", st.Workers, err, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A reload that changes only restart-only settings keeps their running
// values, says so in its answer, and reloads in place: the workers were
// not started with them.
func TestArbiterReloadKeepsRestartSettings(t *testing.T) {
	s := &Settings{Workers: 1, Timeout: 30 * time.Second, GracefulTimeout: 5 * time.Second, Umask: -1, Pidfile: "/run/a.pid",
		Origins: map[string]Origin{"workers": {Source: SourceFile, Value: "1"}, "pidfile": {Source: SourceFile, Value: "/run/a.pid"}}}
	reload := func(map[string][]byte) (*Settings, error) {
		ns := *s
		ns.Pidfile, ns.ReusePort = "/run/b.pid", true
		ns.Origins = map[string]Origin{"workers": {Source: SourceFile, Value: "1"}, "pidfile": {Source: SourceFile, Value: "/run/b.pid"},
			"reuse_port": {Source: SourceFile, Value: "true"}}
		return &ns, nil
	}
	h := runHarness(t, ArbiterOptions{Settings: s, Reload: reload})
	p := h.spawned()
	p.say(Message{Type: MsgReady})
	waitReadyCount(t, h.a, 1)
	done := make(chan control.ReloadResult, 1)
	go func() {
		r, err := h.a.Reload(t.Context())
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	wantSent(t, p, MsgReload) // in place
	h.noSpawn(100 * time.Millisecond)
	p.say(Message{Type: MsgReloaded, Generation: 1})
	r := <-done
	want := []string{"reuse_port (needs restart)", "pidfile (needs restart)"}
	if !slices.Equal(r.Changed, want) {
		t.Errorf("changed %q, want %q", r.Changed, want)
	}
	view, err := h.a.Config(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := view.Settings["pidfile"].Value; got != "/run/a.pid" {
		t.Errorf("running pidfile %q, want the kept /run/a.pid", got)
	}
}
