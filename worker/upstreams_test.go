package worker

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"paddock/control"
	"paddock/pipeline"
)

// The master asks every ready worker and merges the answers by section
// and upstream; a worker that exits before answering is listed as such.
func TestArbiterUpstreams(t *testing.T) {
	h := startArbiter(t, func(s *Settings) { s.Workers = 3 })
	p1, p2, p3 := h.spawned(), h.spawned(), h.spawned()
	for _, p := range []*fakeProc{p1, p2, p3} {
		p.say(Message{Type: MsgReady})
	}
	waitReadyCount(t, h.a, 3)
	type result struct {
		res control.UpstreamsResponse
		err error
	}
	c := make(chan result, 1)
	go func() {
		res, err := h.a.Upstreams(t.Context())
		c <- result{res, err}
	}()
	answer := func(p *fakeProc, proxies []pipeline.ProxyStatus) {
		m := wantSent(t, p, MsgUpstreamsRequest)
		data, err := json.Marshal(proxies)
		if err != nil {
			t.Fatal(err)
		}
		p.say(Message{Type: MsgUpstreams, ID: m.ID, Generation: 0, Data: data})
	}
	answer(p1, []pipeline.ProxyStatus{
		{Section: "app:a", Balance: "round_robin", Upstreams: []pipeline.UpstreamStatus{
			{URL: "http://u1", Healthy: true, State: "up", Check: "off", Requests: 5},
			{URL: "http://u2", Healthy: false, State: "down", Reason: "failures", Failures: 3, DownForS: 4, Check: "off"}}},
		{Section: "app:b", Balance: "least_conn", Upstreams: []pipeline.UpstreamStatus{
			{URL: "http://u3", Healthy: true, State: "up", Active: 2, Check: "passing"}}},
	})
	answer(p2, []pipeline.ProxyStatus{
		{Section: "app:a", Balance: "round_robin", Upstreams: []pipeline.UpstreamStatus{
			{URL: "http://u1", Healthy: true, State: "up", Check: "off", Requests: 7}}},
	})
	wantSent(t, p3, MsgUpstreamsRequest)
	p3.exit("signal: killed")

	var r result
	select {
	case r = <-c:
	case <-time.After(5 * time.Second):
		t.Fatal("Upstreams did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := control.UpstreamsResponse{
		Proxies: []control.ProxyUpstreams{
			{Section: "app:a", Balance: "round_robin", Upstreams: []control.Upstream{
				{URL: "http://u1", Workers: []control.UpstreamState{
					{Pid: p1.pid, WorkerID: 1, Healthy: true, State: "up", Check: "off", Requests: 5},
					{Pid: p2.pid, WorkerID: 2, Healthy: true, State: "up", Check: "off", Requests: 7}}},
				{URL: "http://u2", Workers: []control.UpstreamState{
					{Pid: p1.pid, WorkerID: 1, State: "down", Reason: "failures", Failures: 3, DownForS: 4, Check: "off"}}},
			}},
			{Section: "app:b", Balance: "least_conn", Upstreams: []control.Upstream{
				{URL: "http://u3", Workers: []control.UpstreamState{{Pid: p1.pid, WorkerID: 1, Healthy: true, State: "up", Active: 2, Check: "passing"}}}}},
		},
		Workers: []control.UpstreamsWorker{
			{ID: 1, Pid: p1.pid, Answered: true},
			{ID: 2, Pid: p2.pid, Answered: true},
			{ID: 3, Pid: p3.pid, Error: "the worker exited"},
		},
	}
	if !reflect.DeepEqual(r.res, want) {
		got, _ := json.MarshalIndent(r.res, "", " ")
		exp, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("got\n%s\nwant\n%s", got, exp)
	}
}

// A worker that does not answer within upstreamsTimeout is reported as
// such; the answer does not wait for it longer.
func TestArbiterUpstreamsTimeout(t *testing.T) {
	h := startArbiter(t, func(s *Settings) { s.Workers = 1 })
	p := h.spawned()
	p.say(Message{Type: MsgReady})
	waitReadyCount(t, h.a, 1)
	start := time.Now()
	res, err := h.a.Upstreams(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < upstreamsTimeout || d > upstreamsTimeout+3*time.Second {
		t.Errorf("took %s, want about %s", d, upstreamsTimeout)
	}
	if len(res.Workers) != 1 || res.Workers[0].Answered || !strings.Contains(res.Workers[0].Error, "no answer") || len(res.Proxies) != 0 {
		t.Errorf("%+v", res)
	}
	// A late answer is ignored.
	m := wantSent(t, p, MsgUpstreamsRequest)
	p.say(Message{Type: MsgUpstreams, ID: m.ID, Data: []byte("[]")})
}

// A worker answers from the pipeline it serves: the proxy sections'
// reports.
func TestWorkerUpstreamsAnswer(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "paste.ini")
	ini := "[composite:main]\nuse = egg:Paste#urlmap\n/api = backend\n/ = hello\n\n" +
		"[app:backend]\nuse = egg:paddock#proxy\nupstreams = http://127.0.0.1:1 http://127.0.0.1:2\nbalance = least_conn\n\n" +
		"[app:hello]\nuse = egg:paddock#hello\n"
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Load(pipeline.LoadOptions{Path: cfg})
	if err != nil {
		t.Fatal(err)
	}
	swap := newSwapHandler(newHandlerGen(4, p.Handler, p, nil))
	defer swap.Close()
	var buf bytes.Buffer
	wu := &workerUpstreams{swap: swap, enc: NewEncoder(&buf)}
	if err := wu.handle(Message{Type: MsgUpstreamsRequest, ID: 9}); err != nil {
		t.Fatal(err)
	}
	m, err := NewDecoder(&buf, FromWorker).Next()
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != MsgUpstreams || m.ID != 9 || m.Generation != 4 || m.Error != "" {
		t.Fatalf("answer %+v", m)
	}
	var proxies []pipeline.ProxyStatus
	if err := json.Unmarshal(m.Data, &proxies); err != nil {
		t.Fatal(err)
	}
	if len(proxies) != 1 || proxies[0].Section != "app:backend" || proxies[0].Balance != "least_conn" ||
		len(proxies[0].Upstreams) != 2 || proxies[0].Upstreams[1].URL != "http://127.0.0.1:2" || proxies[0].Upstreams[0].State != "up" {
		t.Errorf("proxies %+v", proxies)
	}

	// A pipeline without a proxy answers an empty list.
	hello := newSwapHandler(newHandlerGen(1, nil, nil, nil))
	data, err := upstreamsReport(hello.Current())
	if err != nil || string(data) != "[]" {
		t.Errorf("no proxy: %q %v", data, err)
	}
}
