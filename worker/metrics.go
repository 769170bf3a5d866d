package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"paddock/metrics"
	"paddock/pipeline"
)

// workerMetrics is a worker's side of the server's metrics: it counts
// the requests the worker answers, hands the master a snapshot when asked
// (metrics_request → metrics), and serves the metrics app by asking the
// master for the sum over every worker (metrics_gather → metrics_result).
type workerMetrics struct {
	http *metrics.HTTP
	enc  *Encoder

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan Message
	closed  bool
}

func newWorkerMetrics(id int, enc *Encoder) *workerMetrics {
	return &workerMetrics{http: metrics.NewHTTP(id), enc: enc, pending: make(map[uint64]chan Message)}
}

// instrument wraps the worker's whole pipeline.
func (wm *workerMetrics) instrument(h http.Handler) http.Handler {
	return wm.http.Instrument(h, pipeline.TrackRoute)
}

// errMasterGone answers metrics requests once the channel is closing.
var errMasterGone = errors.New("worker: no master to sum the metrics")

// source is the metrics app's pipeline.MetricsSource: the whole server's
// exposition, from the master.
func (wm *workerMetrics) source(ctx context.Context) ([]byte, error) {
	c := make(chan Message, 1)
	wm.mu.Lock()
	if wm.closed {
		wm.mu.Unlock()
		return nil, errMasterGone
	}
	wm.next++
	id := wm.next
	wm.pending[id] = c
	wm.mu.Unlock()
	defer func() {
		wm.mu.Lock()
		delete(wm.pending, id)
		wm.mu.Unlock()
	}()
	if err := wm.enc.Send(Message{Type: MsgMetricsGather, ID: id}); err != nil {
		return nil, fmt.Errorf("worker: ask the master for metrics: %w", err)
	}
	select {
	case m := <-c:
		if m.Error != "" {
			return nil, fmt.Errorf("worker: master: %s", m.Error)
		}
		return m.Data, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("worker: metrics from the master: %w", context.Cause(ctx))
	}
}

// handle obeys metrics_request and delivers metrics_result.
func (wm *workerMetrics) handle(m Message) error {
	switch m.Type {
	case MsgMetricsRequest:
		return wm.sendSnapshot(m.ID)
	case MsgMetricsResult:
		wm.mu.Lock()
		c := wm.pending[m.ID]
		wm.mu.Unlock()
		if c != nil {
			select {
			case c <- m:
			default:
			}
		}
	}
	return nil
}

// sendSnapshot sends the worker's counters (id 0: unasked, before exit,
// so the master keeps them).
func (wm *workerMetrics) sendSnapshot(id uint64) error {
	snap, err := wm.http.Snapshot()
	if err != nil {
		return err
	}
	return wm.enc.Send(Message{Type: MsgMetrics, ID: id, Data: snap})
}

// close fails pending and later metrics requests (the master is gone or
// the worker is exiting).
func (wm *workerMetrics) close() {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	wm.closed = true
	for id, c := range wm.pending {
		select {
		case c <- Message{Type: MsgMetricsResult, ID: id, Error: errMasterGone.Error()}:
		default:
		}
	}
}
