package worker

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"paddock/control"
)

// fakeSpawner starts fakeProcs: the test plays the workers by sending
// their messages and exits on the arbiter's events channel.
type fakeSpawner struct {
	mu      sync.Mutex
	nextPid int
	spawned chan *fakeProc
	fail    bool
}

type fakeProc struct {
	pid     int
	req     spawnRequest
	events  chan<- event
	done    <-chan struct{}
	sent    chan Message
	signals chan syscall.Signal
}

func (s *fakeSpawner) spawn(req spawnRequest, events chan<- event, done <-chan struct{}) (childProc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, errors.New("exec: no such file")
	}
	s.nextPid++
	p := &fakeProc{pid: 1000 + s.nextPid, req: req, events: events, done: done, sent: make(chan Message, 16), signals: make(chan syscall.Signal, 16)}
	s.spawned <- p
	return p, nil
}

func (p *fakeProc) Pid() int { return p.pid }
func (p *fakeProc) Send(m Message) error {
	p.sent <- m
	if m.Type == MsgStop {
		go p.exit("exit status 0") // a well-behaved worker
	}
	return nil
}
func (p *fakeProc) Signal(sig syscall.Signal) error {
	p.signals <- sig
	if sig == syscall.SIGKILL {
		go p.exit("signal: killed")
	}
	return nil
}
func (p *fakeProc) Close() {}

func (p *fakeProc) say(m Message) {
	select {
	case p.events <- event{pid: p.pid, msg: &m}:
	case <-p.done:
	}
}
func (p *fakeProc) garbage() {
	select {
	case p.events <- event{pid: p.pid, err: ErrGarbage}:
	case <-p.done:
	}
}
func (p *fakeProc) exit(status string) {
	select {
	case p.events <- event{pid: p.pid, exited: true, status: status}:
	case <-p.done:
	}
}

type harness struct {
	t    *testing.T
	a    *Arbiter
	sp   *fakeSpawner
	sigs chan os.Signal
	errc chan error
}

func startArbiter(t *testing.T, mutate func(*Settings)) *harness {
	t.Helper()
	return startArbiterWith(t, mutate, nil)
}

// startArbiterWith is startArbiter with a Reload hook.
func startArbiterWith(t *testing.T, mutate func(*Settings), reload func(map[string][]byte) (*Settings, error)) *harness {
	t.Helper()
	s := harnessSettings()
	if mutate != nil {
		mutate(s)
	}
	return runHarness(t, ArbiterOptions{Settings: s, Reload: reload})
}

// harnessSettings are the settings the harness tests start from.
func harnessSettings() *Settings {
	return &Settings{Workers: 2, Timeout: 30 * time.Second, GracefulTimeout: 5 * time.Second, Umask: -1}
}

// runHarness runs an arbiter with opts, its workers fake (the harness's
// spawner) and its signals the harness's, until the test ends.
func runHarness(t *testing.T, opts ArbiterOptions) *harness {
	t.Helper()
	h := &harness{t: t, sp: &fakeSpawner{spawned: make(chan *fakeProc, 32)}, sigs: make(chan os.Signal, 4), errc: make(chan error, 1)}
	opts.Signals, opts.spawn = h.sigs, h.sp
	if opts.Version == "" {
		opts.Version = "test"
	}
	a, err := NewArbiter(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.a = a
	go func() { h.errc <- a.Run(t.Context()) }()
	t.Cleanup(func() {
		_ = a.Stop(context.Background(), false, 0)
		<-a.Done()
	})
	return h
}

func (h *harness) spawned() *fakeProc {
	h.t.Helper()
	select {
	case p := <-h.sp.spawned:
		return p
	case <-time.After(5 * time.Second):
		h.t.Fatal("no worker spawned")
		return nil
	}
}

func (h *harness) noSpawn(d time.Duration) {
	h.t.Helper()
	select {
	case p := <-h.sp.spawned:
		h.t.Fatalf("unexpected spawn of worker %d", p.req.ID)
	case <-time.After(d):
	}
}

func wantSent(t *testing.T, p *fakeProc, typ string) Message {
	t.Helper()
	select {
	case m := <-p.sent:
		if m.Type != typ {
			t.Fatalf("worker %d got %q, want %q", p.req.ID, m.Type, typ)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("worker %d got no %q", p.req.ID, typ)
		return Message{}
	}
}

func wantSignal(t *testing.T, p *fakeProc, sig syscall.Signal) {
	t.Helper()
	select {
	case got := <-p.signals:
		if got != sig {
			t.Fatalf("worker %d got %v, want %v", p.req.ID, got, sig)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("worker %d got no %v", p.req.ID, sig)
	}
}

func (h *harness) bootTwo() (*fakeProc, *fakeProc) {
	p1, p2 := h.spawned(), h.spawned()
	p1.say(Message{Type: MsgReady, Pid: p1.pid})
	p2.say(Message{Type: MsgReady, Pid: p2.pid})
	return p1, p2
}

func TestArbiterReplacesCrashedWorker(t *testing.T) {
	h := startArbiter(t, nil)
	p1, _ := h.bootTwo()
	p1.exit("signal: killed")
	p3 := h.spawned()
	if p3.req.ID != 3 || p3.req.Generation != 0 {
		t.Errorf("replacement %+v", p3.req)
	}
}

func TestArbiterFirstBootErrorStops(t *testing.T) {
	h := startArbiter(t, func(s *Settings) { s.Workers = 1 })
	p := h.spawned()
	p.say(Message{Type: MsgBootError, Error: "paste.ini:3: boom"})
	p.exit("exit status 3")
	select {
	case err := <-h.errc:
		var be *BootError
		if !errors.As(err, &be) || be.Msg != "paste.ini:3: boom" {
			t.Fatalf("Run = %v, want BootError paste.ini:3: boom", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestArbiterBootFailureBacksOffAfterFirstReady(t *testing.T) {
	h := startArbiter(t, func(s *Settings) { s.Workers = 1 })
	p := h.spawned()
	p.say(Message{Type: MsgReady})
	p.exit("signal: killed") // crash after ready: replaced at once
	p2 := h.spawned()
	p2.exit("exit status 3") // boot failure: backoff of 1 s
	h.noSpawn(700 * time.Millisecond)
	h.spawned()
}

func TestArbiterRetireStartsReplacementFirst(t *testing.T) {
	h := startArbiter(t, func(s *Settings) { s.Workers = 1; s.MaxRequests = 5; s.MaxRequestsJitter = 3 })
	p1 := h.spawned()
	if p1.req.MaxRequests < 5 || p1.req.MaxRequests > 8 {
		t.Errorf("max requests %d, want 5..8", p1.req.MaxRequests)
	}
	p1.say(Message{Type: MsgReady})
	p1.say(Message{Type: MsgRetire, Requests: 5})
	p2 := h.spawned()
	select {
	case m := <-p1.sent:
		t.Fatalf("old worker got %q before its replacement was ready", m.Type)
	case <-time.After(200 * time.Millisecond):
	}
	p2.say(Message{Type: MsgReady})
	if m := wantSent(t, p1, MsgStop); m.Mode != "graceful" {
		t.Errorf("stop mode %q", m.Mode)
	}
}

func TestArbiterKillsGarbageAndSilentWorkers(t *testing.T) {
	h := startArbiter(t, func(s *Settings) { s.Timeout = 300 * time.Millisecond })
	p1, p2 := h.bootTwo()
	p1.garbage()
	wantSignal(t, p1, syscall.SIGKILL)
	p3 := h.spawned()
	p3.say(Message{Type: MsgReady})
	// p2 and p3 go silent: both are killed after the timeout.
	wantSignal(t, p2, syscall.SIGKILL)
	wantSignal(t, p3, syscall.SIGKILL)
}

func TestArbiterSignals(t *testing.T) {
	h := startArbiter(t, nil)
	p1, p2 := h.bootTwo()
	h.sigs <- syscall.SIGTTIN
	p3 := h.spawned()
	p3.say(Message{Type: MsgReady})
	h.sigs <- syscall.SIGTTOU
	wantSent(t, p1, MsgStop) // the oldest goes
	h.sigs <- syscall.SIGUSR1
	wantSent(t, p2, MsgReopenLogs)
	wantSent(t, p3, MsgReopenLogs)
	st, err := h.a.Status(t.Context())
	if err != nil || st.Workers.Target != 2 {
		t.Fatalf("status %+v, %v", st, err)
	}
	// HUP with the worker settings unchanged reloads in place: no new
	// process.
	waitReadyCount(t, h.a, 2)
	h.sigs <- syscall.SIGHUP
	for _, p := range []*fakeProc{p2, p3} {
		if m := wantSent(t, p, MsgReload); m.Generation != 1 {
			t.Fatalf("reload generation %d", m.Generation)
		}
		p.say(Message{Type: MsgReloaded, Generation: 1})
	}
	h.noSpawn(200 * time.Millisecond)
	// TERM: graceful stop of everything, Run returns nil.
	h.sigs <- syscall.SIGTERM
	wantSent(t, p2, MsgStop)
	wantSent(t, p3, MsgStop)
	select {
	case err := <-h.errc:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestArbiterRequests(t *testing.T) {
	h := startArbiter(t, func(s *Settings) { s.Workers = 1 })
	h.spawned().say(Message{Type: MsgReady})
	prev, target, err := h.a.AddWorkers(t.Context(), 2)
	if err != nil || prev != 1 || target != 3 {
		t.Fatalf("AddWorkers = %d, %d, %v", prev, target, err)
	}
	h.spawned()
	h.spawned()
	if _, target, _ := h.a.RemoveWorkers(t.Context(), 5); target != 1 {
		t.Errorf("RemoveWorkers floor: target %d", target)
	}
	if _, _, err := h.a.SetTarget(t.Context(), 0); !errors.Is(err, control.ErrBadRequest) {
		t.Error("SetTarget(0) accepted")
	}
}
