package worker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"paddock/control"
	"paddock/pipeline"
)

func TestControlKillWorker(t *testing.T) {
	h := startArbiter(t, nil)
	p1, p2 := h.bootTwo()
	if err := h.a.KillWorker(t.Context(), 4242, false); !errors.Is(err, control.ErrNoSuchWorker) {
		t.Fatalf("KillWorker(unknown) = %v, want ErrNoSuchWorker", err)
	}
	if err := h.a.KillWorker(t.Context(), p1.pid, false); err != nil {
		t.Fatal(err)
	}
	if m := wantSent(t, p1, MsgStop); m.Mode != "graceful" {
		t.Errorf("stop mode %q", m.Mode)
	}
	p3 := h.spawned() // replaced
	p3.say(Message{Type: MsgReady})
	if err := h.a.KillWorker(t.Context(), p2.pid, true); err != nil {
		t.Fatal(err)
	}
	wantSignal(t, p2, syscall.SIGKILL)
	p4 := h.spawned()
	// p1 and p2 exit in their own time; then p3 and p4 are left.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws, err := h.a.Workers(t.Context())
		if err == nil && len(ws) == 2 && ws[0].Pid == p3.pid && ws[1].Pid == p4.pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Workers = %+v, %v; want %d and %d", ws, err, p3.pid, p4.pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestControlReloadWaitsForRoll(t *testing.T) {
	fail := false
	reload := func(map[string][]byte) (*Settings, error) {
		if fail {
			return nil, pipeline.ErrorList{
				{Pos: pipeline.Pos{File: "paste.ini", Line: 7}, Section: "app:main", Class: "LookupError", Msg: "boom"},
				{Pos: pipeline.Pos{File: "paste.ini", Line: 9}, Section: "filter:x", Class: "LookupError", Msg: "bang"},
			}
		}
		// A new timeout: the worker processes must be replaced (rolled).
		return &Settings{Workers: 1, Timeout: 20 * time.Second, GracefulTimeout: 5 * time.Second, Umask: -1}, nil
	}
	h := startArbiterWith(t, func(s *Settings) { s.Workers = 1 }, reload)
	p1 := h.spawned()
	p1.say(Message{Type: MsgReady})

	type result struct {
		res control.ReloadResult
		err error
	}
	done := make(chan result, 1)
	go func() { r, err := h.a.Reload(t.Context()); done <- result{r, err} }()
	n1 := h.spawned()
	if n1.req.Generation != 1 {
		t.Fatalf("generation %d", n1.req.Generation)
	}
	if _, err := h.a.Reload(t.Context()); !errors.Is(err, control.ErrBusy) {
		t.Errorf("second Reload during the roll = %v, want ErrBusy", err)
	}
	select {
	case r := <-done:
		t.Fatalf("Reload returned before the new worker was ready: %+v", r)
	case <-time.After(150 * time.Millisecond):
	}
	n1.say(Message{Type: MsgReady})
	r := <-done
	if r.err != nil || !r.res.OK || r.res.Generation != 1 {
		t.Fatalf("Reload = %+v, %v", r.res, r.err)
	}
	wantSent(t, p1, MsgStop)

	fail = true // read by the Run goroutine, after the channel handoff in do
	_, err := h.a.Reload(t.Context())
	var ce *control.ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 2 || ce.Problems[0] != (control.ConfigProblem{File: "paste.ini", Line: 7, Section: "app:main", Message: "boom"}) {
		t.Fatalf("Reload(broken) = %#v", err)
	}
	st, err := h.a.Status(t.Context())
	if err != nil || st.Generation != 1 || st.LastReload == nil || st.LastReload.OK || st.Version != "test" || st.Workers.Target != 1 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	h.noSpawn(150 * time.Millisecond) // the broken config rolled nothing
}

// TTIN/TTOU and the endpoints share one path: the floor of 1 and the
// validation hold for both.
func TestControlTargets(t *testing.T) {
	h := startArbiter(t, func(s *Settings) { s.Workers = 1 })
	h.spawned().say(Message{Type: MsgReady})
	for _, n := range []int{0, -1} {
		if _, _, err := h.a.AddWorkers(t.Context(), n); !errors.Is(err, control.ErrBadRequest) {
			t.Errorf("AddWorkers(%d) = %v", n, err)
		}
		if _, _, err := h.a.RemoveWorkers(t.Context(), n); !errors.Is(err, control.ErrBadRequest) {
			t.Errorf("RemoveWorkers(%d) = %v", n, err)
		}
	}
	h.sigs <- syscall.SIGTTOU
	if p, tg, err := h.a.SetTarget(t.Context(), 2); err != nil || p != 1 || tg != 2 {
		t.Fatalf("SetTarget(2) = %d, %d, %v", p, tg, err)
	}
	h.spawned()
	if err := h.a.Stop(t.Context(), true, -time.Second); !errors.Is(err, control.ErrBadRequest) {
		t.Errorf("Stop(negative grace) = %v", err)
	}
	if _, err := h.a.Upgrade(t.Context()); !errors.Is(err, control.ErrNotImplemented) {
		t.Errorf("Upgrade = %v", err)
	}
	if err := h.a.Stop(context.Background(), true, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.a.AddWorkers(t.Context(), 1); err == nil {
		t.Error("AddWorkers while stopping succeeded")
	}
}

func TestChangedSections(t *testing.T) {
	const base = "[DEFAULT]\nd = 1\n\n[server:main]\nuse = egg:paddock#http\nworkers = 2\n\n[composite:main]\nuse = egg:paddock#urlmap\n/ = app\n\n[app:app]\nuse = egg:paddock#hello\nbody = A\n\n[filter:cors]\nuse = egg:paddock#cors\n"
	tests := []struct {
		name string
		new  string
		want []string
	}{
		{"same bytes", base, nil},
		{"comment and spacing only", strings.Replace(base, "body = A", "body=A\n# note", 1), nil},
		{"one option", strings.Replace(base, "body = A", "body = B", 1), []string{"[app:app]"}},
		{"server only", strings.Replace(base, "workers = 2", "workers = 3", 1), nil},
		{"defaults", strings.Replace(base, "d = 1", "d = 2", 1), []string{"[DEFAULT]"}},
		{"added and removed", strings.Replace(base, "[filter:cors]\nuse = egg:paddock#cors\n", "[filter:gzip]\nuse = egg:paddock#gzip\n", 1), []string{"[filter:gzip] (added)", "[filter:cors] (removed)"}},
		{"broken new file", base + "junk\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := changedSections("paste.ini", []byte(base), []byte(tt.new))
			if !slices.Equal(got, tt.want) {
				t.Errorf("changedSections = %q, want %q", got, tt.want)
			}
		})
	}
}
