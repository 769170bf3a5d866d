package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/listener"
	"paddock/metrics"
)

// gatherTimeout bounds how long a scrape waits for the workers'
// snapshots; a worker that has not answered by then counts with its last
// one.
const gatherTimeout = 2 * time.Second

// masterMetrics is the master's side of the server's metrics, owned by
// the Run goroutine like the rest of the Arbiter's state.
type masterMetrics struct {
	reg     *metrics.Master
	nextID  uint64
	gathers []*gather
	snaps   map[int][]byte // last snapshot of each live worker, by pid
}

// gather is one scrape in progress.
type gather struct {
	id       uint64
	waiting  map[int]bool // pids asked that have not answered
	deadline time.Time
	done     func(body []byte, err error) // runs in the Run goroutine
}

func newMasterMetrics(version string) masterMetrics {
	return masterMetrics{reg: metrics.NewMaster(version), snaps: make(map[int][]byte)}
}

// startGather asks every live worker for a snapshot; done gets the
// exposition once all answered or gatherTimeout passed.
func (a *Arbiter) startGather(done func([]byte, error)) {
	mm := &a.metrics
	mm.nextID++
	g := &gather{id: mm.nextID, waiting: make(map[int]bool), deadline: a.opts.now().Add(gatherTimeout), done: done}
	for pid, w := range a.workers {
		if w.killed || w.state == stateBooting {
			continue
		}
		if err := w.proc.Send(Message{Type: MsgMetricsRequest, ID: g.id}); err != nil {
			w.log.Debug("cannot ask for metrics", "error", err)
			continue
		}
		g.waiting[pid] = true
	}
	mm.gathers = append(mm.gathers, g)
	a.finishGathers()
}

// metricsFrom records a worker's snapshot (an answer, or unasked before
// it exits).
func (a *Arbiter) metricsFrom(w *wproc, m *Message) {
	pid := w.proc.Pid()
	a.metrics.snaps[pid] = m.Data
	if m.ID != 0 {
		for _, g := range a.metrics.gathers {
			if g.id == m.ID {
				delete(g.waiting, pid)
			}
		}
	}
	a.finishGathers()
}

// metricsGather answers a worker's metrics app: the sum over the server.
func (a *Arbiter) metricsGather(w *wproc, m *Message) {
	id, proc := m.ID, w.proc
	a.startGather(func(body []byte, err error) {
		reply := Message{Type: MsgMetricsResult, ID: id, Data: body}
		if err != nil {
			reply = Message{Type: MsgMetricsResult, ID: id, Error: err.Error()}
		}
		if serr := proc.Send(reply); serr != nil {
			a.log.Debug("cannot send metrics to a worker", "pid", proc.Pid(), "error", serr)
		}
	})
}

// metricsWorkerGone keeps an exited worker's last counts in the sums.
func (a *Arbiter) metricsWorkerGone(pid int) {
	if snap, ok := a.metrics.snaps[pid]; ok {
		if err := a.metrics.reg.Retire(snap); err != nil {
			a.log.Warn("cannot keep an exited worker's metrics", "pid", pid, "error", err)
		}
		delete(a.metrics.snaps, pid)
	}
	for _, g := range a.metrics.gathers {
		delete(g.waiting, pid)
	}
	a.finishGathers()
}

// finishGathers completes the scrapes every worker answered, or whose
// time is up.
func (a *Arbiter) finishGathers() {
	mm := &a.metrics
	if len(mm.gathers) == 0 {
		return
	}
	now := a.opts.now()
	keep := mm.gathers[:0]
	var ready []*gather
	for _, g := range mm.gathers {
		if len(g.waiting) == 0 || now.After(g.deadline) {
			ready = append(ready, g)
		} else {
			keep = append(keep, g)
		}
	}
	clear(mm.gathers[len(keep):])
	mm.gathers = keep
	if len(ready) == 0 {
		return
	}
	byState := map[string]int{}
	for _, w := range a.workers {
		if !w.killed {
			byState[w.state.String()]++
		}
	}
	mm.reg.SetWorkers(byState)
	mm.reg.SetGeneration(a.generation)
	snaps := make([][]byte, 0, len(mm.snaps))
	for _, s := range mm.snaps {
		snaps = append(snaps, s)
	}
	body, err := mm.reg.Exposition(snaps)
	for _, g := range ready {
		g.done(body, err)
	}
}

// failGathers answers every scrape in progress with err (the master
// stops).
func (a *Arbiter) failGathers(err error) {
	for _, g := range a.metrics.gathers {
		g.done(nil, err)
	}
	clear(a.metrics.gathers)
	a.metrics.gathers = a.metrics.gathers[:0]
}

// Metrics is the whole server's exposition: the master's metrics and the
// sum of every worker's (metrics_bind).
func (a *Arbiter) Metrics(ctx context.Context) ([]byte, error) {
	type result struct {
		body []byte
		err  error
	}
	c := make(chan result, 1)
	if err := a.do(ctx, func() {
		a.startGather(func(body []byte, err error) { c <- result{body, err} })
	}); err != nil {
		return nil, err
	}
	select {
	case r := <-c:
		return r.body, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("worker: metrics: %w", context.Cause(ctx))
	case <-a.done:
		return nil, fmt.Errorf("worker: metrics: %w", ErrNotRunning)
	}
}

// serveMetrics serves GET /metrics on spec (metrics_bind) from the
// master, through opener like the other listeners so an upgraded master
// inherits the socket. stop closes it.
func serveMetrics(ctx context.Context, spec listener.Spec, opener listener.Opener, gather func(context.Context) ([]byte, error), log hclog.Logger) (stop func(), err error) {
	set, err := listener.Open(ctx, []listener.Spec{spec}, listener.Options{}, opener)
	if err != nil {
		return nil, fmt.Errorf("worker: metrics_bind: %w", err)
	}
	ln := set.Listeners()[0]
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		body, err := gather(r.Context())
		if err != nil {
			http.Error(w, "metrics unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", metrics.ContentType)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
	done := make(chan struct{})
	go func() { // owned by stop
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "error", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String(), "bind", spec.String(), "path", "/metrics")
	return func() {
		_ = srv.Close()
		<-done
		_ = set.Close()
	}, nil
}
