package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"paddock/control"
	"paddock/pipeline"
)

// GET /v1/upstreams: the proxy apps keep their upstreams' health and
// connection counts in each worker process, so the master asks every
// ready worker (upstreams_request) and merges the answers (upstreams),
// like a metrics scrape. A worker answers from the pipeline generation
// it serves (pipeline.Pipeline.Status, the "upstreams" reports).

// upstreamsTimeout bounds how long the master waits for the workers'
// answers; a worker that has not answered by then is listed as such.
const upstreamsTimeout = 2 * time.Second

// Worker side.

// workerUpstreams answers upstreams_request in a worker.
type workerUpstreams struct {
	swap *swapHandler
	enc  *Encoder
}

// handle answers one upstreams_request.
func (wu *workerUpstreams) handle(m Message) error {
	g := wu.swap.Current()
	reply := Message{Type: MsgUpstreams, ID: m.ID, Generation: g.gen}
	data, err := upstreamsReport(g)
	if err != nil {
		reply.Error = err.Error()
	} else {
		reply.Data = data
	}
	if err := wu.enc.Send(reply); err != nil {
		return fmt.Errorf("worker: answer upstreams_request: %w", err)
	}
	return nil
}

// upstreamsReport is the JSON list of the proxy apps' state in g.
func upstreamsReport(g *handlerGen) ([]byte, error) {
	proxies := []pipeline.ProxyStatus{}
	if p, ok := g.closer.(*pipeline.Pipeline); ok {
		for _, e := range p.Status() {
			if e.Name != pipeline.StatusUpstreams {
				continue
			}
			if ps, ok := e.Report().(pipeline.ProxyStatus); ok {
				proxies = append(proxies, ps)
			}
		}
	}
	data, err := json.Marshal(proxies)
	if err != nil {
		return nil, fmt.Errorf("worker: encode the upstream state: %w", err)
	}
	if len(data) > MaxMetricsMessageSize-1024 {
		return nil, fmt.Errorf("worker: upstream state of %d bytes is over the channel's %d", len(data), MaxMetricsMessageSize)
	}
	return data, nil
}

// Master side, owned by the Run goroutine.

// masterUpstreams are the upstreams requests in progress.
type masterUpstreams struct {
	nextID  uint64
	gathers []*upstreamsGather
}

// upstreamsGather is one GET /v1/upstreams in progress.
type upstreamsGather struct {
	id       uint64
	asked    []control.UpstreamsWorker // in worker id order
	answers  map[int]Message           // by pid
	waiting  map[int]bool              // pids asked that have not answered
	deadline time.Time
	done     func(control.UpstreamsResponse, error) // runs in the Run goroutine
}

// startUpstreams asks every ready worker for its upstreams; done gets
// the merged answer once all answered or upstreamsTimeout passed.
func (a *Arbiter) startUpstreams(done func(control.UpstreamsResponse, error)) {
	mu := &a.upstreams
	mu.nextID++
	g := &upstreamsGather{id: mu.nextID, answers: make(map[int]Message), waiting: make(map[int]bool),
		deadline: a.opts.now().Add(upstreamsTimeout), done: done}
	for _, w := range a.sorted() {
		if w.killed || w.state != stateReady {
			continue
		}
		pid := w.proc.Pid()
		g.asked = append(g.asked, control.UpstreamsWorker{ID: w.id, Pid: pid, Generation: w.generation})
		if err := w.proc.Send(Message{Type: MsgUpstreamsRequest, ID: g.id}); err != nil {
			w.log.Debug("cannot ask for the upstream state", "error", err)
			g.answers[pid] = Message{Type: MsgUpstreams, Error: "cannot ask: " + err.Error()}
			continue
		}
		g.waiting[pid] = true
	}
	mu.gathers = append(mu.gathers, g)
	a.finishUpstreams()
}

// upstreamsFrom records a worker's answer.
func (a *Arbiter) upstreamsFrom(w *wproc, m *Message) {
	pid := w.proc.Pid()
	for _, g := range a.upstreams.gathers {
		if g.id == m.ID && g.waiting[pid] {
			delete(g.waiting, pid)
			g.answers[pid] = *m
		}
	}
	a.finishUpstreams()
}

// upstreamsWorkerGone stops waiting for a worker that exited.
func (a *Arbiter) upstreamsWorkerGone(pid int) {
	for _, g := range a.upstreams.gathers {
		if g.waiting[pid] {
			delete(g.waiting, pid)
			g.answers[pid] = Message{Type: MsgUpstreams, Error: "the worker exited"}
		}
	}
	a.finishUpstreams()
}

// finishUpstreams completes the requests every worker answered, or whose
// time is up.
func (a *Arbiter) finishUpstreams() {
	mu := &a.upstreams
	if len(mu.gathers) == 0 {
		return
	}
	now := a.opts.now()
	keep := mu.gathers[:0]
	var ready []*upstreamsGather
	for _, g := range mu.gathers {
		if len(g.waiting) == 0 || now.After(g.deadline) {
			ready = append(ready, g)
		} else {
			keep = append(keep, g)
		}
	}
	clear(mu.gathers[len(keep):])
	mu.gathers = keep
	for _, g := range ready {
		g.done(mergeUpstreams(g), nil)
	}
}

// failUpstreams answers every request in progress with err (the master
// stops).
func (a *Arbiter) failUpstreams(err error) {
	for _, g := range a.upstreams.gathers {
		g.done(control.UpstreamsResponse{}, err)
	}
	clear(a.upstreams.gathers)
	a.upstreams.gathers = a.upstreams.gathers[:0]
}

// mergeUpstreams groups the workers' answers by proxy section and
// upstream, in the order the workers (oldest first) list them.
func mergeUpstreams(g *upstreamsGather) control.UpstreamsResponse {
	res := control.UpstreamsResponse{Proxies: []control.ProxyUpstreams{}, Workers: []control.UpstreamsWorker{}}
	proxyAt := map[string]int{}
	for _, w := range g.asked {
		m, answered := g.answers[w.Pid]
		switch {
		case !answered:
			w.Error = fmt.Sprintf("no answer within %s", upstreamsTimeout)
		case m.Error != "":
			w.Error = m.Error
		default:
			var proxies []pipeline.ProxyStatus
			if err := json.Unmarshal(m.Data, &proxies); err != nil {
				w.Error = "undecodable answer: " + err.Error()
				break
			}
			w.Answered = true
			w.Generation = m.Generation
			for _, ps := range proxies {
				i, ok := proxyAt[ps.Section]
				if !ok {
					i = len(res.Proxies)
					proxyAt[ps.Section] = i
					res.Proxies = append(res.Proxies, control.ProxyUpstreams{Section: ps.Section, Balance: ps.Balance, Upstreams: []control.Upstream{}})
				}
				px := &res.Proxies[i]
				for _, us := range ps.Upstreams {
					j := slices.IndexFunc(px.Upstreams, func(u control.Upstream) bool { return u.URL == us.URL })
					if j < 0 {
						j = len(px.Upstreams)
						px.Upstreams = append(px.Upstreams, control.Upstream{URL: us.URL})
					}
					px.Upstreams[j].Workers = append(px.Upstreams[j].Workers, control.UpstreamState{
						Pid: w.Pid, WorkerID: w.ID, Generation: m.Generation,
						Healthy: us.Healthy, State: us.State, Reason: us.Reason, Failures: us.Failures, DownForS: us.DownForS,
						Active: us.Active, Check: us.Check, CheckError: us.CheckError, Requests: us.Requests, Errors: us.Errors,
					})
				}
			}
		}
		res.Workers = append(res.Workers, w)
	}
	return res
}

// Upstreams is GET /v1/upstreams: the proxy apps' upstreams as every
// ready worker sees them.
func (a *Arbiter) Upstreams(ctx context.Context) (control.UpstreamsResponse, error) {
	type result struct {
		res control.UpstreamsResponse
		err error
	}
	c := make(chan result, 1)
	if err := a.do(ctx, func() {
		a.startUpstreams(func(res control.UpstreamsResponse, err error) { c <- result{res, err} })
	}); err != nil {
		return control.UpstreamsResponse{}, err
	}
	select {
	case r := <-c:
		return r.res, r.err
	case <-ctx.Done():
		return control.UpstreamsResponse{}, fmt.Errorf("worker: upstreams: %w", context.Cause(ctx))
	case <-a.done:
		return control.UpstreamsResponse{}, fmt.Errorf("worker: upstreams: %w", ErrNotRunning)
	}
}
